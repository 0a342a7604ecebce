"""The state of one WebTransport session, as seen on its CONNECT stream.

The CONNECT stream carries the session's lifecycle: the 2xx opens it, capsules drain,
close or tune it, and its FIN or reset ends it. This class turns that stream's bytes
into events and our lifecycle decisions into bytes; the caller moves the bytes.

After any :class:`~.errors.ProtocolError` from :meth:`SessionProtocol.receive_data`,
the caller resets the CONNECT stream with the error's ``http3_code`` and then calls
:meth:`SessionProtocol.connection_lost` to learn whether the session still needs a
``SessionClosed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .capsules import (
    Capsule,
    CapsuleParser,
    CloseSession,
    DataBlocked,
    DatagramCapsule,
    DrainSession,
    MaxData,
    MaxStreams,
    StreamsBlocked,
    UnknownCapsule,
    encode_capsule,
)
from .errors import WT_FLOW_CONTROL_ERROR, CapsuleError, InvalidStateError


class SessionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The peer ended the session: with WT_CLOSE_SESSION, or with a bare FIN or a
    reset (code 0, reason "")."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionDraining:
    """The peer sent WT_DRAIN_SESSION; the session keeps working."""


@dataclass(frozen=True, slots=True)
class FlowControlReceived:
    """A WT_MAX_DATA, WT_MAX_STREAMS, WT_DATA_BLOCKED or WT_STREAMS_BLOCKED capsule."""

    capsule: Capsule


@dataclass(frozen=True, slots=True)
class DatagramCapsuleReceived:
    """A datagram that arrived as a capsule on the CONNECT stream."""

    payload: bytes


SessionEvent = SessionClosed | SessionDraining | FlowControlReceived | DatagramCapsuleReceived

_CONNECTING = (SessionState.CONNECTING,)
_OPEN = (SessionState.CONNECTED, SessionState.DRAINING)
_RECEIVING = (*_CONNECTING, *_OPEN)


class SessionProtocol:
    """One WebTransport session, one CONNECT stream, either side of the connection."""

    __slots__ = (  # one per session: no instance dict
        "_close_received",
        "_drain_sent",
        "_fin_received",
        "_parser",
        "_peer_drained",
        "_peer_max_bidi",
        "_peer_max_data",
        "_peer_max_uni",
        "_state",
        "capsules_received",
        "capsules_sent",
    )

    def __init__(self, *, max_capsule_size: int = 65536) -> None:
        self._parser = CapsuleParser(max_capsule_size=max_capsule_size)
        self._state = SessionState.CONNECTING
        self._peer_drained = False
        self._drain_sent = False
        self._close_received = False
        self._fin_received = False
        # The peer's flow-control limits must only grow (draft: WT_FLOW_CONTROL_ERROR).
        self._peer_max_data = -1
        self._peer_max_bidi = self._peer_max_uni = -1
        self.capsules_received = 0
        self.capsules_sent = 0

    @property
    def state(self) -> SessionState:
        return self._state

    def accept(self) -> None:
        """The 2xx was sent (server) or received (client)."""
        self._require(_CONNECTING, "accept()")
        self._state = SessionState.DRAINING if self._peer_drained else SessionState.CONNECTED

    def reject(self) -> None:
        """The CONNECT was answered with a non-2xx status."""
        self._require(_CONNECTING, "reject()")
        self._state = SessionState.CLOSED

    def close(self, code: int = 0, reason: str = "") -> bytes:
        """Close the session: send these bytes, then FIN the CONNECT stream.

        Capsules only exist after the 2xx, so a session still connecting is rejected
        instead. ``ValueError`` for a code outside u32 or a reason over 1024 bytes.
        """
        self._require(_OPEN, "close()")
        data = encode_capsule(CloseSession(code, reason))
        self._state = SessionState.CLOSED
        self.capsules_sent += 1
        return data

    def drain(self) -> bytes:
        """Ask the peer to wind the session down; send these bytes.

        Allowed once per side, also after the peer asked us to drain.
        """
        self._require(_OPEN, "drain()")
        if self._drain_sent:
            raise InvalidStateError("drain() was already called for this session")
        self._drain_sent = True
        self._state = SessionState.DRAINING
        self.capsules_sent += 1
        return encode_capsule(DrainSession())

    def send_capsule(self, capsule: Capsule) -> bytes:
        """Bytes for any other capsule (flow control, datagram, GREASE) on an open
        session. Closing and draining change state, so they go through :meth:`close`
        and :meth:`drain`."""
        if isinstance(capsule, CloseSession | DrainSession):
            raise ValueError(f"use close() or drain() to send {type(capsule).__name__}")
        self._require(_OPEN, "send_capsule()")
        self.capsules_sent += 1
        return encode_capsule(capsule)

    def receive_data(self, data: bytes, end_stream: bool = False) -> list[SessionEvent]:
        """CONNECT-stream payload (after the request/response headers) and its FIN."""
        if self._fin_received:
            raise InvalidStateError("CONNECT stream data after its FIN")
        self._fin_received = end_stream
        if self._close_received:
            if data:
                raise CapsuleError(f"{len(data)} bytes followed WT_CLOSE_SESSION")
            return []
        if self._state not in _RECEIVING:
            # We closed, rejected or lost the session; what the peer still sends is moot.
            return []
        events: list[SessionEvent] = []
        for capsule in self._parser.feed(data):
            if self._close_received:
                raise CapsuleError("a capsule followed WT_CLOSE_SESSION")
            self.capsules_received += 1
            event = self._handle(capsule)
            if event is not None:
                events.append(event)
        if self._close_received:
            if self._parser.buffered:
                raise CapsuleError(f"{self._parser.buffered} bytes followed WT_CLOSE_SESSION")
        elif end_stream:
            self._parser.close()
            self._state = SessionState.CLOSED
            events.append(SessionClosed(0, ""))
        return events

    def connection_lost(self) -> SessionClosed | None:
        """The connection or the CONNECT stream was reset (or we reset it after a
        ProtocolError). Returns the close to report, unless the session had ended."""
        if self._state is SessionState.CLOSED:
            return None
        self._state = SessionState.CLOSED
        return SessionClosed(0, "")

    def _handle(self, capsule: Capsule) -> SessionEvent | None:
        match capsule:
            case CloseSession(code=code, reason=reason):
                self._close_received = True
                self._state = SessionState.CLOSED
                return SessionClosed(code, reason)
            case DrainSession():
                if self._peer_drained:
                    return None
                self._peer_drained = True
                if self._state is SessionState.CONNECTED:
                    self._state = SessionState.DRAINING
                return SessionDraining()
            case DatagramCapsule(payload=payload):
                return DatagramCapsuleReceived(payload)
            case MaxData(maximum=maximum):
                self._peer_max_data = self._increase("WT_MAX_DATA", self._peer_max_data, maximum)
                return FlowControlReceived(capsule)
            case MaxStreams(bidirectional=bidirectional, maximum=maximum):
                if bidirectional:
                    self._peer_max_bidi = self._increase(
                        "WT_MAX_STREAMS (bidirectional)", self._peer_max_bidi, maximum
                    )
                else:
                    self._peer_max_uni = self._increase(
                        "WT_MAX_STREAMS (unidirectional)", self._peer_max_uni, maximum
                    )
                return FlowControlReceived(capsule)
            case DataBlocked() | StreamsBlocked():
                return FlowControlReceived(capsule)
            case UnknownCapsule():
                return None

    @staticmethod
    def _increase(name: str, previous: int, maximum: int) -> int:
        if maximum <= previous:
            raise CapsuleError(
                f"{name} must increase the previous limit {previous}, got {maximum}",
                http3_code=WT_FLOW_CONTROL_ERROR,
            )
        return maximum

    def _require(self, allowed: tuple[SessionState, ...], action: str) -> None:
        if self._state not in allowed:
            raise InvalidStateError(f"{action} is not allowed in state {self._state.value!r}")
