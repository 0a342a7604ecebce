"""Stream objects of a session.

A stream is a pair of sides: the receiving side buffers what the session's reader hands
it and tells the session what the app read or dropped (with a spec 1.1 server, that
returns the stream's receive credit); the sending side is nothing but ``await send(...)``
of contract messages, so a write waits exactly as long as the server's backpressure says.
Streams are created by the session (``create_*_stream()``, ``incoming_streams()``), never
by the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..protocol.errors import check_code
from . import constants
from .exceptions import (
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
    StreamStoppedError,
)
from .signal import Signal
from .state import Side, StreamDirection, StreamState

if TYPE_CHECKING:
    from ..asgi import SendMessage
    from .config import SessionConfig


class StreamOwner(Protocol):
    """All a stream knows of its session: the session hands each stream this, and the
    stream reaches nothing else of it."""

    @property
    def config(self) -> SessionConfig: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def send(self, message: SendMessage) -> None:
        """Send a post-accept message; :class:`SessionClosedError` once it is over."""

    async def changed(self, stream: _StreamBase, *, error: bool = False) -> None:
        """A side of ``stream`` ended; ``error``: by a reset or stop we sent."""

    def wrote(self, stream: _StreamBase, size: int, waited: float) -> None:
        """A write of ``size`` bytes was taken after ``waited`` seconds."""

    def consumed(self, stream: _StreamBase, size: int, *, flush: bool = False) -> None:
        """The app read or dropped ``size`` bytes (spec 1.1 credit); ``flush``: report now."""

    def unread(self, stream: _StreamBase, size: int) -> None:
        """``size`` bytes the app took went back to the buffer."""


class _StreamBase:
    _DIRECTION: ClassVar[StreamDirection]

    # Slots: a session may hold thousands of streams, and a __dict__ per stream doubles
    # its size. Every attribute is declared here, so that the bidirectional class can
    # inherit both sides (only one base of a class may have non-empty slots).
    __slots__ = (
        "_buffer",
        "_bytes_received",
        "_bytes_sent",
        "_created_at",
        "_half_closed_at",
        "_max_write_wait",
        "_over",
        "_owner",
        "_readable",
        "_reading",
        "_recv",
        "_reset_code",
        "_send",
        "_space",
        "_stop_code",
        "_stream_id",
        "_writes_idle",
        "_writes_in_flight",
    )

    def __init__(self, owner: StreamOwner, stream_id: int) -> None:
        self._owner = owner
        self._stream_id = stream_id
        direction = self._DIRECTION
        self._recv: Side | None = None if direction is StreamDirection.SEND_ONLY else Side.OPEN
        self._send: Side | None = None if direction is StreamDirection.RECEIVE_ONLY else Side.OPEN
        self._created_at = time.monotonic()
        self._half_closed_at: float | None = None
        # receiving side
        self._buffer = bytearray()
        self._reset_code: int | None = None
        self._readable: Signal | None = None
        """Made by the first read that has to wait: most streams' data is in before the
        app reads, and then no one ever waits on it."""
        self._over = False
        """More than ``stream_buffer_size`` unread bytes (a 1.0 server's reader pauses)."""
        self._space: Signal | None = None
        """Made for the paused reader only: most streams never fill up."""
        self._reading = False
        self._bytes_received = 0
        # sending side
        self._stop_code: int | None = None
        self._writes_in_flight = 0
        self._writes_idle: Signal | None = None
        """Made for ``drain()`` only, and only while writes are in flight."""
        self._bytes_sent = 0
        self._max_write_wait = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._stream_id} state={self.state.value}>"

    @property
    def stream_id(self) -> int:
        """The QUIC stream id (bit 0: opener, 0 client / 1 server; bit 1: unidirectional)."""
        return self._stream_id

    @property
    def direction(self) -> StreamDirection:
        return self._DIRECTION

    @property
    def state(self) -> StreamState:
        if self._both_done():
            return StreamState.CLOSED
        recv, send = self._recv, self._send
        if recv is None or send is None:  # a one-way stream whose side is still open
            return StreamState.OPEN
        if send is not Side.OPEN:
            return StreamState.HALF_CLOSED_LOCAL
        if recv is not Side.OPEN:
            return StreamState.HALF_CLOSED_REMOTE
        return StreamState.OPEN

    @property
    def receive_side(self) -> Side | None:
        """Where the receiving side is; ``None`` for a stream we only write."""
        return self._recv

    @property
    def send_side(self) -> Side | None:
        """Where the sending side is; ``None`` for a stream we only read."""
        return self._send

    @property
    def half_closed_at(self) -> float | None:
        """``time.monotonic()`` when the first side ended (diagnostics of stuck streams)."""
        return self._half_closed_at

    @property
    def buffered(self) -> int:
        """Received bytes not read yet."""
        return len(self._buffer)

    # --- hooks for the session ----------------------------------------------------------

    def _state_changed(self) -> bool:
        """Note the time the first side ended; True once both are done."""
        if self._half_closed_at is None and self.state is not StreamState.OPEN:
            self._half_closed_at = time.monotonic()
        return self._both_done()

    def _both_done(self) -> bool:
        """``state is StreamState.CLOSED``, cheaply (a side that does not exist is done)."""
        return self._recv is not Side.OPEN and self._send is not Side.OPEN

    async def _wait_for_space(self) -> None:
        """Until the app read the buffer below ``stream_buffer_size`` (1.0 servers)."""
        if self._over:
            if self._space is None:
                self._space = Signal()
            await self._space.wait()

    def _full(self) -> bool:
        return self._over

    def _make_space(self) -> None:
        self._over = False
        space, self._space = self._space, None
        if space is not None:
            space.set()

    def _feed(self, data: bytes, end_stream: bool) -> None:
        buffer = self._buffer
        buffer += data
        self._bytes_received += len(data)
        if end_stream:
            self._recv = Side.FINISHED
            if not buffer:
                self._report_if_read_out()
        self._wake_reader()
        if len(buffer) > self._owner.config.stream_buffer_size:
            self._over = True

    def _wake_reader(self) -> None:
        readable = self._readable
        if readable is not None:
            readable.set()

    def _peer_reset(self, code: int | None) -> None:
        self._recv = Side.RESET
        self._reset_code = code
        self._report_if_read_out()
        self._wake_reader()

    def _report_if_read_out(self) -> None:
        """Nothing more will arrive and nothing is left to read: report every byte read,
        rather than keep the last partial batch's credit held until the session ends."""
        if not self._buffer and self._recv is not Side.OPEN:
            self._owner.consumed(self, 0, flush=True)

    def _peer_stopped(self, code: int | None) -> bool:
        self._stop_code = code
        if self._send is not Side.OPEN:
            return False
        self._send = Side.STOPPED
        return True

    def _abort(self) -> None:
        if self._recv is Side.OPEN:
            self._recv = Side.ABORTED
        if self._send is Side.OPEN:
            self._send = Side.ABORTED
        self._wake_reader()
        self._make_space()

    def debug_info(self) -> dict[str, Any]:
        """What ``session.debug_state()`` shows of this stream."""
        now = time.monotonic()
        info: dict[str, Any] = {
            "stream_id": self._stream_id,
            "direction": self._DIRECTION.value,
            "state": self.state.value,
            "age": now - self._created_at,
        }
        if self._recv is not None:
            info |= {
                "receive_side": self._recv.value,
                "buffered": len(self._buffer),
                "bytes_received": self._bytes_received,
                "reset_code": self._reset_code,
            }
        if self._send is not None:
            info |= {
                "send_side": self._send.value,
                "bytes_sent": self._bytes_sent,
                "writes_in_flight": self._writes_in_flight,
                "max_write_wait": self._max_write_wait,
                "stop_code": self._stop_code,
            }
        if self._half_closed_at is not None:
            info["half_closed_for"] = now - self._half_closed_at
        return info

    def _session_closed_error(self) -> SessionClosedError:
        owner = self._owner
        return SessionClosedError(
            f"stream {self._stream_id}: the session is closed",
            code=owner.close_code,
            reason=owner.close_reason or "",
        )


