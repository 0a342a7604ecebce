"""The streams of one session: opening, admitting, feeding, and their receive credit.

:class:`StreamSet` is what the session's streams and datagram transport see of it (their
:class:`~.stream.StreamOwner` and :class:`~.datagram.DatagramOwner`), and it sees the
session only through :class:`Link`. The
session's reader hands it the stream effects of each received message
(:mod:`.demux`); the public stream calls of the session (``create_*_stream()``,
``accept_*_stream()``, ``incoming_streams()``) are delegations to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol.ids import is_unidirectional
from . import constants
from . import demux as fx
from .events import EventType
from .exceptions import (
    ProtocolError,
    SessionClosedError,
    StreamLimitError,
    WebTransportTimeoutError,
)
from .reporter import ConsumedReporter
from .signal import Signal
from .stream import (
    StreamType,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
    _StreamBase,
)

if TYPE_CHECKING:
    from ..asgi import ReceiveEvent, SendMessage
    from .config import SessionConfig
    from .diagnostics import Diagnostics


class Facade(Protocol):
    """The session's public face, as far as its streams read it."""

    @property
    def config(self) -> SessionConfig: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str | None: ...
    @property
    def session_id(self) -> str: ...
    @property
    def is_closed(self) -> bool: ...


class Link(Protocol):
    """All the streams need of their session: its public face and the calls it hands
    over. The session implements it with one small forwarding object (a dataclass of
    bound methods would cost every session half a kilobyte)."""

    @property
    def session(self) -> Facade: ...

    def check_open(self) -> None:
        """Raise unless the session is CONNECTED or DRAINING."""

    def closed_error(self) -> SessionClosedError: ...

    def send(self, message: SendMessage) -> Awaitable[None]:
        """A post-accept message; :class:`SessionClosedError` once the session is over."""

    def send_raw(self, message: SendMessage) -> Awaitable[None]:
        """The same without the session's checks; the server's ``OSError`` passes."""

    def emit(self, event_type: EventType, **data: Any) -> Awaitable[None]:
        """The session's events."""

    @property
    def handlers(self) -> Mapping[EventType, list[Any]]:
        """The session's event handlers, by event (the session's own dict, which only
        grows): per-stream events are only built (a coroutine and its arguments) for a
        session that listens to them."""


@dataclass(eq=False, slots=True)
class PendingOpen:
    bidirectional: bool
    future: asyncio.Future[WebTransportSendStream]
    created_at: float = field(default_factory=time.monotonic)


