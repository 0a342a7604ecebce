"""Protocol errors and the WebTransport <-> HTTP/3 error-code mapping.

Every error the sans-I/O core raises for bad peer input carries the HTTP/3 error code
the caller should reset the stream (or close the connection) with, so the I/O layer
never has to know which rule was broken to answer it correctly.
"""

from __future__ import annotations

H3_NO_ERROR = 0x100
H3_GENERAL_PROTOCOL_ERROR = 0x101
H3_INTERNAL_ERROR = 0x102
H3_STREAM_CREATION_ERROR = 0x103
H3_EXCESSIVE_LOAD = 0x107
H3_ID_ERROR = 0x108
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_MESSAGE_ERROR = 0x10E
H3_DATAGRAM_ERROR = 0x33

WT_BUFFERED_STREAM_REJECTED = 0x3994BD84
WT_SESSION_GONE = 0x170D7B68
WT_FLOW_CONTROL_ERROR = 0x045D4487
WT_ALPN_ERROR = 0x0817B3DD
WT_REQUIREMENTS_NOT_MET = 0x212C0D48

FIRST_APPLICATION_CODE = 0x52E4A40FA8DB
"""The HTTP/3 code that carries WebTransport application error 0."""
MAX_APPLICATION_CODE = 2**32 - 1
"""The largest WebTransport application error code (they are u32)."""
LAST_APPLICATION_CODE = 0x52E5AC983162
"""The HTTP/3 code that carries :data:`MAX_APPLICATION_CODE`."""
MAX_CLOSE_REASON_SIZE = 1024
"""The draft caps the WT_CLOSE_SESSION reason at 1024 bytes of UTF-8."""

INTERNAL_ERROR_CODE = 0x102
"""Application code for "this side failed": the close code of a session whose app raised
(``starlette_webtransport.starlette`` re-exports it), and the code
:func:`~starlette_webtransport.session.serve_streams` aborts a stream with when its handler
raised. WebTransport defines no application codes of its own; the value mirrors HTTP/3's
H3_INTERNAL_ERROR (0x102)."""

_RESERVED_STEP = 0x1F
_RESERVED_OFFSET = 0x21


class ProtocolError(Exception):
    """The peer (or, for :class:`InvalidStateError`, the caller) broke a protocol rule.

    ``http3_code`` is the HTTP/3 error code to reset the stream or close the
    connection with; each subclass has a default and a raise site can override it
    where the draft names a more specific code.
    """

    http3_code: int = H3_GENERAL_PROTOCOL_ERROR

    def __init__(self, message: str, *, http3_code: int | None = None) -> None:
        super().__init__(message)
        if http3_code is not None:
            self.http3_code = http3_code


class CapsuleError(ProtocolError):
    """Malformed or forbidden capsule data on a CONNECT stream.

    RFC 9297 treats a malformed capsule sequence as a malformed HTTP message, hence
    H3_MESSAGE_ERROR by default.
    """

    http3_code = H3_MESSAGE_ERROR


class StreamHeaderError(ProtocolError):
    """A WebTransport data stream did not start with the expected type/signal and a
    valid session id."""

    http3_code = H3_STREAM_CREATION_ERROR


class InvalidStateError(ProtocolError):
    """An operation that the current state does not allow; usually a bug in the
    caller, hence H3_INTERNAL_ERROR by default."""

    http3_code = H3_INTERNAL_ERROR


def check_code(code: int, what: str = "WebTransport application error codes") -> int:
    """``code`` if it is a u32 application code, else ValueError naming ``what``.

    Session closes, stream resets and stop-sendings all carry such a code; every place
    that takes one from a caller checks it here, so they accept and refuse the same."""
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= MAX_APPLICATION_CODE:
        raise ValueError(
            f"{what} must be 0..{MAX_APPLICATION_CODE}, got {code!r} (application codes are u32)"
        )
    return code


def check_close(code: int, reason: str) -> bytes:
    """:func:`check_code` for a session close, and its reason encoded: ValueError unless it
    is UTF-8 of at most :data:`MAX_CLOSE_REASON_SIZE` bytes."""
    check_code(code, "WT_CLOSE_SESSION code")
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"WT_CLOSE_SESSION reason is not encodable as UTF-8: {exc}") from None
    if len(encoded) > MAX_CLOSE_REASON_SIZE:
        raise ValueError(
            f"WT_CLOSE_SESSION reason is {len(encoded)} UTF-8 bytes; "
            f"the limit is {MAX_CLOSE_REASON_SIZE}"
        )
    return encoded


def app_to_http3(code: int) -> int:
    """Map a WebTransport application error code to the HTTP/3 code sent on the wire.

    The draft spreads the u32 space over a range that skips HTTP/3's reserved GREASE
    codepoints ``0x1f * N + 0x21``: one is skipped after every 0x1e application codes.
    """
    check_code(code)
    return FIRST_APPLICATION_CODE + code + code // (_RESERVED_STEP - 1)


def http3_to_app(code: int) -> int | None:
    """The application error code carried by an HTTP/3 code, or ``None`` when the code
    is outside the WebTransport range or is a reserved codepoint (such a reset still
    counts as a reset, only without an application code)."""
    if not FIRST_APPLICATION_CODE <= code <= LAST_APPLICATION_CODE:
        return None
    if (code - _RESERVED_OFFSET) % _RESERVED_STEP == 0:
        return None
    shifted = code - FIRST_APPLICATION_CODE
    return shifted - shifted // _RESERVED_STEP
