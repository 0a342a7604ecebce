"""The header that ties a WebTransport data stream to its session.

Unidirectional streams start with the HTTP/3 stream type 0x54, bidirectional ones with
the signal value 0x41; the session id (the CONNECT stream's id) follows. Everything
after the header is application payload, which the parser hands back untouched.
"""

from __future__ import annotations

from .errors import H3_ID_ERROR, InvalidStateError, StreamHeaderError
from .ids import is_client_bidirectional
from .varint import MAX_VARINT, decode_varint, encode_varint

WT_UNI_STREAM_TYPE = 0x54
WT_BIDI_SIGNAL = 0x41


def _is_session_id(stream_id: int) -> bool:
    """Sessions live on CONNECT requests, which only clients open bidirectionally."""
    return is_client_bidirectional(stream_id)


def encode_stream_header(session_id: int, *, unidirectional: bool) -> bytes:
    """The bytes a new data stream of session ``session_id`` starts with."""
    if not 0 <= session_id <= MAX_VARINT or not _is_session_id(session_id):
        raise ValueError(
            f"session ids are client-initiated bidirectional stream ids, got {session_id}"
        )
    kind = WT_UNI_STREAM_TYPE if unidirectional else WT_BIDI_SIGNAL
    return encode_varint(kind) + encode_varint(session_id)


class StreamHeaderParser:
    """Reads the header of one incoming data stream, then is done.

    A header is at most two 8-byte varints, so at most 16 bytes are ever buffered.
    """

    def __init__(self, *, unidirectional: bool) -> None:
        self._expected = WT_UNI_STREAM_TYPE if unidirectional else WT_BIDI_SIGNAL
        self._what = "stream type" if unidirectional else "signal value"
        self._buffer = b""
        self._done = False
        self._error: StreamHeaderError | None = None

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        """``(session_id, payload after the header)`` once the header is complete."""
        if self._done:
            raise InvalidStateError("StreamHeaderParser.feed() after the header was complete")
        if self._error is not None:
            raise self._error
        buffer = self._buffer + data if self._buffer else data
        try:
            result = self._parse(buffer)
        except StreamHeaderError as exc:
            self._error = exc
            self._buffer = b""
            raise
        if result is None:
            self._buffer = buffer
            return None
        self._done = True
        self._buffer = b""
        return result

    def _parse(self, buffer: bytes) -> tuple[int, bytes] | None:
        decoded = decode_varint(buffer, 0)
        if decoded is None:
            return None
        kind, offset = decoded
        if kind != self._expected:
            raise StreamHeaderError(
                f"expected WebTransport {self._what} {self._expected:#x}, got {kind:#x}"
            )
        decoded = decode_varint(buffer, offset)
        if decoded is None:
            return None
        session_id, offset = decoded
        if not _is_session_id(session_id):
            raise StreamHeaderError(
                f"session id {session_id} is not a client-initiated bidirectional stream id",
                http3_code=H3_ID_ERROR,
            )
        return session_id, buffer[offset:]
