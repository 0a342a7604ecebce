"""WebTransport sessions over an aioquic connection, for either end and free of hypercorn.

The hypercorn adapter (:mod:`starlette_webtransport.server`) and the Python client
(:mod:`starlette_webtransport.client`) both play the server side of the ASGI contract
over aioquic; this package is that part, written once. They add only how their QUIC
connection is driven and how the CONNECT request is exchanged.
"""

from .channel import (
    DATAGRAM_HIGH_WATER,
    DATAGRAM_QUEUE_SIZE,
    PENDING_OPENS,
    STREAM_HIGH_WATER,
    Role,
    SessionChannel,
)
from .h3 import MAX_SESSIONS, WT_CREDIT, WebTransportH3Connection
from .quic import (
    CONNECTION_WINDOW,
    MAX_DATAGRAM_FRAME_SIZE,
    MAX_STREAMS,
    STREAM_WINDOW,
    WebTransportQuicConnection,
    max_datagram_size,
    quic_configuration,
)
from .router import SessionRouter

__all__ = [
    "CONNECTION_WINDOW",
    "DATAGRAM_HIGH_WATER",
    "DATAGRAM_QUEUE_SIZE",
    "MAX_DATAGRAM_FRAME_SIZE",
    "MAX_SESSIONS",
    "MAX_STREAMS",
    "PENDING_OPENS",
    "STREAM_HIGH_WATER",
    "STREAM_WINDOW",
    "WT_CREDIT",
    "Role",
    "SessionChannel",
    "SessionRouter",
    "WebTransportH3Connection",
    "WebTransportQuicConnection",
    "max_datagram_size",
    "quic_configuration",
]
