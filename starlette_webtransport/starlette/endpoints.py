"""Class-based WebTransport endpoints, in the manner of Starlette's ``WebSocketEndpoint``.

A WebSocket has one message stream, so ``WebSocketEndpoint`` is a loop. A WebTransport
session has any number of streams plus datagrams, all at once, so
:class:`WebTransportEndpoint` hands them to the session layer's
:func:`~starlette_webtransport.session.serve_streams`: each incoming stream's handler runs
in its own task and error domain, datagrams in another, and all of them end with the
session: one slow or failing stream never holds up or ends the others, and nothing
outlives the session.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar

from ..asgi import Receive, Scope, Send
from ..session import StreamType, WebTransportSession, WebTransportStream, serve_streams
from ..structured import Schema, StructuredReceiveStream, StructuredStream
from .exceptions import WebTransportException, run_session

__all__ = ["StructuredEndpoint", "WebTransportEndpoint"]

T = TypeVar("T")


class WebTransportEndpoint:
    """Subclass and override the ``on_*`` hooks; route it like a function endpoint.

    ``on_stream`` runs in a task of its own for every stream the peer opens and owns
    that stream, as in :func:`~starlette_webtransport.session.serve_streams`: the peer's
    reset or STOP_SENDING ends that handler only, and any other exception is logged and
    aborts that stream only (code ``INTERNAL_ERROR_CODE``); an exception from
    ``on_datagram`` is logged once per type. Either hook ends the session on purpose with
    ``session.close(...)`` or by raising ``WebTransportException``. When the session ends,
    handlers still running are cancelled (or see ``SessionClosedError`` if they were
    reading or writing), then ``on_disconnect`` runs. An exception from ``on_connect`` or
    ``on_disconnect`` ends the session as described in ``docs/starlette.md``.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport":
            raise ValueError(f'expected a "webtransport" scope, got {scope["type"]!r}')
        self.scope = scope
        self.receive = receive
        self.send = send

    def __await__(self) -> Generator[Any, None, None]:
        return self.dispatch().__await__()

    async def dispatch(self) -> None:
        session = WebTransportSession(self.scope, self.receive, self.send)

        async def run() -> None:
            await self.on_connect(session)
            if session.is_ready:
                await self._serve(session)

        await run_session(session, run())

    async def on_connect(self, session: WebTransportSession) -> None:
        """Override to check the request, choose a protocol, or reject; accepts by default."""
        await session.accept()

    async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
        """Override to handle a stream the peer opened."""

    async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
        """Override to handle a datagram."""

    async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
        """Override to clean up once the session has ended; ``code``/``reason`` are the
        close's (0 and "" when it ended without a WT_CLOSE_SESSION)."""

    async def _serve(self, session: WebTransportSession) -> None:
        async def on_stream(stream: StreamType) -> None:
            try:
                await self.on_stream(session, stream)
            except WebTransportException as exc:
                await session.close(code=exc.code, reason=exc.reason)

        async def on_datagram(data: bytes) -> None:
            try:
                await self.on_datagram(session, data)
            except WebTransportException as exc:
                await session.close(code=exc.code, reason=exc.reason)

        try:
            await serve_streams(session, on_stream, on_datagram=on_datagram)
        finally:
            if not session.is_closed:
                await session.close()
            await self.on_disconnect(session, session.close_code or 0, session.close_reason or "")


class StructuredEndpoint(WebTransportEndpoint, Generic[T]):
    """A :class:`WebTransportEndpoint` whose streams carry typed messages.

    Set ``schema`` (a :class:`~starlette_webtransport.structured.Schema`) and override
    ``on_message``. Every stream the peer opens is read message by message until its
    FIN; bidirectional ones arrive as ``StructuredStream`` (reply with ``send_obj``),
    unidirectional ones as ``StructuredReceiveStream``.
    """

    schema: Schema[T]

    async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
        structured: StructuredStream[T] | StructuredReceiveStream[T]
        if isinstance(stream, WebTransportStream):
            structured = StructuredStream(stream, schema=self.schema)
        else:
            structured = StructuredReceiveStream(stream, schema=self.schema)
        async for message in structured:
            await self.on_message(session, structured, message)

    async def on_message(
        self,
        session: WebTransportSession,
        stream: StructuredStream[T] | StructuredReceiveStream[T],
        message: T,
    ) -> None:
        """Override to handle one message."""
