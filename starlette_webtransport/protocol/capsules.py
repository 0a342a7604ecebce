"""Capsules on the WebTransport CONNECT stream (RFC 9297 framing).

A capsule is ``type (varint) | length (varint) | payload``. The parser is incremental
and bounded: it rejects a capsule as soon as its header shows it is prohibited or too
large, so a peer cannot make us buffer more than ``max_capsule_size`` bytes, and any
split of the byte stream yields the same capsules.

Capsule objects validate their fields on construction, so every instance is encodable
and decoding never yields a value the draft forbids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from .errors import (
    H3_EXCESSIVE_LOAD,
    MAX_CLOSE_REASON_SIZE,
    WT_FLOW_CONTROL_ERROR,
    CapsuleError,
    InvalidStateError,
    check_close,
)
from .varint import MAX_VARINT, decode_varint, encode_varint

MAX_STREAMS_LIMIT = 2**60
"""Stream counts above this cannot exist (stream ids are 62-bit, two bits are kind)."""
_CLOSE_CODE_SIZE = 4


class CapsuleType(IntEnum):
    DATAGRAM = 0x00
    CLOSE_SESSION = 0x2843
    DRAIN_SESSION = 0x78AE
    MAX_DATA = 0x190B4D3D
    MAX_STREAM_DATA = 0x190B4D3E
    """Prohibited over HTTP/3: QUIC already limits each stream."""
    MAX_STREAMS_BIDI = 0x190B4D3F
    MAX_STREAMS_UNI = 0x190B4D40
    DATA_BLOCKED = 0x190B4D41
    STREAM_DATA_BLOCKED = 0x190B4D42
    """Prohibited over HTTP/3: QUIC already limits each stream."""
    STREAMS_BLOCKED_BIDI = 0x190B4D43
    STREAMS_BLOCKED_UNI = 0x190B4D44


_WIRE_NAMES = {
    CapsuleType.DATAGRAM: "DATAGRAM",
    CapsuleType.CLOSE_SESSION: "WT_CLOSE_SESSION",
    CapsuleType.DRAIN_SESSION: "WT_DRAIN_SESSION",
    CapsuleType.MAX_DATA: "WT_MAX_DATA",
    CapsuleType.MAX_STREAM_DATA: "WT_MAX_STREAM_DATA",
    CapsuleType.MAX_STREAMS_BIDI: "WT_MAX_STREAMS (bidirectional)",
    CapsuleType.MAX_STREAMS_UNI: "WT_MAX_STREAMS (unidirectional)",
    CapsuleType.DATA_BLOCKED: "WT_DATA_BLOCKED",
    CapsuleType.STREAM_DATA_BLOCKED: "WT_STREAM_DATA_BLOCKED",
    CapsuleType.STREAMS_BLOCKED_BIDI: "WT_STREAMS_BLOCKED (bidirectional)",
    CapsuleType.STREAMS_BLOCKED_UNI: "WT_STREAMS_BLOCKED (unidirectional)",
}
_PROHIBITED = frozenset({CapsuleType.MAX_STREAM_DATA, CapsuleType.STREAM_DATA_BLOCKED})
_KNOWN_TYPES = frozenset(CapsuleType)


def _describe(capsule_type: int) -> str:
    if capsule_type in _KNOWN_TYPES:
        return f"{_WIRE_NAMES[CapsuleType(capsule_type)]} capsule"
    return f"capsule of type {capsule_type:#x}"


def _check_range(field: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{field} must be 0..{maximum}, got {value}")


@dataclass(frozen=True, slots=True)
class CloseSession:
    """WT_CLOSE_SESSION: the sender ends the session; a FIN follows it."""

    code: int
    reason: str

    def __post_init__(self) -> None:
        check_close(self.code, self.reason)


@dataclass(frozen=True, slots=True)
class DrainSession:
    """WT_DRAIN_SESSION: please wind the session down (like GOAWAY)."""


@dataclass(frozen=True, slots=True)
class DatagramCapsule:
    """A datagram sent reliably on the CONNECT stream instead of as a QUIC datagram."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class MaxData:
    """WT_MAX_DATA: cumulative stream-body bytes the peer may send in this session."""

    maximum: int

    def __post_init__(self) -> None:
        _check_range("WT_MAX_DATA maximum", self.maximum, MAX_VARINT)


@dataclass(frozen=True, slots=True)
class MaxStreams:
    """WT_MAX_STREAMS: cumulative streams of one direction the peer may open."""

    bidirectional: bool
    maximum: int

    def __post_init__(self) -> None:
        _check_range("WT_MAX_STREAMS maximum", self.maximum, MAX_STREAMS_LIMIT)


@dataclass(frozen=True, slots=True)
class DataBlocked:
    """WT_DATA_BLOCKED: the sender is stuck at this session data limit."""

    maximum: int

    def __post_init__(self) -> None:
        _check_range("WT_DATA_BLOCKED maximum", self.maximum, MAX_VARINT)