class WebTransportReceiveStream(_StreamBase):
    """A stream we read: a peer-opened unidirectional one, or either side of a bidi one."""

    __slots__ = ()
    _DIRECTION = StreamDirection.RECEIVE_ONLY

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes as soon as any are available (all until EOF if ``n < 0``);
        ``b""`` at EOF. Data buffered before a peer reset is returned first, then
        :class:`StreamResetError` is raised."""
        if n == 0:
            return b""
        if n > 0:
            while not self._buffer:
                if self._recv is Side.FINISHED:
                    return b""
                await self._wait_for_data()
            return self._take(n)
        chunks = bytearray()
        try:
            while True:
                if self._buffer:
                    chunks += self._take(len(self._buffer))
                elif self._recv is Side.FINISHED:
                    return bytes(chunks)
                else:
                    await self._wait_for_data()
        except BaseException:
            self._restore(chunks)
            raise

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`asyncio.IncompleteReadError` (with the partial
        data) on an earlier EOF. On a reset or cancellation the partial data goes back
        to the buffer, so nothing is lost."""
        if n < 0:
            raise ValueError(f"readexactly() needs n >= 0, got {n}")
        data = bytearray()
        try:
            while len(data) < n:
                if self._buffer:
                    data += self._take(n - len(data))
                elif self._recv is Side.FINISHED:
                    raise asyncio.IncompleteReadError(bytes(data), n)
                else:
                    await self._wait_for_data()
        except asyncio.IncompleteReadError:
            raise
        except BaseException:
            self._restore(data)
            raise
        return bytes(data)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Data up to and including ``separator``. At EOF without it:
        :class:`asyncio.IncompleteReadError`. When ``stream_buffer_size`` bytes arrive
        without it: :class:`asyncio.LimitOverrunError`, and the data stays buffered."""
        if not separator:
            raise ValueError("readuntil() needs a non-empty separator")
        limit = self._owner.config.stream_buffer_size
        start = 0
        while True:
            index = self._buffer.find(separator, start)
            if index >= 0:
                return self._take(index + len(separator))
            if len(self._buffer) > limit:
                raise asyncio.LimitOverrunError(
                    f"separator not found in the first {len(self._buffer)} bytes "
                    f"(stream_buffer_size is {limit})",
                    len(self._buffer),
                )
            start = max(0, len(self._buffer) - len(separator) + 1)
            if self._recv is Side.FINISHED:
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, None)
            await self._wait_for_data()

    def at_eof(self) -> bool:
        """True once the peer's FIN arrived and everything before it was read."""
        return self._recv is Side.FINISHED and not self._buffer

    async def stop_sending(self, code: int = 0) -> None:
        """Tell the peer we will read no more (STOP_SENDING) and drop unread data."""
        check_code(code, "error codes")
        self._owner.consumed(self, len(self._buffer), flush=True)  # dropped: consumed
        self._buffer.clear()
        self._make_space()
        self._wake_reader()
        side = self._recv
        if side is Side.OPEN:
            self._recv = Side.STOPPED
            await self._owner.send(
                {
                    "type": "webtransport.stream.stop_sending",
                    "stream": self._stream_id,
                    "code": code,
                }
            )
            await self._owner.changed(self, error=True)
        elif side is Side.FINISHED or side is Side.RESET:
            self._recv = Side.STOPPED

    async def close(self) -> None:
        """Stop reading: STOP_SENDING with code 0 unless the peer already finished."""
        await self.stop_sending(0)

    async def abort(self, code: int = 0) -> None:
        """Give the stream up: here STOP_SENDING, as :meth:`stop_sending`. Bidirectional
        streams reset their sending side too, so one call ends any stream."""
        await self.stop_sending(code)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read(constants.ITER_CHUNK_SIZE)
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def _take(self, n: int) -> bytes:
        buffer = self._buffer
        if n >= len(buffer):  # all of it, the usual case: one copy, no slice
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:n])
            del buffer[:n]
        if self._over and len(buffer) <= self._owner.config.stream_buffer_size:
            self._make_space()
        # Read out with nothing more to come: report now (see _report_if_read_out).
        self._owner.consumed(self, len(data), flush=not buffer and self._recv is not Side.OPEN)
        return data

    def _restore(self, data: bytearray) -> None:
        if data and self._recv is not Side.STOPPED:
            self._buffer[:0] = data
            self._owner.unread(self, len(data))

    async def _wait_for_data(self) -> None:
        """Wait for more data, or raise if none can come (EOF is the caller's business)."""
        side = self._recv
        if side is Side.RESET:
            raise StreamResetError(self._reset_code, stream_id=self._stream_id)
        if side is Side.STOPPED:
            raise StreamClosedError(
                f"stream {self._stream_id}: stop_sending() was called, nothing more to read",
                stream_id=self._stream_id,
            )
        if side is Side.ABORTED:
            raise self._session_closed_error()
        if self._reading:
            raise RuntimeError(
                f"stream {self._stream_id}: another coroutine is already waiting for data"
            )
        self._owner.consumed(self, 0, flush=True)  # waiting must not hold credit back
        self._reading = True
        readable = self._readable
        if readable is None:
            self._readable = readable = Signal()
        else:
            readable.clear()
        try:
            await readable.wait()
        finally:
            self._reading = False


