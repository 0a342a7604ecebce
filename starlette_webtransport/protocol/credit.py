"""WebTransport's own flow control (draft-07 and later): the arithmetic of both directions.

On top of QUIC's credit, each session has a cumulative byte count over all its streams'
payload (WT_MAX_DATA) and a cumulative count of streams per direction (WT_MAX_STREAMS).
Each endpoint grants the other an initial amount in its SETTINGS and raises it with
capsules on the CONNECT stream.

:class:`LocalCredit` is what we grant the peer: renewed as the application consumes, and
checked against what the peer actually sends, so that a peer over it gets
WT_FLOW_CONTROL_ERROR. :class:`PeerCredit` is what the peer grants us: the sender asks it
how much it may send and whether it may open a stream, and it says when to tell the peer
that we are blocked (WT_DATA_BLOCKED / WT_STREAMS_BLOCKED), once per limit.

WebTransport flow control is in effect in a session only when both endpoints offered
some credit, that is sent at least one initial flow-control SETTING above zero
(:func:`flow_control_negotiated`). An endpoint that announces nothing, or only zeros, does
not do it: it neither grants more nor checks ours. pywebtransport 0.21.1 negotiates it
this way, and a peer that announced zeros is only interoperable under the same rule.

Both classes are plain counters: the caller moves the capsules and decides what waiting
means.
"""

from __future__ import annotations

from collections.abc import Mapping

from .capsules import DataBlocked, MaxData, MaxStreams, StreamsBlocked
from .errors import WT_FLOW_CONTROL_ERROR, ProtocolError
from .settings import (
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
    Draft,
    FlowControlLimits,
    uses_flow_control,
)

_INITIAL_SETTINGS = (
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
)


class FlowControlError(ProtocolError):
    """The peer sent more data or opened more streams than we granted it; the draft
    closes the session with WT_FLOW_CONTROL_ERROR."""

    http3_code = WT_FLOW_CONTROL_ERROR


def flow_control_negotiated(
    draft: Draft, limits: FlowControlLimits, peer_settings: Mapping[int, int]
) -> bool:
    """Whether a session of ``draft`` with a peer that sent ``peer_settings`` uses
    WebTransport flow control, given what we announced (``limits``)."""
    ours = limits.max_data or limits.max_streams_bidi or limits.max_streams_uni
    theirs = any(peer_settings.get(key, 0) for key in _INITIAL_SETTINGS)
    return uses_flow_control(draft) and bool(ours) and theirs


def _direction(unidirectional: bool) -> str:
    return "unidirectional" if unidirectional else "bidirectional"


class LocalCredit:
    """The credit we grant the peer in one session, renewed by half-windows.

    A grant is always "consumed + window": once half of a window is used, the next
    capsule slides it, so a peer that keeps to its credit never stalls while the
    application keeps reading, and never has more than a window unread.
    """

    __slots__ = (
        "data_consumed",
        "data_granted",
        "data_received",
        "enabled",
        "granted_bidi",
        "granted_uni",
        "limits",
        "opened_bidi",
        "opened_uni",
        "retired_bidi",
        "retired_uni",
    )

    def __init__(self, limits: FlowControlLimits, *, enabled: bool = True) -> None:
        self.limits = limits
        self.enabled = enabled
        """False for draft-02 peers: nothing was granted, so nothing is checked or renewed."""
        self.data_received = 0
        self.data_consumed = 0
        self.data_granted = limits.max_data
        # Per direction, in slots of their own: a two-item list per counter would cost
        # every session 72 bytes each.
        self.opened_bidi = self.opened_uni = 0
        """Peer streams seen so far."""
        self.retired_bidi = self.retired_uni = 0
        self.granted_bidi = limits.max_streams_bidi
        self.granted_uni = limits.max_streams_uni

    def streams_opened(self, *, unidirectional: bool) -> int:
        return self.opened_uni if unidirectional else self.opened_bidi

    def receive_data(self, size: int) -> None:
        """``size`` payload bytes arrived on a stream of the session."""
        if not self.enabled:
            return
        self.data_received += size
        if self.data_received > self.data_granted:
            raise FlowControlError(
                f"the peer sent {self.data_received} bytes on the session's streams; "
                f"WT_MAX_DATA allowed {self.data_granted}"
            )

    def open_stream(self, *, unidirectional: bool) -> None:
        """The peer opened a stream of the session."""
        if not self.enabled:
            return
        if unidirectional:
            self.opened_uni = opened = self.opened_uni + 1
            granted = self.granted_uni
        else:
            self.opened_bidi = opened = self.opened_bidi + 1
            granted = self.granted_bidi
        if opened > granted:
            raise FlowControlError(
                f"the peer opened {opened} {_direction(unidirectional)} streams; "
                f"WT_MAX_STREAMS allowed {granted}"
            )

    def consume_data(self, size: int) -> MaxData | None:
        """``size`` received bytes are done with; the capsule to send, if any."""
        if not self.enabled or not size:
            return None
        self.data_consumed += size
        window = self.limits.max_data
        granted = self.data_consumed + window
        if 2 * (self.data_granted - self.data_consumed) > window or granted <= self.data_granted:
            return None
        self.data_granted = granted
        return MaxData(granted)

    def retire_stream(self, *, unidirectional: bool) -> MaxStreams | None:
        """A peer stream is done with, so the peer may open another; the capsule to send."""
        if not self.enabled:
            return None
        if unidirectional:
            self.retired_uni = retired = self.retired_uni + 1
            window, current = self.limits.max_streams_uni, self.granted_uni
        else:
            self.retired_bidi = retired = self.retired_bidi + 1
            window, current = self.limits.max_streams_bidi, self.granted_bidi
        granted = retired + window
        if 2 * (current - retired) > window or granted <= current:
            return None
        if unidirectional:
            self.granted_uni = granted
        else:
            self.granted_bidi = granted
        return MaxStreams(not unidirectional, granted)


