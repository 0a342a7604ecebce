"""Middleware that understands WebTransport sessions.

Starlette's middleware passes scope types it does not know through untouched, so a
``TrustedHostMiddleware`` or an ``AuthenticationMiddleware`` would silently not protect
WebTransport endpoints. The two classes here are drop-in replacements that keep
Starlette's behaviour for HTTP and WebSocket and apply the same rules to WebTransport
sessions, answering with a rejection (an HTTP status, before accept) where Starlette
would send an error response. :class:`OriginMiddleware` adds the check browsers rely
on for WebTransport, which has no CORS preflight.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    UnauthenticatedUser,
)
from starlette.datastructures import Headers
from starlette.middleware import authentication, trustedhost
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp

from ..asgi import Receive, Scope, Send
from .connection import WebTransportConnection
from .exceptions import log_rejection

__all__ = ["AuthenticationMiddleware", "OriginMiddleware", "TrustedHostMiddleware"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$", re.IGNORECASE)
"""A host header; anything else (a path, user info, stray characters) is never trusted,
so a wildcard pattern cannot be satisfied by a suffix smuggled into the header."""


async def reject(
    send: Send,
    status: int,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    scope: Scope | None = None,
    cause: str = "",
) -> None:
    """Refuse a WebTransport session before it reaches the app, logging why: the browser
    only reports a failed handshake, so the server's log is where the cause is found."""
    if scope is not None:
        log_rejection(scope, status, cause)
    await send({"type": "webtransport.reject", "status": status, "headers": list(headers)})


class AuthenticationMiddleware(authentication.AuthenticationMiddleware):
    """Starlette's ``AuthenticationMiddleware``, also for WebTransport sessions.

    The backend's ``authenticate(conn)`` receives a :class:`WebTransportConnection` (an
    ``HTTPConnection``), so existing backends work unchanged, and ``scope["user"]`` and
    ``scope["auth"]`` are set as for HTTP. On ``AuthenticationError`` the session is
    rejected with the status and headers of the response ``on_error`` returns (its body
    cannot be sent): by default Starlette's 400.
    """

    def __init__(
        self,
        app: ASGIApp,
        backend: AuthenticationBackend,
        on_error: Callable[[HTTPConnection, AuthenticationError], Response] | None = None,
    ) -> None:
        super().__init__(app, backend, on_error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport":
            await super().__call__(scope, receive, send)
            return
        conn = WebTransportConnection(scope)
        try:
            result = await self.backend.authenticate(conn)
        except AuthenticationError as exc:
            response = self.on_error(conn, exc)
            headers = [
                (name, value)
                for name, value in response.raw_headers
                if name not in (b"content-length", b"content-type")
            ]
            cause = f"AuthenticationMiddleware: {exc}" if str(exc) else "AuthenticationMiddleware"
            await reject(send, response.status_code, headers, scope=scope, cause=cause)
            return
        scope["auth"], scope["user"] = result or (AuthCredentials(), UnauthenticatedUser())
        await self.app(scope, receive, send)


class TrustedHostMiddleware(trustedhost.TrustedHostMiddleware):
    """Starlette's ``TrustedHostMiddleware``, also for WebTransport sessions.

    A session whose ``host`` (the CONNECT request's ``:authority``) is not allowed is
    rejected with 400, as Starlette answers HTTP requests. The ``www.`` redirect does not
    apply: a WebTransport client cannot follow redirects.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport" or self.allow_any:
            await super().__call__(scope, receive, send)
            return
        match = _HOST.match(Headers(scope=scope).get("host", ""))
        hostname = match.group("host").lower() if match else None
        if hostname is not None and any(
            hostname == pattern or (pattern.startswith("*") and hostname.endswith(pattern[1:]))
            for pattern in self.allowed_hosts
        ):
            await self.app(scope, receive, send)
        else:
            host = Headers(scope=scope).get("host")
            cause = f"TrustedHostMiddleware: host {host!r} is not allowed"
            await reject(send, 400, scope=scope, cause=cause)


class OriginMiddleware:
    """Reject WebTransport sessions opened by pages of origins you do not trust.

    Browsers send the page's ``Origin`` with every WebTransport request and, unlike
    ``fetch``, let any page connect anywhere: checking it is the server's job.

    ``allow_origins`` lists the origins allowed besides the server's own (e.g.
    ``["https://app.example.com"]``); ``["*"]`` allows every origin. By default only the
    server's own pages are allowed: an ``Origin`` with the request's scheme, host and port
    (the server itself over HTTPS), or the request's host over plain HTTP on a port where
    the same server serves pages (``--http-port``, which the server lists in
    ``scope["extensions"]["webtransport"]["http_ports"]``). Requests without an ``Origin``
    are allowed: only non-browser clients omit it, and they can send any ``Origin`` they
    like, so refusing them protects nothing. Refused sessions get a 403 rejection, logged
    with the origin refused. HTTP and WebSocket pass through.
    """

    def __init__(self, app: ASGIApp, allow_origins: Sequence[str] = ()) -> None:
        if isinstance(allow_origins, str):
            raise TypeError("allow_origins must be a sequence of origins, not a str")
        self.app = app
        self.allow_any = "*" in allow_origins
        self.allow_origins: set[str] = set()
        for origin in allow_origins:
            if origin == "*":
                continue
            normalized = _normalize(origin)
            if normalized is None:
                raise ValueError(f"{origin!r} is not an origin like 'https://example.com:4433'")
            self.allow_origins.add(normalized)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport" or self.allow_any:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or self._is_allowed(_normalize(origin), scope, headers):
            await self.app(scope, receive, send)
        else:
            cause = f"OriginMiddleware: origin {origin!r} is not allowed (pass it in allow_origins)"
            await reject(send, 403, scope=scope, cause=cause)

    def _is_allowed(self, origin: str | None, scope: Scope, headers: Headers) -> bool:
        if origin is None:
            return False  # "null" or malformed: an opaque origin is never trusted
        if origin in self.allow_origins:
            return True
        host = headers.get("host")
        if host is None:
            return False
        if origin == _normalize(f"{scope['scheme']}://{host}"):
            return True
        own_host = _normalize(f"http://{host}")
        hostname = own_host.rsplit(":", 1)[0] if own_host else None
        http_ports = scope.get("extensions", {}).get("webtransport", {}).get("http_ports", ())
        return hostname is not None and any(origin == f"{hostname}:{p}" for p in http_ports)


def _normalize(origin: str) -> str | None:
    """``scheme://host:port`` in lower case with the port made explicit, or ``None``
    for anything that is not a tuple origin (``"null"``, paths, garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    return f"{scheme}://{parts.hostname}:{port or _DEFAULT_PORTS[scheme]}"
