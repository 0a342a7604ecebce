"""Starlette's ``HTTPConnection`` over a WebTransport scope.

Authentication backends, FastAPI dependencies and most user code that inspects a
request take an ``HTTPConnection``: headers, cookies, query parameters, ``url``,
``app``, ``user``/``auth``, ``url_for``. All of that is derived from the scope, and a
WebTransport session is an HTTP (extended CONNECT) request, so the only obstacle is
the constructor's check of the scope type. This subclass lifts it for
``"webtransport"`` scopes and nothing else, which lets that code run unchanged.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from ..asgi import Scope

__all__ = ["WebTransportConnection"]


class WebTransportConnection(HTTPConnection):
    """The request behind a WebTransport session, without the session itself.

    It has no ``receive``/``send``: it is what middleware and dependencies look at
    before (or beside) the endpoint, which owns the session.
    """

    def __init__(self, scope: Scope) -> None:
        if scope.get("type") != "webtransport":
            raise ValueError(f'expected a "webtransport" scope, got {scope.get("type")!r}')
        self.scope = scope
