"""States of sessions and streams, and stream directions."""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    CONNECTING = "connecting"
    """Server role: the CONNECT request is not answered yet. Client role: the session is
    established but ``initialize()`` has not run yet."""
    CONNECTED = "connected"
    DRAINING = "draining"
    """The peer asked to wind down (WT_DRAIN_SESSION); everything still works."""
    CLOSING = "closing"
    """``close()`` is sending WT_CLOSE_SESSION."""
    CLOSED = "closed"


class StreamDirection(StrEnum):
    BIDIRECTIONAL = "bidirectional"
    SEND_ONLY = "send_only"
    RECEIVE_ONLY = "receive_only"


class StreamState(StrEnum):
    """A stream's state as seen on the wire, from both of its sides.

    A side is done once FIN or RESET_STREAM went its way or STOP_SENDING stopped it;
    a unidirectional stream has one side, so it is either ``OPEN`` or ``CLOSED``.
    """

    OPEN = "open"
    HALF_CLOSED_LOCAL = "half_closed_local"
    """Our sending side is done (FIN, reset, or the peer stopped it); we can still read."""
    HALF_CLOSED_REMOTE = "half_closed_remote"
    """The receiving side is done (peer FIN or reset, or we stopped it); we can still write."""
    CLOSED = "closed"
