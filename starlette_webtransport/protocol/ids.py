"""What the low bits of a QUIC stream id say (RFC 9000, section 2.1).

Bit 0 names the opener (0: client, 1: server), bit 1 the direction (0: bidirectional,
1: unidirectional). Kept in one place so that no caller re-derives them by hand; they are
plain functions because they sit on per-stream paths.
"""

from __future__ import annotations


def is_unidirectional(stream_id: int) -> bool:
    return bool(stream_id & 0x2)


def opener_bit(stream_id: int) -> int:
    """0 for a stream the client opened, 1 for one the server opened."""
    return stream_id & 0x1


def is_client_bidirectional(stream_id: int) -> bool:
    """Client-initiated and bidirectional: the only kind of stream a CONNECT (and so a
    WebTransport session id) can be."""
    return stream_id & 0x3 == 0