class WebTransportSendStream(_StreamBase):
    """A stream we write: one we opened unidirectionally, or either side of a bidi one."""

    __slots__ = ()
    _DIRECTION = StreamDirection.SEND_ONLY

    async def write(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` (FIN too if ``end_stream``). Returns when the server took it,
        which waits while QUIC flow or congestion control holds the stream back."""
        self._check_writable()
        if type(data) is not bytes:  # the usual type passes without a copy or a check
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"stream data must be bytes, not {type(data).__name__}")
            data = bytes(data)
        await self._send_data(data, end_stream)

    async def _send_data(self, payload: bytes, end_stream: bool) -> None:
        if end_stream:
            self._send = Side.FINISHED
        self._writes_in_flight += 1
        started = time.monotonic()
        try:
            await self._owner.send(
                {
                    "type": "webtransport.stream.send",
                    "stream": self._stream_id,
                    "data": payload,
                    "end_stream": end_stream,
                }
            )
        finally:
            self._writes_in_flight -= 1
            if not self._writes_in_flight and self._writes_idle is not None:
                self._writes_idle.set()
                self._writes_idle = None
        waited = time.monotonic() - started
        size = len(payload)
        self._bytes_sent += size
        if waited > self._max_write_wait:
            self._max_write_wait = waited
        self._owner.wrote(self, size, waited)
        if end_stream:
            await self._owner.changed(self)

    async def drain(self) -> None:
        """Wait until writes in flight from other tasks were taken by the server; raise
        if the peer stopped the stream. (``write`` itself already waits for backpressure.)"""
        if self._writes_in_flight:
            if self._writes_idle is None:
                self._writes_idle = Signal()
            await self._writes_idle.wait()
        if self._send is Side.STOPPED:
            raise StreamStoppedError(self._stop_code, stream_id=self._stream_id)
        if self._send is Side.ABORTED:
            raise self._session_closed_error()

    async def reset(self, code: int = 0) -> None:
        """Abandon the sending side (RESET_STREAM); unsent data is discarded. No-op once
        the side is finished, reset or stopped, as for the server."""
        check_code(code, "error codes")
        if self._send is not Side.OPEN:
            return
        self._send = Side.RESET
        await self._owner.send(
            {"type": "webtransport.stream.reset", "stream": self._stream_id, "code": code}
        )
        await self._owner.changed(self, error=True)

    async def close(self) -> None:
        """Send FIN; no-op if the sending side is already done. On a bidirectional stream
        this is a half-close: reading goes on until the peer finishes too."""
        if self._send is Side.OPEN:
            await self._send_data(b"", True)

    async def abort(self, code: int = 0) -> None:
        """Give the stream up: here RESET_STREAM, as :meth:`reset`. Bidirectional streams
        send STOP_SENDING for their receiving side too, so one call ends any stream."""
        await self.reset(code)

    def _check_writable(self) -> None:
        side = self._send
        if side is Side.OPEN:
            return
        if side is Side.STOPPED:
            raise StreamStoppedError(self._stop_code, stream_id=self._stream_id)
        if side is Side.ABORTED:
            raise self._session_closed_error()
        raise StreamClosedError(
            f"stream {self._stream_id}: cannot write after "
            + ("close()" if side is Side.FINISHED else "reset()"),
            stream_id=self._stream_id,
        )


class WebTransportStream(WebTransportSendStream, WebTransportReceiveStream):
    """A bidirectional stream: both sides, each closed independently."""

    __slots__ = ()
    _DIRECTION = StreamDirection.BIDIRECTIONAL

    async def abort(self, code: int = 0) -> None:
        """End both directions at once with ``code``: RESET_STREAM for our sending side and
        STOP_SENDING for the peer's, each unless that side is already over. Only this
        stream ends; the session goes on."""
        check_code(code, "error codes")
        await self.reset(code)
        await self.stop_sending(code)


StreamType = WebTransportStream | WebTransportReceiveStream
"""What ``incoming_streams()`` yields: bidi streams, or the peer's unidirectional ones."""
