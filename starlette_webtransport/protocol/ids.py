"""What the low bits of a QUIC stream id say (RFC 9000, section 2.1).

Bit 0 names the opener (0: client, 1: server), bit 1 the direction (0: bidirectional,
1: unidirectional). Kept in one place so that new code does not re-derive them by hand.
"""

from __future__ import annotations


def is_unidirectional(stream_id: int) -> bool:
    return bool(stream_id & 0x2)