class PeerCredit:
    """The credit the peer grants us in one session; ``None`` limits are unlimited.

    Limits start from the peer's SETTINGS and only grow with its WT_MAX_DATA and
    WT_MAX_STREAMS capsules. Without flow control (draft-02, or not negotiated) we are
    unlimited. A peer that sent only some of the initial SETTINGS grants 0 for those it
    left out, as the draft's defaults say.
    """

    __slots__ = (
        "_blocked_at_bidi",
        "_blocked_at_uni",
        "_data_blocked_at",
        "data_sent",
        "max_data",
        "max_streams_bidi",
        "max_streams_uni",
        "opened_bidi",
        "opened_uni",
    )

    def __init__(
        self, max_data: int | None, max_streams_bidi: int | None, max_streams_uni: int | None
    ) -> None:
        self.max_data = max_data
        # Per direction, in slots of their own (see LocalCredit).
        self.max_streams_bidi = max_streams_bidi
        self.max_streams_uni = max_streams_uni
        self.data_sent = 0
        self.opened_bidi = self.opened_uni = 0
        self._data_blocked_at: int | None = None
        self._blocked_at_bidi: int | None = None
        self._blocked_at_uni: int | None = None

    def max_streams(self, *, unidirectional: bool) -> int | None:
        return self.max_streams_uni if unidirectional else self.max_streams_bidi

    def streams_opened(self, *, unidirectional: bool) -> int:
        return self.opened_uni if unidirectional else self.opened_bidi

    @classmethod
    def from_settings(cls, settings: Mapping[int, int], *, enabled: bool = True) -> PeerCredit:
        """The peer's initial credit; ``enabled`` is :func:`flow_control_negotiated`."""
        if not enabled:
            return cls(None, None, None)
        return cls(
            settings.get(SETTINGS_WT_INITIAL_MAX_DATA, 0),
            settings.get(SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI, 0),
            settings.get(SETTINGS_WT_INITIAL_MAX_STREAMS_UNI, 0),
        )

    @property
    def limited(self) -> bool:
        return self.max_data is not None

    # --- data -----------------------------------------------------------------------

    def sendable(self, size: int) -> int:
        """How many of ``size`` payload bytes may be sent now."""
        if self.max_data is None:
            return size
        return max(0, min(size, self.max_data - self.data_sent))

    def send_data(self, size: int) -> None:
        """``size`` payload bytes were handed to QUIC (no more than :meth:`sendable`)."""
        if size > self.sendable(size):
            raise ValueError(f"{size} bytes exceed the peer's remaining WT_MAX_DATA credit")
        self.data_sent += size

    def data_blocked(self) -> DataBlocked | None:
        """WT_DATA_BLOCKED to send now that a sender waits: once per limit."""
        limit = self.max_data
        if limit is None or self.data_sent < limit or self._data_blocked_at == limit:
            return None
        self._data_blocked_at = limit
        return DataBlocked(limit)

    # --- streams --------------------------------------------------------------------

    def may_open(self, *, unidirectional: bool) -> bool:
        if unidirectional:
            return self.max_streams_uni is None or self.opened_uni < self.max_streams_uni
        return self.max_streams_bidi is None or self.opened_bidi < self.max_streams_bidi

    def open_stream(self, *, unidirectional: bool) -> None:
        if not self.may_open(unidirectional=unidirectional):
            raise ValueError(
                f"the peer allows no more {_direction(unidirectional)} streams (WT_MAX_STREAMS)"
            )
        if unidirectional:
            self.opened_uni += 1
        else:
            self.opened_bidi += 1

    def streams_blocked(self, *, unidirectional: bool) -> StreamsBlocked | None:
        """WT_STREAMS_BLOCKED to send now that an open waits: once per limit."""
        limit = self.max_streams(unidirectional=unidirectional)
        blocked_at = self._blocked_at_uni if unidirectional else self._blocked_at_bidi
        if (
            limit is None
            or self.streams_opened(unidirectional=unidirectional) < limit
            or blocked_at == limit
        ):
            return None
        if unidirectional:
            self._blocked_at_uni = limit
        else:
            self._blocked_at_bidi = limit
        return StreamsBlocked(not unidirectional, limit)

    # --- the peer's grants ----------------------------------------------------------

    def grant(self, capsule: MaxData | MaxStreams) -> bool:
        """Apply a WT_MAX_DATA or WT_MAX_STREAMS; True if it gave us more credit.

        Limits never shrink: a capsule below the current limit (for instance below the
        initial SETTINGS) changes nothing. A peer without flow control that sends one
        anyway stays unlimited.
        """
        if isinstance(capsule, MaxData):
            if self.max_data is None or capsule.maximum <= self.max_data:
                return False
            self.max_data = capsule.maximum
            return True
        unidirectional = not capsule.bidirectional
        limit = self.max_streams(unidirectional=unidirectional)
        if limit is None or capsule.maximum <= limit:
            return False
        if unidirectional:
            self.max_streams_uni = capsule.maximum
        else:
            self.max_streams_bidi = capsule.maximum
        return True
