"""What the two low bits of a QUIC stream id say (RFC 9000, section 2.1).

Bit 0 names the opener (0: client, 1: server), bit 1 the direction (0: bidirectional,
1: unidirectional). Kept in one place so that no caller re-derives them by hand.
"""

from __future__ import annotations


def is_unidirectional(stream_id: int) -> bool:
    return bool(stream_id & 0x2)


def opened_by_server(stream_id: int) -> bool:
    return bool(stream_id & 0x1)


def opened_by(stream_id: int, *, server: bool) -> bool:
    """Whether the stream was opened by the server (``server=True``) or the client."""
    return opened_by_server(stream_id) == server
