"""States of sessions and streams, and stream directions.

:class:`SessionState` is the protocol core's own enum, re-exported so that a session and
the server's session state machine always speak the same values. For a session object:
``CONNECTING`` means, in the server role, that the CONNECT request is not answered yet
and, in the client role, that ``initialize()`` has not run yet; ``DRAINING`` means the
peer asked to wind down and everything still works; ``CLOSING`` means ``close()`` is
sending WT_CLOSE_SESSION.
"""

from __future__ import annotations

from enum import StrEnum

from ..protocol.state import SessionState

__all__ = ["OPEN_STATES", "SessionState", "Side", "StreamDirection", "StreamState"]

OPEN_STATES = (SessionState.CONNECTED, SessionState.DRAINING)
"""The states in which a session carries streams and datagrams."""


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


class Side(StrEnum):
    """Where one side of a stream is: its receiving side (peer to us) or sending side."""

    OPEN = "open"
    FINISHED = "finished"
    """FIN: received from the peer (receiving side) or sent by us (sending side)."""
    RESET = "reset"
    """RESET_STREAM: received from the peer (receiving) or sent by us (sending)."""
    STOPPED = "stopped"
    """STOP_SENDING: sent by us (receiving side) or received from the peer (sending)."""
    ABORTED = "aborted"
    """The session ended while the side was open."""