@dataclass(frozen=True, slots=True)
class StreamsBlocked:
    """WT_STREAMS_BLOCKED: the sender is stuck at this stream limit."""

    bidirectional: bool
    maximum: int

    def __post_init__(self) -> None:
        _check_range("WT_STREAMS_BLOCKED maximum", self.maximum, MAX_STREAMS_LIMIT)


@dataclass(frozen=True, slots=True)
class UnknownCapsule:
    """A capsule type this module does not interpret (GREASE, extensions).

    RFC 9297 requires receivers to skip these; known types cannot be wrapped here,
    so that an encoded UnknownCapsule never parses back as something else.
    """

    capsule_type: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_range("capsule type", self.capsule_type, MAX_VARINT)
        if self.capsule_type in _KNOWN_TYPES:
            raise ValueError(f"{_describe(self.capsule_type)} is a known type; use its own class")


Capsule = (
    CloseSession
    | DrainSession
    | DatagramCapsule
    | MaxData
    | MaxStreams
    | DataBlocked
    | StreamsBlocked
    | UnknownCapsule
)


def _frame(capsule_type: int, payload: bytes) -> bytes:
    return encode_varint(capsule_type) + encode_varint(len(payload)) + payload


def encode_capsule(capsule: Capsule) -> bytes:
    """The wire bytes of one capsule."""
    match capsule:
        case CloseSession(code=code, reason=reason):
            payload = code.to_bytes(_CLOSE_CODE_SIZE, "big") + check_close(code, reason)
            return _frame(CapsuleType.CLOSE_SESSION, payload)
        case DrainSession():
            return _frame(CapsuleType.DRAIN_SESSION, b"")
        case DatagramCapsule(payload=payload):
            return _frame(CapsuleType.DATAGRAM, payload)
        case MaxData(maximum=maximum):
            return _frame(CapsuleType.MAX_DATA, encode_varint(maximum))
        case MaxStreams(bidirectional=bidirectional, maximum=maximum):
            kind = CapsuleType.MAX_STREAMS_BIDI if bidirectional else CapsuleType.MAX_STREAMS_UNI
            return _frame(kind, encode_varint(maximum))
        case DataBlocked(maximum=maximum):
            return _frame(CapsuleType.DATA_BLOCKED, encode_varint(maximum))
        case StreamsBlocked(bidirectional=bidirectional, maximum=maximum):
            kind = (
                CapsuleType.STREAMS_BLOCKED_BIDI
                if bidirectional
                else CapsuleType.STREAMS_BLOCKED_UNI
            )
            return _frame(kind, encode_varint(maximum))
        case UnknownCapsule(capsule_type=capsule_type, payload=payload):
            return _frame(capsule_type, payload)


# --- decoding -------------------------------------------------------------------------


def _decode_close(capsule_type: int, payload: bytes) -> Capsule:
    if len(payload) < _CLOSE_CODE_SIZE:
        raise CapsuleError(
            f"WT_CLOSE_SESSION payload is {len(payload)} bytes; "
            f"it needs at least {_CLOSE_CODE_SIZE} for the error code"
        )
    raw_reason = payload[_CLOSE_CODE_SIZE:]
    if len(raw_reason) > MAX_CLOSE_REASON_SIZE:
        raise CapsuleError(
            f"WT_CLOSE_SESSION reason is {len(raw_reason)} bytes; "
            f"the limit is {MAX_CLOSE_REASON_SIZE}"
        )
    try:
        reason = raw_reason.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CapsuleError(
            f"WT_CLOSE_SESSION reason is not valid UTF-8 "
            f"(byte {exc.start} of the reason: {exc.reason})"
        ) from None
    return CloseSession(int.from_bytes(payload[:_CLOSE_CODE_SIZE], "big"), reason)


def _decode_drain(capsule_type: int, payload: bytes) -> Capsule:
    if payload:
        raise CapsuleError(f"WT_DRAIN_SESSION must be empty; it carries {len(payload)} bytes")
    return DrainSession()


def _decode_datagram(capsule_type: int, payload: bytes) -> Capsule:
    return DatagramCapsule(payload)


def _decode_single_varint(capsule_type: int, payload: bytes, field: str) -> int:
    """The one varint that makes up a flow-control capsule's payload."""
    decoded = decode_varint(payload, 0)
    if decoded is None:
        raise CapsuleError(
            f"{_describe(capsule_type)} has a truncated {field} varint "
            f"({len(payload)} payload bytes)"
        )
    value, end = decoded
    if end != len(payload):
        raise CapsuleError(
            f"{_describe(capsule_type)} has {len(payload) - end} trailing bytes after {field}"
        )
    return value


def _decode_max_data(capsule_type: int, payload: bytes) -> Capsule:
    return MaxData(_decode_single_varint(capsule_type, payload, "Maximum Data"))


def _decode_data_blocked(capsule_type: int, payload: bytes) -> Capsule:
    return DataBlocked(_decode_single_varint(capsule_type, payload, "Maximum Data"))


