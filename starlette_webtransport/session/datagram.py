"""The session's datagrams.

Received datagrams wait in a bounded queue: when it is full the oldest is dropped and
counted in :attr:`WebTransportDatagramTransport.dropped`. Dropping the oldest (not the
newest) suits what datagrams carry, fresh state that supersedes old state, and a
reader that falls behind never stalls the session's streams.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from .exceptions import DatagramTooLargeError, SessionClosedError
from .signal import Signal

if TYPE_CHECKING:
    from ..asgi import SendMessage
    from .config import SessionConfig


class DatagramOwner(Protocol):
    """All the datagram transport knows of its session."""

    @property
    def config(self) -> SessionConfig: ...

    @property
    def is_closed(self) -> bool: ...

    async def send(self, message: SendMessage) -> None:
        """Send a post-accept message; :class:`SessionClosedError` once it is over."""

    def datagram_sent(self, size: int) -> None:
        """Count a datagram of ``size`` bytes handed to the server."""

    def closed_error(self) -> SessionClosedError:
        """The error to raise now that the session is closed."""


class WebTransportDatagramTransport:
    """``session.datagrams``: send and receive the session's datagrams."""

    def __init__(self, owner: DatagramOwner, *, max_datagram_size: int) -> None:
        self._owner = owner
        self._max_datagram_size = max_datagram_size
        self._queue: deque[bytes] | None = None
        """Made by the first datagram: most sessions never get one."""
        self._queue_size = owner.config.datagram_queue_size
        self._arrived = Signal()
        self._dropped = 0
        self._on_arrival: Callable[[], object] | None = None

    @property
    def max_datagram_size(self) -> int:
        """Largest payload the server can send in one packet (from the scope)."""
        return self._max_datagram_size

    @property
    def dropped(self) -> int:
        """Received datagrams dropped because the queue was full."""
        return self._dropped

    @property
    def queued(self) -> int:
        """Received datagrams waiting for ``receive()``."""
        return len(self._queue) if self._queue is not None else 0

    async def send(self, data: bytes) -> None:
        """Send one datagram; :class:`DatagramTooLargeError` (nothing sent) if it exceeds
        :attr:`max_datagram_size`. Delivery is not guaranteed."""
        if type(data) is not bytes:  # the usual type passes without a copy or a check
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"datagram data must be bytes, not {type(data).__name__}")
            data = bytes(data)
        size = len(data)
        if size > self._max_datagram_size:
            raise DatagramTooLargeError(size, self._max_datagram_size)
        await self._owner.send({"type": "webtransport.datagram.send", "data": data})
        self._owner.datagram_sent(size)

    async def receive(self) -> bytes:
        """The oldest queued datagram, waiting for one; :class:`SessionClosedError` once
        the session is closed and the queue is empty."""
        while not self._queue:
            if self._owner.is_closed:
                raise self._owner.closed_error()
            self._arrived.clear()
            await self._arrived.wait()
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        queue = self._queue
        if queue:  # a pump drains a burst without a frame per datagram for receive()
            return queue.popleft()
        try:
            return await self.receive()
        except SessionClosedError:
            raise StopAsyncIteration from None

    def _deliver(self, data: bytes) -> bytes | None:
        """Queue ``data``; return the datagram dropped to make room, if any."""
        dropped = None
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._queue_size:
            dropped = queue.popleft()
            self._dropped += 1
        queue.append(data)
        self._arrived.set()
        callback = self._on_arrival
        if callback is not None:
            self._on_arrival = None
            callback()
        return dropped

    def _when_arrived(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback()`` (once) when a datagram is queued, at once if one is: lets
        :func:`~.tasks.serve_streams` start a datagram pump only for a session that gets
        datagrams, not one task per session that may never see one."""
        if callback is not None and self._queue:
            callback()
        else:
            self._on_arrival = callback

    def _wake(self) -> None:
        self._arrived.set()
