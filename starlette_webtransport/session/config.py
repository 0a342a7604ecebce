"""Per-session limits.

Every field bounds memory or waiting: whatever the peer sends, a session holds at most the
server's receive windows of stream data (with a 1.0 server, roughly
``(max_streams + max_incoming_streams) * stream_buffer_size`` bytes) plus
``datagram_queue_size`` datagrams.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import constants


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    max_streams: int = constants.DEFAULT_MAX_STREAMS
    """Streams open at once (both directions, local and peer-opened, counting pending
    ``create_*_stream()`` calls). ``create_*_stream()`` beyond it raises
    :class:`~.exceptions.StreamLimitError`; peer streams beyond it are refused with
    :data:`~.constants.STREAM_REFUSED_CODE`."""
    max_incoming_streams: int = constants.DEFAULT_MAX_INCOMING_STREAMS
    """Peer streams waiting for the app to take them from ``incoming_streams()``; more
    are refused with :data:`~.constants.STREAM_REFUSED_CODE`."""
    stream_buffer_size: int = constants.DEFAULT_STREAM_BUFFER_SIZE
    """How far ``readuntil()`` looks for its separator. With a server of spec 1.0 (no
    ``consumed`` in the scope), also the unread bytes per stream before the session stops
    calling ``receive()`` until the app reads that stream; a 1.1 server bounds each stream
    by its window instead (see "Memory and head-of-line blocking" in docs/session-api.md)."""
    datagram_queue_size: int = constants.DEFAULT_DATAGRAM_QUEUE_SIZE
    """Received datagrams kept for the app; when full, the oldest is dropped and counted."""
    stream_open_timeout: float | None = constants.DEFAULT_STREAM_OPEN_TIMEOUT
    """Seconds ``create_*_stream(timeout=None)`` waits; ``None`` waits without limit."""

    def __post_init__(self) -> None:
        for name in (
            "max_streams",
            "max_incoming_streams",
            "stream_buffer_size",
            "datagram_queue_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SessionConfig.{name} must be a positive int, got {value!r}")
        if self.stream_open_timeout is not None and not self.stream_open_timeout > 0:
            raise ValueError(
                "SessionConfig.stream_open_timeout must be positive or None, "
                f"got {self.stream_open_timeout!r}"
            )
