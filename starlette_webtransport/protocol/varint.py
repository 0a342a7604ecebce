"""QUIC variable-length integers (RFC 9000 section 16).

Capsules and WebTransport stream headers are built from these. The decoder works on a
buffer plus offset and reports "need more bytes" instead of raising, because callers
feed it partial stream data and must not pay for exceptions on every short read.
"""

from __future__ import annotations

MAX_VARINT = 2**62 - 1

_LENGTH_MASKS = {1: 0x3F, 2: 0x3FFF, 4: 0x3FFF_FFFF, 8: 0x3FFF_FFFF_FFFF_FFFF}


def encode_varint(value: int) -> bytes:
    """The shortest encoding of ``value``; ``ValueError`` outside 0..2**62-1."""
    if value < 0 or value > MAX_VARINT:
        raise ValueError(f"QUIC varints hold 0..{MAX_VARINT}, got {value}")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")


def decode_varint(buffer: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    """``(value, offset just past it)``, or ``None`` if the buffer ends first.

    Non-shortest encodings are accepted, as RFC 9000 allows for values in general.
    """
    if offset >= len(buffer):
        return None
    first = buffer[offset]
    size = 1 << (first >> 6)
    if size == 1:
        return first, offset + 1
    end = offset + size
    if end > len(buffer):
        return None
    return int.from_bytes(buffer[offset:end], "big") & _LENGTH_MASKS[size], end
