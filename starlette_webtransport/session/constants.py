"""Defaults and codes of the session layer.

They live in one module so that the documentation, :class:`~.config.SessionConfig` and the
diagnostics all quote the same numbers.
"""

from __future__ import annotations

from ..protocol import errors as _protocol

# Facts of the protocol, defined there once and named here for this layer's callers.
MAX_ERROR_CODE = _protocol.MAX_APPLICATION_CODE
"""WebTransport application error codes (session close, stream reset/stop) are u32."""
MAX_CLOSE_REASON_BYTES = _protocol.MAX_CLOSE_REASON_SIZE
INTERNAL_ERROR_CODE = _protocol.INTERNAL_ERROR_CODE

DEFAULT_MAX_STREAMS = 100
"""Streams a session keeps open at once, both directions together. Each can buffer up to
``stream_buffer_size`` unread bytes, so this bounds the session's stream memory."""
DEFAULT_MAX_INCOMING_STREAMS = 32
"""Peer streams announced but not yet taken by the app from ``incoming_streams()``."""
DEFAULT_STREAM_BUFFER_SIZE = 256 * 1024
"""``readuntil()``'s search limit; with a 1.0 server, the unread bytes one stream may hold
before the session stops pulling from ``receive``."""
DEFAULT_DATAGRAM_QUEUE_SIZE = 128
"""Received datagrams kept for the app; beyond it the oldest is dropped."""
DEFAULT_STREAM_OPEN_TIMEOUT = 30.0
"""Seconds ``create_*_stream(timeout=None)`` waits for the server to open the stream
(it waits while the peer's stream limit is reached)."""

DEFAULT_READY_TIMEOUT = 30.0
DEFAULT_HEALTH_CHECK_INTERVAL = 60.0
DEFAULT_MAX_SESSIONS = 10000
DEFAULT_SESSION_CLEANUP_INTERVAL = 60.0

ITER_CHUNK_SIZE = 65536
"""Largest chunk ``async for chunk in stream`` yields."""

STREAM_REFUSED_CODE = 0x10B
"""Application code used to stop (and, if bidirectional, reset) a peer stream the session
refuses because ``max_streams`` or ``max_incoming_streams`` is reached. The value mirrors
HTTP/3's H3_REQUEST_REJECTED (0x10b), which likewise tells a peer that the stream was
never processed and may be retried."""
STREAM_ABANDONED_CODE = 0x10C
"""Application code used to reset a stream the server opened for a ``create_*_stream()``
call that had already timed out or been cancelled. Mirrors HTTP/3's H3_REQUEST_CANCELLED."""

RETIRED_STREAM_MEMORY = 1024
"""How many finished stream ids the session remembers, so that late events for them
(a STOP_SENDING after our FIN, data already in flight when we stopped a stream) are
ignored instead of being mistaken for new peer streams."""

SLOW_WRITE_SECONDS = 1.0
"""A stream write that waited this long on backpressure is reported by diagnostics."""
STUCK_HALF_CLOSED_SECONDS = 30.0
"""A stream half-closed for this long is reported as stuck by diagnostics."""
STUCK_OPEN_SECONDS = 5.0
"""A ``create_*_stream()`` call waiting this long is reported by diagnostics."""
READER_PAUSED_SECONDS = 5.0
"""The reader paused on a full stream buffer for this long is reported by diagnostics."""

CONSUMED_REPORT_BYTES = 64 * 1024
"""Bytes of one stream the app reads before the session reports them consumed to a server
of spec 1.1 (``webtransport.stream.consumed``): a sixteenth of the server's 1 MiB stream
window, so the peer's credit never runs dry while the app keeps reading."""