def _decode_stream_count(capsule_type: int, payload: bytes) -> int:
    maximum = _decode_single_varint(capsule_type, payload, "Maximum Streams")
    if maximum > MAX_STREAMS_LIMIT:
        raise CapsuleError(
            f"{_describe(capsule_type)} allows {maximum} streams; "
            f"the limit is 2**60 ({MAX_STREAMS_LIMIT})",
            http3_code=WT_FLOW_CONTROL_ERROR,
        )
    return maximum


def _decode_max_streams(capsule_type: int, payload: bytes) -> Capsule:
    bidirectional = capsule_type == CapsuleType.MAX_STREAMS_BIDI
    return MaxStreams(bidirectional, _decode_stream_count(capsule_type, payload))


def _decode_streams_blocked(capsule_type: int, payload: bytes) -> Capsule:
    bidirectional = capsule_type == CapsuleType.STREAMS_BLOCKED_BIDI
    return StreamsBlocked(bidirectional, _decode_stream_count(capsule_type, payload))


_DECODERS: dict[int, Callable[[int, bytes], Capsule]] = {
    CapsuleType.DATAGRAM: _decode_datagram,
    CapsuleType.CLOSE_SESSION: _decode_close,
    CapsuleType.DRAIN_SESSION: _decode_drain,
    CapsuleType.MAX_DATA: _decode_max_data,
    CapsuleType.MAX_STREAMS_BIDI: _decode_max_streams,
    CapsuleType.MAX_STREAMS_UNI: _decode_max_streams,
    CapsuleType.DATA_BLOCKED: _decode_data_blocked,
    CapsuleType.STREAMS_BLOCKED_BIDI: _decode_streams_blocked,
    CapsuleType.STREAMS_BLOCKED_UNI: _decode_streams_blocked,
}

# The smallest maximum that still admits the largest WT_CLOSE_SESSION a peer may send.
_MIN_CAPSULE_SIZE = _CLOSE_CODE_SIZE + MAX_CLOSE_REASON_SIZE


class CapsuleParser:
    """Incremental capsule parser for one CONNECT stream.

    After a :class:`CapsuleError` the stream is unusable (the caller resets it), so
    every later call raises the same error instead of parsing from a bogus offset.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_error",
        "_header",
        "_max_capsule_size",
    )

    def __init__(self, *, max_capsule_size: int = 65536) -> None:
        if max_capsule_size < _MIN_CAPSULE_SIZE:
            raise ValueError(
                f"max_capsule_size must be at least {_MIN_CAPSULE_SIZE} "
                f"to admit any WT_CLOSE_SESSION, got {max_capsule_size}"
            )
        self._max_capsule_size = max_capsule_size
        self._buffer = bytearray()
        # (type, payload length, header size) of the capsule at the buffer's start,
        # once its header is complete and validated.
        self._header: tuple[int, int, int] | None = None
        self._error: CapsuleError | None = None
        self._closed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete capsule held until the rest arrives."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Capsule]:
        """Append stream data; return the capsules it completed, in order."""
        if self._closed:
            raise InvalidStateError("CapsuleParser.feed() after close()")
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        buffer += data
        capsules: list[Capsule] = []
        position = 0
        try:
            while True:
                header = self._header
                if header is None:
                    header = self._parse_header(position)
                    if header is None:
                        break
                    self._header = header
                capsule_type, length, header_size = header
                start = position + header_size
                end = start + length
                if end > len(buffer):
                    break
                payload = bytes(buffer[start:end])
                self._header = None
                position = end
                decoder = _DECODERS.get(capsule_type)
                if decoder is None:
                    capsules.append(UnknownCapsule(capsule_type, payload))
                else:
                    capsules.append(decoder(capsule_type, payload))
        except CapsuleError as exc:
            self._error = exc
            self._buffer = bytearray()
            self._header = None
            raise
        del buffer[:position]
        return capsules

    def close(self) -> None:
        """The stream ended: a partial capsule left over is a truncated message."""
        if self._closed:
            return
        self._closed = True
        if self._error is not None:
            raise self._error
        if not self._buffer:
            return
        if self._header is None:
            raise CapsuleError(
                f"stream ended inside a capsule header ({len(self._buffer)} bytes of it)"
            )
        capsule_type, length, header_size = self._header
        raise CapsuleError(
            f"stream ended inside a {_describe(capsule_type)}: "
            f"{len(self._buffer) - header_size} of its {length} payload bytes arrived"
        )

    def _parse_header(self, position: int) -> tuple[int, int, int] | None:
        buffer = self._buffer
        decoded = decode_varint(buffer, position)
        if decoded is None:
            return None
        capsule_type, offset = decoded
        if capsule_type in _PROHIBITED:
            raise CapsuleError(
                f"{_describe(capsule_type)} ({capsule_type:#x}) is prohibited in "
                "WebTransport over HTTP/3 (QUIC limits each stream itself)"
            )
        decoded = decode_varint(buffer, offset)
        if decoded is None:
            return None
        length, offset = decoded
        if length > self._max_capsule_size:
            raise CapsuleError(
                f"{_describe(capsule_type)} declares {length} payload bytes; "
                f"the limit is {self._max_capsule_size}",
                http3_code=H3_EXCESSIVE_LOAD,
            )
        return capsule_type, length, offset - position
