"""The session's reader: the one loop that takes what ``receive`` returns and applies it.

A mixin of :class:`~.session.WebTransportSession`, with :class:`SessionLink`, what the
session's streams may call of it. The loop runs in a task of the session's (the reader
task, started one loop turn after ``accept()``/``initialize()``) or, when ``serve_streams``
is called before then, in that call's own task (:meth:`SessionReader._read_here`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from . import demux as fx
from .events import EventHandler, EventType
from .state import OPEN_STATES, SessionState

if TYPE_CHECKING:
    from ..asgi import ContractReceive, SendMessage
    from .datagram import WebTransportDatagramTransport
    from .diagnostics import Diagnostics, SessionStats
    from .exceptions import SessionClosedError
    from .session import WebTransportSession
    from .streamset import StreamSet

__all__ = ["SessionLink", "SessionReader"]

logger = logging.getLogger("starlette_webtransport.session")


class SessionReader:
    """``_read_loop`` and where it runs: the reader task, or ``serve_streams``' task."""

    _reader: asyncio.Task[None] | None
    _reader_start: asyncio.Handle | None
    """The reader task starts one loop turn after ``accept()``: ``serve_streams``
    called before then reads in its own task instead (see :meth:`_read_here`)."""
    _reading_here: bool

    if TYPE_CHECKING:  # what it uses of the session
        _state: SessionState
        _receive: ContractReceive
        _stream_set: StreamSet
        _stats: SessionStats
        _diagnostics: Diagnostics
        _datagrams: WebTransportDatagramTransport
        _handlers: dict[EventType, list[EventHandler]]

        @property
        def session_id(self) -> str: ...

        async def _finish(
            self, code: int | None, reason: str, *, by: str, cause: str | None = None
        ) -> None: ...

        async def _emit(self, event_type: EventType, **data: Any) -> None: ...

    def _init_reader(self) -> None:
        self._reader = None
        self._reader_start = None
        self._reading_here = False

    def _start_reader(self) -> None:
        self._reader_start = None
        if self._state in OPEN_STATES:
            self._reader = asyncio.create_task(
                self._read_loop(), name=f"webtransport-session-{self.session_id}"
            )

    def _read_here(self) -> Coroutine[Any, Any, None] | None:
        """The reader's loop, to run in the calling task, if the reader task has not
        started yet; None if it has. ``serve_streams`` awaits it right after ``accept()``:
        its task has nothing else to do until the session ends, and a reader task of its
        own would cost every idle session a task and its frames (close to a kilobyte).
        A plain method, so that no frame of its own is held while the loop runs.

        The loop returns when the session is closed, or once ``close()`` has begun (it
        takes nothing more then, as a cancelled reader task would not).
        """
        if self._reader_start is None:
            return None
        self._cancel_reader_start()
        self._reading_here = True
        return self._read_loop()

    def _cancel_reader_start(self) -> None:
        if self._reader_start is not None:
            self._reader_start.cancel()
            self._reader_start = None

    async def _stop_reader(self) -> None:
        self._cancel_reader_start()
        tasks = {
            task
            for task in (self._reader, self._stream_set.reporter)
            if task is not None and not task.done() and task is not asyncio.current_task()
        }
        for task in tasks:  # both before any wait: the reader must take nothing more
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _reader_running(self) -> bool:
        return (
            self._reading_here
            or self._reader_start is not None
            or (self._reader is not None and not self._reader.done())
        )

    async def _read_loop(self) -> None:
        try:
            while self._state is not SessionState.CLOSED:
                message = await self._receive()
                if self._state is SessionState.CLOSING and self._reading_here:
                    return  # close() began: it could not cancel this reader, so it stops
                stream_set = self._stream_set
                for effect in stream_set.receive(message):
                    await self._apply(effect)
                stream_set.announce()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("session %s: the ASGI receive channel failed", self.session_id)
            await self._finish(None, repr(exc), by="error", cause="error")
        finally:
            if self._reading_here:
                self._reading_here = False
                if self._state in OPEN_STATES:
                    # serve_streams() was cancelled (a timeout around it, say) and the
                    # session goes on: it needs a reader of its own from now on.
                    self._start_reader()

    async def _apply(self, effect: fx.Effect) -> None:
        """Do what :class:`~.demux.Demux` found a received message means."""
        if type(effect) is fx.Data:  # by far the most frequent: no isinstance chain
            await self._stream_set.on_data(effect)
        elif isinstance(effect, fx.Datagram):
            self._stats.datagrams_received += 1
            self._diagnostics.datagram_bytes_received += len(effect.data)
            dropped = self._datagrams._deliver(effect.data)
            if self._handlers:  # no coroutine per datagram for a session without handlers
                await self._emit(EventType.DATAGRAM_RECEIVED, size=len(effect.data))
            if dropped is not None:
                await self._emit(EventType.DATAGRAM_DROPPED, size=len(dropped))
        elif isinstance(effect, fx.Drain):
            if self._state is SessionState.CONNECTED:
                self._state = SessionState.DRAINING
                await self._emit(EventType.SESSION_DRAINING)
        elif isinstance(effect, fx.Disconnect):
            await self._finish(effect.code, effect.reason, by="peer", cause=effect.cause)
        elif isinstance(effect, fx.Violation):
            self._diagnostics.record_protocol_error(effect.text)
        else:
            await self._stream_set.apply(effect)


class SessionLink:
    """What the session's streams may call of it (:class:`~.streamset.Link`): plain
    methods that return the session's awaitables, so no frame is added to a call."""

    __slots__ = ("session",)

    def __init__(self, session: WebTransportSession) -> None:
        self.session = session

    def check_open(self) -> None:
        self.session._check_open()

    def closed_error(self) -> SessionClosedError:
        return self.session._closed_error()

    async def send(self, message: SendMessage) -> None:
        """A post-accept message; a server that says the session is gone (``OSError``)
        becomes :class:`SessionClosedError`. (Here rather than a method of the session
        that this forwards to: every stream write passes, and a frame less is a call less.)"""
        session = self.session
        session._check_open()
        try:
            await session._send(message)
        except OSError as exc:
            raise session._closed_error() from exc

    def send_raw(self, message: SendMessage) -> Awaitable[None]:
        return self.session._send(message)

    def emit(self, event_type: EventType, **data: Any) -> Awaitable[None]:
        return self.session._emit(event_type, **data)

    @property
    def handlers(self) -> dict[EventType, list[EventHandler]]:
        return self.session._handlers
