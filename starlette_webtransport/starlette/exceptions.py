"""How endpoint failures end a WebTransport session.

A WebTransport session has two ways to end: before ``accept()`` the CONNECT request is
rejected with an HTTP status; after it the session is closed with a u32 application
code and a reason. Every failure in a route, a dependency or an endpoint is mapped to
one of the two here, so the client always learns how its session ended instead of
seeing it vanish.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Awaitable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from starlette.exceptions import HTTPException

from ..asgi import is_session_end
from ..protocol.errors import INTERNAL_ERROR_CODE, check_close
from ..session import SessionState, WebTransportSession

__all__ = [
    "INTERNAL_ERROR_CODE",
    "INTERNAL_ERROR_REASON",
    "VALIDATION_ERROR_STATUS",
    "WebTransportException",
]

logger = logging.getLogger("starlette_webtransport.starlette")

INTERNAL_ERROR_REASON = "internal server error"
VALIDATION_ERROR_STATUS = 400
"""Rejection status when FastAPI cannot validate an endpoint's parameters (a query
parameter or header of the wrong type): the CONNECT request itself is malformed."""


class WebTransportException(Exception):
    """Raise to end a session on purpose, as ``WebSocketException`` does for WebSockets.

    After ``accept()`` the session is closed with ``code`` and ``reason``. Before it
    the request is rejected with 403, which is what the ASGI contract makes of a close
    before accept; raise ``HTTPException(status_code)`` to choose the status instead.
    """

    def __init__(self, code: int, reason: str | None = None) -> None:
        # Checked here so a bad code fails where it is raised, not later inside close().
        reason = reason or ""
        check_close(code, reason)
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(code={self.code!r}, reason={self.reason!r})"


_NO_CLEANUP: contextlib.nullcontext[None] = contextlib.nullcontext()
"""Stateless, so one serves every session whose endpoint has no cleanup."""


async def run_session(
    session: WebTransportSession,
    endpoint: Awaitable[None],
    stack: AsyncExitStack | None = None,
) -> None:
    """Await the endpoint's call (``endpoint``, not started yet) and end ``session``
    however it finishes.

    The callers hand over the endpoint's coroutine rather than a function that makes it:
    no closure and no extra frame is held for the whole session, one frame less per idle
    session.

    The session is ended first and ``stack`` (dependency cleanup, if the endpoint has
    any) unwound after, so cleanup code runs once the client knows the outcome; an
    exception is thrown into the cleanup as ``with`` blocks would see it. Nothing
    propagates to the server: exceptions that were not a deliberate way to end the
    session are logged here. Endpoints without cleanup pass no stack: it would be held
    for the whole session (close to a kilobyte per idle session) for nothing.
    """
    failure: Exception | None = None
    try:
        async with stack if stack is not None else _NO_CLEANUP:
            try:
                await endpoint
            except Exception as exc:
                failure = exc
                if not await end_session(session, exc):
                    logger.exception("WebTransport endpoint for %s raised", session.path)
                raise
            await finish_session(session)
    except Exception as exc:
        if exc is not failure:
            logger.exception("cleanup of the WebTransport session %s raised", session.path)


def log_rejection(scope: Mapping[str, Any], status: int, cause: str) -> None:
    """One line per refused session, naming what refused it: the browser reports only
    "Opening handshake failed", and the server's own line knows only the status."""
    logger.info("WebTransport session to %s rejected with %d: %s", scope["path"], status, cause)


def _raised_where(exc: BaseException) -> str:
    """``function (file:line)`` of the frame that raised ``exc``: the dependency or the
    endpoint that refused the session."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown code"
    frame = frames[-1]
    return f"{frame.name} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"


async def finish_session(session: WebTransportSession) -> None:
    """End a session whose endpoint returned: reject it with 403 if it was never
    answered (what the contract does for an app returning before accept), close it with
    code 0 if it is open. Doing it here, not in the server, stops the session's reader
    before dependency cleanup runs."""
    if session.state is SessionState.CONNECTING:
        log_rejection(session.scope, 403, "the endpoint returned without accepting the session")
        await _reject(session, 403, [])
    elif session.state is not SessionState.CLOSED:
        await session.close()


async def end_session(session: WebTransportSession, exc: Exception) -> bool:
    """Reject or close ``session`` as ``exc`` asks (see ``docs/starlette.md``); a
    session already closed is left alone. True if ``exc`` is a deliberate way to end
    the session, False if it is a failure worth a traceback.

    ``SessionClosedError``, and an exception group made only of it (what a ``TaskGroup``
    of stream tasks raises when the peer goes away), is the session's own end: it is
    treated as a return."""
    if is_session_end(exc):
        await finish_session(session)
        return True
    state = session.state
    if state is SessionState.CONNECTING:
        where = _raised_where(exc)
        if isinstance(exc, HTTPException) and 300 <= exc.status_code <= 599:
            cause = f"HTTPException({exc.status_code}, {exc.detail!r}) raised in {where}"
            log_rejection(session.scope, exc.status_code, cause)
            await _reject(session, exc.status_code, _encode_headers(exc.headers))
            return True
        deliberate = isinstance(exc, WebTransportException)
        status = 403 if deliberate else 500
        log_rejection(session.scope, status, f"{exc!r} raised in {where}")
        await _reject(session, status, [])
        return deliberate
    if state is not SessionState.CLOSED:
        if isinstance(exc, WebTransportException):
            await session.close(code=exc.code, reason=exc.reason)
        else:
            await session.close(code=INTERNAL_ERROR_CODE, reason=INTERNAL_ERROR_REASON)
    return isinstance(exc, WebTransportException)


async def _reject(
    session: WebTransportSession, status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    # OSError: the server already answered the request (the client went away).
    with contextlib.suppress(OSError):
        await session.reject(status, headers)


def _encode_headers(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