class StreamSet:
    """Live streams, peer streams waiting for the app, opens waiting for the server."""

    # Slots: one of these per session (or connection), and a __dict__ doubles its size.
    __slots__ = (
        "_background",
        "_diagnostics",
        "_handlers",
        "_incoming_changed",
        "_link",
        "_on_incoming",
        "_reporter",
        "_session",
        "_unannounced",
        "config",
        "consumed_mode",
        "demux",
        "incoming",
        "pending",
        "streams",
    )

    def __init__(
        self, link: Link, diagnostics: Diagnostics, *, local_bit: int, consumed_mode: bool
    ) -> None:
        self._link = link
        self._session = link.session
        self._handlers = link.handlers
        self._diagnostics = diagnostics
        self.config: SessionConfig = link.session.config
        """The session's (it never changes): an attribute, read on every received
        message and every read, rather than a property chain to the session."""
        self.streams: dict[int, _StreamBase] = {}
        # Lists, not deques: both stay short (max_incoming_streams, max_streams), and an
        # empty deque costs 770 bytes in every session, an empty list 56.
        self.incoming: list[StreamType] = []
        self.pending: list[PendingOpen] = []
        self.demux = fx.Demux(local_bit=local_bit)
        self._incoming_changed = Signal()
        self._on_incoming: Callable[[StreamType], object] | None = None
        self._unannounced: StreamType | None = None
        """A new peer stream for ``_on_incoming``, until its first data is in it."""
        self._background: set[asyncio.Task[None]] | None = None
        """Abandoned opens being reset; made by the first (an empty set is 216 bytes)."""
        self.consumed_mode = consumed_mode
        """The server returns receive credit on ``webtransport.stream.consumed`` (1.1)."""
        self._reporter: ConsumedReporter | None = None
        """Made by the first report (consumed mode): an idle session holds none."""

    # --- what the reader asks ----------------------------------------------------------

    def receive(self, message: ReceiveEvent) -> list[fx.Effect]:
        """The effects of a received message (:class:`~.demux.Demux`)."""
        admit = True  # what the demux reads only for a new peer stream's data
        if (
            message["type"] == "webtransport.stream.receive"
            and message["stream"] not in self.streams
        ):
            config = self.config
            admit = (
                len(self.streams) + len(self.pending) < config.max_streams
                and len(self.incoming) < config.max_incoming_streams
            )
        oldest = self.pending[0].bidirectional if self.pending else None
        return self.demux.receive(message, streams=self.streams, admit=admit, oldest_open=oldest)

    async def apply(self, effect: fx.Effect) -> None:
        """Apply a stream effect other than :class:`~.demux.Data` (the reader hands data to
        :meth:`on_data` itself, and applies the session's effects)."""
        if isinstance(effect, fx.NewStream):
            await self._new_peer_stream(effect.stream_id, effect.bidirectional)
        elif isinstance(effect, fx.Opened):
            await self._on_opened(effect.stream_id, effect.bidirectional)
        elif isinstance(effect, fx.OpenFailed):
            future = self.pending.pop(0).future
            if not future.done():
                message = f"the server answered the stream open with stream {effect.stream_id}"
                future.set_exception(ProtocolError(message))
        elif isinstance(effect, fx.PeerReset):
            stream = self.streams[effect.stream_id]
            stream._peer_reset(effect.code)
            self._diagnostics.stats.stream_errors += 1
            await self._link.emit(EventType.STREAM_RESET, stream=stream, code=effect.code)
            await self.changed(stream)
        elif isinstance(effect, fx.PeerStopped):
            stream = self.streams[effect.stream_id]
            if stream._peer_stopped(effect.code):
                self._diagnostics.stats.stream_errors += 1
                await self._link.emit(EventType.STREAM_STOPPED, stream=stream, code=effect.code)
                await self.changed(stream)
        elif isinstance(effect, fx.Refuse):
            await self._refuse(effect.stream_id, effect.bidirectional)

    async def end(self) -> None:
        """The session ended: opens fail, streams abort, waiters wake."""
        # The server returns all credit of an ended session: nothing more to report.
        self.consumed_mode = False
        if self._reporter is not None:
            self._reporter.end()
        for pending in self.pending:
            if not pending.future.done():
                pending.future.set_exception(self._link.closed_error())
        self.pending.clear()
        streams = list(self.streams.values())
        for stream in streams:
            stream._abort()
        self._incoming_changed.set()
        for stream in streams:
            await self.changed(stream)

    # --- what the app asks, through the session ----------------------------------------

    async def open(self, *, bidirectional: bool, timeout: float | None) -> WebTransportSendStream:
        link = self._link
        link.check_open()
        config = self.config
        if len(self.streams) + len(self.pending) >= config.max_streams:
            raise StreamLimitError(
                f"session {self._session.session_id} has {len(self.streams)} open streams and "
                f"{len(self.pending)} pending opens; max_streams is {config.max_streams}"
            )
        timeout = config.stream_open_timeout if timeout is None else timeout
        pending = PendingOpen(bidirectional, asyncio.get_running_loop().create_future())
        # Queued before sending: the reply may be processed before send() returns.
        self.pending.append(pending)
        try:
            await link.send({"type": "webtransport.stream.open", "bidirectional": bidirectional})
        except BaseException:
            if pending in self.pending:
                self.pending.remove(pending)
            raise
        future = pending.future
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()  # the reply raced the timeout: the open succeeded
            future.cancel()  # the reader resets the stream when the reply comes
            raise WebTransportTimeoutError(
                f"the server did not open a stream within {timeout} s "
                "(the peer's stream limit may be reached)"
            ) from None
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
            elif not future.cancelled() and future.exception() is None:
                self._spawn(self._abandon(future.result()))
            raise

    async def next_incoming(self, *, bidirectional: bool, timeout: float | None) -> StreamType:
        kind = "bidirectional" if bidirectional else "unidirectional"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for stream in self.incoming:
                        if is_unidirectional(stream.stream_id) != bidirectional:
                            self.incoming.remove(stream)
                            return stream
                    if self._session.is_closed:
                        raise self._link.closed_error()
                    self._incoming_changed.clear()
                    await self._incoming_changed.wait()
        except TimeoutError:
            raise WebTransportTimeoutError(
                f"no {kind} stream from the peer of session {self._session.session_id} "
                f"within {timeout} s"
            ) from None

    def serve_incoming(self, handler: Callable[[StreamType], object] | None) -> None:
        """Hand every peer stream to ``handler(stream)`` as the reader admits it (those
        queued already first) instead of queueing it for ``accept_*``/``incoming_streams()``;
        ``None`` goes back to queueing. :func:`~.tasks.serve_streams` starts each stream's
        task from here, so a stream reaches its handler without a hop through a consumer
        task."""
        self._on_incoming = handler
        while handler is not None and self.incoming:
            handler(self.incoming.pop(0))

    async def all_incoming(self) -> AsyncIterator[StreamType]:
        while True:
            if self.incoming:
                yield self.incoming.pop(0)
            elif self._session.is_closed:
                return
            else:
                self._incoming_changed.clear()
                await self._incoming_changed.wait()

    # --- StreamOwner and DatagramOwner: what the streams and datagrams see -----------
    # (``stream._stream_id`` rather than the ``stream_id`` property on these paths: they run
    # several times per stream, and the property is a Python call each time.)

    @property
    def close_code(self) -> int | None:
        return self._session.close_code

    @property
    def close_reason(self) -> str | None:
        return self._session.close_reason

    async def send(self, message: SendMessage) -> None:
        reporter = self._reporter
        if reporter is not None and reporter.due:
            # Reports due ride with the app's own send: usually the reply to what it has
            # just read, so no other task has to wake for them (.reporter).
            await reporter.send_due()
        await self._link.send(message)

    async def changed(self, stream: _StreamBase, *, error: bool = False) -> None:
        if error:
            self._diagnostics.stats.stream_errors += 1
        if stream._state_changed() and self.streams.pop(stream._stream_id, None) is not None:
            self.demux.retire(stream._stream_id)
            self._diagnostics.stats.streams_closed += 1
            if self._handlers and self._handlers.get(EventType.STREAM_CLOSED):
                await self._link.emit(EventType.STREAM_CLOSED, stream=stream)

    @property
    def is_closed(self) -> bool:
        return self._session.is_closed

    def closed_error(self) -> SessionClosedError:
        return self._link.closed_error()

    def datagram_sent(self, size: int) -> None:
        """DatagramOwner: the datagram transport reports here too."""
        self._diagnostics.stats.datagrams_sent += 1
        self._diagnostics.datagram_bytes_sent += size

    def wrote(self, stream: _StreamBase, size: int, waited: float) -> None:
        diagnostics = self._diagnostics
        diagnostics.bytes_sent += size
        if waited > diagnostics.max_write_wait or waited >= constants.SLOW_WRITE_SECONDS:
            diagnostics.record_wait(stream._stream_id, waited)

    def consumed(self, stream: _StreamBase, size: int, *, flush: bool = False) -> None:
        if self.consumed_mode:  # else the server returns it (end() turns it off)
            reporter = self._reporter or self._reporter_made()
            reporter.consumed(stream._stream_id, size, flush=flush)

    def unread(self, stream: _StreamBase, size: int) -> None:
        if self.consumed_mode:
            self._reporter_made().unread(stream._stream_id, size)

    @property
    def reporter(self) -> asyncio.Task[None] | None:
        """The task that sends the reports no write carried, once one was needed."""
        return None if self._reporter is None else self._reporter.task

    def _reporter_made(self) -> ConsumedReporter:
        if self._reporter is None:
            self._reporter = ConsumedReporter(self._link.session, self._link.send_raw)
        return self._reporter

    # --- internals ----------------------------------------------------------------------

    def _register(self, stream: _StreamBase) -> None:
        self.streams[stream._stream_id] = stream
        stats = self._diagnostics.stats
        stats.streams_created += 1
        if is_unidirectional(stream._stream_id):
            stats.unidirectional_streams += 1
        else:
            stats.bidirectional_streams += 1

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        if self._background is None:
            self._background = set()
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abandon(self, stream: WebTransportSendStream) -> None:
        self._diagnostics.streams_abandoned += 1
        with contextlib.suppress(SessionClosedError):
            await stream.abort(constants.STREAM_ABANDONED_CODE)

    async def on_data(self, effect: fx.Data) -> None:
        """Data (and FIN) for a live stream: the one effect of most messages."""
        stream = self.streams[effect.stream_id]
        data, end_stream = effect.data, effect.end_stream
        stream._feed(data, end_stream)
        self._diagnostics.bytes_received += len(data)
        if end_stream:
            await self.changed(stream)
        if not self.consumed_mode and stream._full():
            # The memory bound of a 1.0 server, whose credit follows this reader: pull
            # nothing more until the app reads this stream.
            self._diagnostics.record_pause(stream)
            try:
                await stream._wait_for_space()
            finally:
                self._diagnostics.record_pause(None)

    async def _new_peer_stream(self, stream_id: int, bidirectional: bool) -> None:
        stream: WebTransportStream | WebTransportReceiveStream
        if bidirectional:
            stream = WebTransportStream(self, stream_id)
        else:
            stream = WebTransportReceiveStream(self, stream_id)
        self._register(stream)
        if self._on_incoming is not None:
            self._unannounced = stream  # handed over by announce(), with its first data
        else:
            self._queue_incoming(stream)
        if self._handlers and self._handlers.get(EventType.STREAM_OPENED):
            await self._link.emit(EventType.STREAM_OPENED, stream=stream, initiator="peer")

    def announce(self) -> None:
        """Hand the stream the last message opened to the ``serve_incoming`` handler,
        now that the message's data is in it (the reader calls this after each message):
        a handler that starts at once (an eager task, Python 3.12+) finds its request
        there and can answer within the same loop turn."""
        stream = self._unannounced
        if stream is None:
            return
        self._unannounced = None
        on_incoming = self._on_incoming
        if on_incoming is None:  # serve_streams() returned meanwhile
            self._queue_incoming(stream)
            return
        if not self.consumed_mode:
            on_incoming(stream)
            return
        # The handler will read what just arrived, which makes a consumed report due;
        # its answer usually carries it. The look for reports no send carried is made
        # one callback from now, right behind the handler's first step (a task's step
        # scheduled now runs before it), instead of a callback its read would add in a
        # loop turn of its own. A handler that ran to its end here (an eager task) and
        # left nothing due needs no look at all.
        reporter = self._reporter_made()
        reporter.holding = True
        try:
            on_incoming(stream)
        finally:
            reporter.holding = False
        if reporter.due or not stream._both_done():
            reporter.kick_soon()

    def _queue_incoming(self, stream: StreamType) -> None:
        """For ``accept_*_stream()`` and ``incoming_streams()``."""
        self.incoming.append(stream)
        self._incoming_changed.set()

    async def _refuse(self, stream_id: int, bidirectional: bool) -> None:
        self._diagnostics.streams_refused += 1
        code = constants.STREAM_REFUSED_CODE
        try:
            await self._link.send_raw(
                {"type": "webtransport.stream.stop_sending", "stream": stream_id, "code": code}
            )
            if bidirectional:
                await self._link.send_raw(
                    {"type": "webtransport.stream.reset", "stream": stream_id, "code": code}
                )
        except OSError:
            return
        await self._link.emit(EventType.STREAM_REFUSED, stream_id=stream_id)

    async def _on_opened(self, stream_id: int, bidirectional: bool) -> None:
        pending = self.pending.pop(0)
        if pending.future.done():  # the create_*_stream() call gave up
            self.demux.retire(stream_id)
            self._diagnostics.streams_abandoned += 1
            code = constants.STREAM_ABANDONED_CODE
            with contextlib.suppress(OSError):
                await self._link.send_raw(
                    {"type": "webtransport.stream.reset", "stream": stream_id, "code": code}
                )
                if bidirectional:
                    await self._link.send_raw(
                        {
                            "type": "webtransport.stream.stop_sending",
                            "stream": stream_id,
                            "code": code,
                        }
                    )
            return
        stream = (
            WebTransportStream(self, stream_id)
            if bidirectional
            else WebTransportSendStream(self, stream_id)
        )
        self._register(stream)
        pending.future.set_result(stream)
        await self._link.emit(EventType.STREAM_OPENED, stream=stream, initiator="local")
