"""Typed messages over WebTransport datagrams.

A datagram is one message: a big-endian u16 type id, then the payload, with no length
field because the datagram's own length bounds it (``docs/structured.md``). Datagrams
are unreliable and unordered; a bad one raises and the next ``receive_obj`` simply
reads the next datagram.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Generic, Protocol, Self, TypeVar, overload

from .errors import MessageTooLargeError, TruncatedMessageError
from .schema import Schema, resolve_schema
from .serializers import Serializer

T = TypeVar("T")

DATAGRAM_HEADER = struct.Struct("!H")
"""Datagram header: type id (u16, big-endian)."""


class Datagrams(Protocol):
    """A session's datagram channel, as the transport uses it.

    ``async for`` over the transport iterates the channel itself, so typed iteration
    ends exactly when the channel's does (a session's: when the session closes).
    """

    async def send(self, data: bytes, /) -> None: ...

    async def receive(self) -> bytes: ...

    async def __anext__(self) -> bytes: ...

    @property
    def max_datagram_size(self) -> int:
        """Largest datagram, header included, that the session can send."""
        ...


class StructuredDatagramTransport(Generic[T]):
    """Sends and receives one typed message per datagram.

    Size is checked before sending, because QUIC cannot fragment a datagram and an
    oversized one would otherwise be refused by the session (or, with some stacks,
    dropped silently).
    """

    @overload
    def __init__(self, datagrams: Datagrams, *, schema: Schema[T]) -> None: ...

    @overload
    def __init__(
        self,
        datagrams: Datagrams,
        *,
        serializer: Serializer,
        registry: Mapping[int, type[T]],
    ) -> None: ...

    def __init__(
        self,
        datagrams: Datagrams,
        *,
        schema: Schema[T] | None = None,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
    ) -> None:
        self.datagrams = datagrams
        self.schema = resolve_schema(schema, serializer, registry)

    async def send_obj(self, obj: T) -> None:
        type_id, payload = self.schema.encode(obj)
        size = DATAGRAM_HEADER.size + len(payload)
        limit = self.datagrams.max_datagram_size
        if size > limit:
            raise MessageTooLargeError(
                f"datagram with {type(obj).__qualname__} (type id {type_id})", size, limit
            )
        await self.datagrams.send(DATAGRAM_HEADER.pack(type_id) + payload)

    async def receive_obj(self) -> T:
        return self._decode(await self.datagrams.receive())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        return self._decode(await anext(self.datagrams))

    def _decode(self, data: bytes) -> T:
        if len(data) < DATAGRAM_HEADER.size:
            raise TruncatedMessageError(
                "datagram inside its header", DATAGRAM_HEADER.size, len(data)
            )
        (type_id,) = DATAGRAM_HEADER.unpack_from(data)
        return self.schema.decode(type_id, memoryview(data)[DATAGRAM_HEADER.size :])
