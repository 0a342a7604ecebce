"""Class-based WebTransport endpoints, in the manner of Starlette's ``WebSocketEndpoint``.

A WebSocket has one message stream, so ``WebSocketEndpoint`` is a loop. A WebTransport
session has any number of streams plus datagrams, all at once, so
:class:`WebTransportEndpoint` runs each incoming stream's handler in its own task,
reads datagrams in another, and cancels them all when the session ends: one slow
stream never holds up the others, and nothing outlives the session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Generator
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

from ..asgi import Receive, Scope, Send
from ..session import (
    SessionClosedError,
    StreamResetError,
    StreamStoppedError,
    StreamType,
    WebTransportSession,
    WebTransportStream,
)
from ..structured import Schema, StructuredReceiveStream, StructuredStream
from .exceptions import end_session, run_session

__all__ = ["StructuredEndpoint", "WebTransportEndpoint"]

T = TypeVar("T")

_Start = Callable[[Coroutine[Any, Any, None]], None]


class WebTransportEndpoint:
    """Subclass and override the ``on_*`` hooks; route it like a function endpoint.

    ``on_stream`` runs in a task of its own for every stream the peer opens and owns
    that stream. If the peer resets or stops the stream, the handler's
    ``StreamResetError``/``StreamStoppedError`` ends that handler only. When the session
    ends, handlers still running are cancelled (or see ``SessionClosedError`` if they
    were reading or writing), then ``on_disconnect`` runs. Any other exception from a
    hook ends the session as described in ``docs/starlette.md``.
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

        async def run(stack: AsyncExitStack) -> None:
            await self.on_connect(session)
            if session.is_ready:
                await self._serve(session)

        await run_session(session, run)

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
        try:
            await self._run_tasks(session)
        except Exception as exc:
            await end_session(session, exc)
            raise
        finally:
            if not session.is_closed:
                await session.close()
            await self.on_disconnect(session, session.close_code or 0, session.close_reason or "")

    async def _run_tasks(self, session: WebTransportSession) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            async with asyncio.TaskGroup() as group:

                def start(coroutine: Coroutine[Any, Any, None]) -> None:
                    task = group.create_task(coroutine)
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

                start(self._accept_streams(session, start))
                start(self._receive_datagrams(session))
                await session.wait_closed()
                for task in tasks:
                    task.cancel()
        except BaseExceptionGroup as group_error:
            # The first failure decides how the session ends; the group stays attached.
            raise group_error.exceptions[0] from group_error

    async def _accept_streams(self, session: WebTransportSession, start: _Start) -> None:
        async for stream in session.incoming_streams():
            start(self._handle_stream(session, stream))

    async def _handle_stream(self, session: WebTransportSession, stream: StreamType) -> None:
        # The peer may abandon a stream (reset, STOP_SENDING): the session goes on. When
        # the session ends, pending reads and writes raise SessionClosedError: the
        # handler is over, as a cancelled one would be.
        with contextlib.suppress(StreamResetError, StreamStoppedError, SessionClosedError):
            await self.on_stream(session, stream)

    async def _receive_datagrams(self, session: WebTransportSession) -> None:
        with contextlib.suppress(SessionClosedError):  # a reply after the session ended
            async for data in session.datagrams:
                await self.on_datagram(session, data)


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
