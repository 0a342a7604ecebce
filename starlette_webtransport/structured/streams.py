"""Typed messages over WebTransport streams.

Framing (``docs/structured.md``): a big-endian u16 type id, a big-endian u32 payload
length, then the payload. The transports are written against the small protocols
below, not the session module, so they wrap any stream with these methods: a session's
stream, the Python client's, or an in-memory pipe in tests.

Receiving keeps each read as it came and decodes every frame that lies inside one
read from a ``memoryview`` of it, so small messages cost no copy and no read of their
own; only a frame split across reads is joined, once.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from typing import Any, Generic, Protocol, Self, TypeVar, overload

from typing_extensions import TypeVar as DefaultTypeVar

from .errors import (
    MESSAGE_TOO_LARGE_CODE,
    EndOfStream,
    MessageTooLargeError,
    TruncatedMessageError,
)
from .schema import Schema, resolve_schema
from .serializers import Serializer

T = TypeVar("T")
S = TypeVar("S")
R = DefaultTypeVar("R", default=S)
"""What a :class:`StructuredStream` receives; by default what it sends."""

HEADER = struct.Struct("!HI")
"""Frame header: type id (u16), payload length (u32), both big-endian."""
MAX_FRAME_PAYLOAD = 0xFFFF_FFFF
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
_READ_SIZE = 64 * 1024


class SendStream(Protocol):
    """The sending half of a WebTransport stream, as the transports use it."""

    async def write(self, data: bytes, /) -> None: ...

    async def close(self) -> None: ...

    async def reset(self, code: int, /) -> None: ...


class ReceiveStream(Protocol):
    """The receiving half of a WebTransport stream, as the transports use it.

    ``read(n)`` returns up to ``n`` bytes as soon as any are available and ``b""`` at
    FIN; it raises the session's ``StreamResetError`` if the peer reset the stream,
    which the transports let propagate unchanged.
    """

    async def read(self, n: int, /) -> bytes: ...

    async def stop_sending(self, code: int, /) -> None: ...


class BidirectionalStream(SendStream, ReceiveStream, Protocol):
    pass


def _check_max_message_size(max_message_size: int) -> int:
    if not 0 < max_message_size <= MAX_FRAME_PAYLOAD:
        raise ValueError(
            f"max_message_size must be in 1..{MAX_FRAME_PAYLOAD} (the u32 length field), "
            f"got {max_message_size}"
        )
    return max_message_size


class StructuredSendStream(Generic[T]):
    """Sends typed messages, one stream write per message.

    A frame is written with a single ``write`` so concurrent senders never interleave
    their frames; a message over ``max_message_size`` raises before anything is
    written, so the stream stays usable.
    """

    @overload
    def __init__(
        self,
        stream: SendStream,
        *,
        schema: Schema[T],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self,
        stream: SendStream,
        *,
        serializer: Serializer,
        registry: Mapping[int, type[T]],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    def __init__(
        self,
        stream: SendStream,
        *,
        schema: Schema[T] | None = None,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._send_stream = stream
        self.send_schema = resolve_schema(schema, serializer, registry)
        self.max_message_size = _check_max_message_size(max_message_size)

    @property
    def stream(self) -> SendStream:
        return self._send_stream

    async def send_obj(self, obj: T) -> None:
        type_id, payload = self.send_schema.encode(obj)
        if len(payload) > self.max_message_size:
            raise MessageTooLargeError(
                f"encoded {type(obj).__qualname__}", len(payload), self.max_message_size
            )
        await self._send_stream.write(HEADER.pack(type_id, len(payload)) + payload)

    async def close(self) -> None:
        """Finish the sending side (FIN) after the messages already sent."""
        await self._send_stream.close()

    async def reset(self, code: int = 0) -> None:
        """Abandon the sending side; the peer may lose messages not yet delivered."""
        await self._send_stream.reset(code)


class StructuredReceiveStream(Generic[T]):
    """Receives typed messages; ``async for`` ends at the peer's FIN.

    A frame that fails to decode (unknown type id, invalid payload) raises after it has
    been consumed, so the next ``receive_obj`` returns the next message. A frame longer
    than ``max_message_size`` stops the stream with :data:`MESSAGE_TOO_LARGE_CODE`.
    Once the receiving side has ended (FIN, a truncated frame at FIN, or a stop),
    ``receive_obj`` raises :class:`EndOfStream`.
    """

    @overload
    def __init__(
        self,
        stream: ReceiveStream,
        *,
        schema: Schema[T],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self,
        stream: ReceiveStream,
        *,
        serializer: Serializer,
        registry: Mapping[int, type[T]],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    def __init__(
        self,
        stream: ReceiveStream,
        *,
        schema: Schema[T] | None = None,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._receive_stream = stream
        self.receive_schema = resolve_schema(schema, serializer, registry)
        self.max_message_size = _check_max_message_size(max_message_size)
        # Unconsumed data: the chunks as read, minus the first _offset bytes of the
        # first one. Each read is appended before the next await, so a cancelled
        # receive_obj loses nothing; a frame is consumed only once it is complete.
        self._chunks: deque[bytes] = deque()
        self._offset = 0
        self._available = 0
        self._receiving = False
        self._ended = False

    @property
    def stream(self) -> ReceiveStream:
        return self._receive_stream

    async def receive_obj(self) -> T:
        if self._receiving:
            raise RuntimeError("receive_obj is already being awaited on this stream")
        if self._ended:
            raise EndOfStream
        self._receiving = True
        try:
            if self._available < HEADER.size and not await self._fill(HEADER.size):
                available = self._available
                self._end()
                if available == 0:
                    raise EndOfStream
                raise TruncatedMessageError("stream inside a frame header", HEADER.size, available)
            type_id, length = self._peek_header()
            if length > self.max_message_size:
                self._end()
                await self._receive_stream.stop_sending(MESSAGE_TOO_LARGE_CODE)
                raise MessageTooLargeError(
                    f"incoming frame payload (type id {type_id})", length, self.max_message_size
                )
            size = HEADER.size + length
            if self._available < size and not await self._fill(size):
                available = self._available
                self._end()
                raise TruncatedMessageError(
                    f"stream inside a frame (type id {type_id})", size, available
                )
        finally:
            self._receiving = False
        return self.receive_schema.decode(type_id, self._take_payload(size))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive_obj()
        except EndOfStream:
            raise StopAsyncIteration from None

    async def stop_sending(self, code: int = 0) -> None:
        """Tell the peer to stop sending; buffered messages are discarded."""
        self._end()
        await self._receive_stream.stop_sending(code)

    async def _fill(self, size: int) -> bool:
        """Read until ``size`` bytes are buffered; False if FIN comes first."""
        while self._available < size:
            data = await self._receive_stream.read(max(size - self._available, _READ_SIZE))
            if not data:
                return False
            self._chunks.append(data)
            self._available += len(data)
        return True

    def _peek_header(self) -> tuple[int, int]:
        first = self._chunks[0]
        if len(first) - self._offset >= HEADER.size:
            return HEADER.unpack_from(first, self._offset)
        header = bytearray()
        offset = self._offset
        for chunk in self._chunks:
            header += chunk[offset : offset + HEADER.size - len(header)]
            offset = 0
            if len(header) == HEADER.size:
                break
        return HEADER.unpack(header)

    def _take_payload(self, size: int) -> memoryview:
        """Consume a whole frame of ``size`` bytes and return its payload.

        The payload is a view of the read that holds the frame; only a frame that spans
        reads is copied, once, to join its parts.
        """
        self._available -= size
        first = self._chunks[0]
        start = self._offset
        end = start + size
        if end <= len(first):
            if end == len(first):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
            return memoryview(first)[start + HEADER.size : end]
        parts = []
        while size:
            chunk = self._chunks[0]
            part = memoryview(chunk)[self._offset : self._offset + size]
            parts.append(part)
            size -= len(part)
            if self._offset + len(part) == len(chunk):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset += len(part)
        return memoryview(b"".join(parts))[HEADER.size :]

    def _end(self) -> None:
        self._ended = True
        self._chunks.clear()
        self._offset = 0
        self._available = 0


class StructuredStream(StructuredSendStream[S], StructuredReceiveStream[R]):
    """Typed messages in both directions of a bidirectional stream.

    ``StructuredStream[Send, Receive]`` sends ``Send`` and receives ``Receive``;
    ``StructuredStream[T]`` means ``StructuredStream[T, T]``. One ``schema`` serves both
    directions, or ``send_schema`` and ``receive_schema`` give each its own, so a client
    cannot send what only the server may (the type checker says so). The framing is the
    same both ways, so a stream opened locally and one accepted from the peer are wrapped
    alike.
    """

    @overload
    def __init__(
        self: StructuredStream[T, T],
        stream: BidirectionalStream,
        *,
        schema: Schema[T],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self: StructuredStream[T, T],
        stream: BidirectionalStream,
        *,
        serializer: Serializer,
        registry: Mapping[int, type[T]],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    @overload
    def __init__(
        self,
        stream: BidirectionalStream,
        *,
        send_schema: Schema[S],
        receive_schema: Schema[R],
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None: ...

    def __init__(
        self,
        stream: BidirectionalStream,
        *,
        schema: Schema[Any] | None = None,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[Any]] | None = None,
        send_schema: Schema[Any] | None = None,
        receive_schema: Schema[Any] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if send_schema is not None or receive_schema is not None:
            if send_schema is None or receive_schema is None:
                raise TypeError("send_schema= and receive_schema= go together")
            if schema is not None or serializer is not None or registry is not None:
                raise TypeError("pass send_schema= and receive_schema=, or schema=, not both")
            sending, receiving = send_schema, receive_schema
        else:
            sending = receiving = resolve_schema(schema, serializer, registry)
        StructuredSendStream.__init__(
            self, stream, schema=sending, max_message_size=max_message_size
        )
        StructuredReceiveStream.__init__(
            self, stream, schema=receiving, max_message_size=max_message_size
        )
        self._stream = stream

    @property
    def stream(self) -> BidirectionalStream:
        return self._stream
