"""An in-memory WebTransport stream pipe and datagram channel for structured tests.

They implement the same interface as the session's streams (``read``, ``readexactly``,
``write``, ``close``, ``reset``, ``stop_sending``, ``StreamResetError`` with ``.code``)
with real semantics: bytes flow in order and keep the boundaries of the writes that
produced them, FIN ends reading with ``b""``, a reset is raised to the reader after the
data written before it, STOP_SENDING makes the writer's later writes vanish, and a
writer waits while the pipe holds ``high_water`` bytes or more.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class StreamResetError(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"stream reset by the peer with code {code}")
        self.code = code


class _Direction:
    """Bytes from one side's writer to the other side's reader."""

    def __init__(self, high_water: int) -> None:
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.high_water = high_water
        self.fin = False
        self.reset_code: int | None = None
        self.was_reset = False
        self.stop_code: int | None = None
        self.was_stopped = False
        self.changed = asyncio.Condition()


class MemoryStream:
    """One endpoint of a bidirectional in-memory stream."""

    def __init__(self, incoming: _Direction, outgoing: _Direction) -> None:
        self._incoming = incoming
        self._outgoing = outgoing

    async def read(self, n: int = -1) -> bytes:
        if n == 0 or n < -1:
            raise ValueError(f"read size must be positive or -1, got {n}")
        d = self._incoming
        async with d.changed:
            await d.changed.wait_for(lambda: d.chunks or d.fin or d.was_reset or d.was_stopped)
            if d.was_stopped or not d.chunks:
                if d.was_reset and not d.was_stopped:
                    raise StreamResetError(d.reset_code)
                return b""
            if n == -1:
                data = b"".join(d.chunks)
                d.chunks.clear()
            else:
                data = d.chunks.popleft()
                if len(data) > n:
                    d.chunks.appendleft(data[n:])
                    data = data[:n]
            d.buffered -= len(data)
            d.changed.notify_all()
            return data

    async def readexactly(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = await self.read(n - len(data))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(data), n)
            data += chunk
        return bytes(data)

    async def write(self, data: bytes, *, end_stream: bool = False) -> None:
        d = self._outgoing
        async with d.changed:
            if d.fin or d.was_reset:
                raise RuntimeError("write after the sending side was finished or reset")
            await d.changed.wait_for(lambda: d.buffered < d.high_water or d.was_stopped)
            if d.was_stopped:
                return  # the peer reads no more: like the ASGI server, drop the data
            if data:
                d.chunks.append(bytes(data))
                d.buffered += len(data)
            d.fin = end_stream
            d.changed.notify_all()

    async def close(self) -> None:
        await self.write(b"", end_stream=True)

    async def reset(self, code: int = 0) -> None:
        d = self._outgoing
        async with d.changed:
            if not d.fin:
                d.was_reset = True
                d.reset_code = code
                d.changed.notify_all()

    async def stop_sending(self, code: int = 0) -> None:
        d = self._incoming
        async with d.changed:
            d.was_stopped = True
            d.stop_code = code
            d.chunks.clear()
            d.buffered = 0
            d.changed.notify_all()

    async def wait_stopped(self) -> int | None:
        """Wait until the peer sent STOP_SENDING for our sending side; return its code."""
        d = self._outgoing
        async with d.changed:
            await d.changed.wait_for(lambda: d.was_stopped)
            return d.stop_code


def memory_stream_pair(high_water: int = 256 * 1024) -> tuple[MemoryStream, MemoryStream]:
    a_to_b = _Direction(high_water)
    b_to_a = _Direction(high_water)
    return MemoryStream(b_to_a, a_to_b), MemoryStream(a_to_b, b_to_a)


class ChannelClosedError(Exception):
    pass


class MemoryDatagrams:
    """One endpoint of an in-memory datagram channel (reliable, unlike QUIC's).

    Like a session's datagrams, ``receive()`` raises once the channel is closed and
    drained, and iteration then ends.
    """

    def __init__(
        self,
        incoming: asyncio.Queue[bytes | None],
        outgoing: asyncio.Queue[bytes | None],
        max_size: int,
    ) -> None:
        self._incoming = incoming
        self._outgoing = outgoing
        self.max_datagram_size = max_size

    async def send(self, data: bytes) -> None:
        if len(data) > self.max_datagram_size:
            raise ValueError(f"datagram of {len(data)} bytes over {self.max_datagram_size}")
        await self._outgoing.put(bytes(data))

    async def receive(self) -> bytes:
        data = await self._incoming.get()
        if data is None:
            self._incoming.put_nowait(None)  # stay closed for later calls
            raise ChannelClosedError
        return data

    async def close(self) -> None:
        """Close both directions, after the datagrams already queued."""
        await self._outgoing.put(None)
        await self._incoming.put(None)

    def __aiter__(self) -> MemoryDatagrams:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except ChannelClosedError:
            raise StopAsyncIteration from None


def memory_datagram_pair(max_size: int = 1200) -> tuple[MemoryDatagrams, MemoryDatagrams]:
    a_to_b: asyncio.Queue[bytes | None] = asyncio.Queue(64)
    b_to_a: asyncio.Queue[bytes | None] = asyncio.Queue(64)
    return MemoryDatagrams(b_to_a, a_to_b, max_size), MemoryDatagrams(a_to_b, b_to_a, max_size)


@asynccontextmanager
async def memory_connection() -> AsyncIterator[MemoryConnection]:
    yield MemoryConnection()


class MemoryConnection:
    """What the tests need from a session: fresh stream pairs and a datagram pair."""

    reset_error = StreamResetError

    async def open_stream_pair(self) -> tuple[MemoryStream, MemoryStream]:
        return memory_stream_pair()

    async def datagram_pair(self) -> tuple[MemoryDatagrams, MemoryDatagrams]:
        return memory_datagram_pair()

    async def wait_stopped(self, near: MemoryStream) -> int | None:
        return await near.wait_stopped()
