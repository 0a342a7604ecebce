"""HTTP/3 SETTINGS for WebTransport, draft negotiation and protocol-negotiation headers.

Browsers shipped different drafts, told apart only by which SETTINGS codepoint they
send. A server advertises every codepoint it can speak and then uses the newest one
the peer also sent, so Chrome (draft-02), Firefox (draft-02 family), Safari (draft-07
or -13) and draft-15 stacks all connect to the same server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .capsules import MAX_STREAMS_LIMIT
from .varint import MAX_VARINT

SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8
SETTINGS_H3_DATAGRAM = 0x33
SETTINGS_H3_DATAGRAM_DRAFT04 = 0xFFD277
SETTINGS_ENABLE_WEBTRANSPORT = 0x2B603742
"""draft-02: boolean."""
SETTINGS_WEBTRANSPORT_MAX_SESSIONS = 0xC671706A
"""draft-07..12: a session count."""
SETTINGS_WT_MAX_SESSIONS = 0x14E9CD29
"""draft-13/14: a session count."""
SETTINGS_WT_ENABLED = 0x2C7CF000
"""draft-15: boolean."""
SETTINGS_WT_INITIAL_MAX_DATA = 0x2B61
SETTINGS_WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65

DRAFT02_HEADER = b"sec-webtransport-http3-draft"


class Draft(StrEnum):
    DRAFT02 = "draft02"
    DRAFT07 = "draft07"
    DRAFT13 = "draft13"
    DRAFT15 = "draft15"


@dataclass(frozen=True)
class FlowControlLimits:
    """The credit we grant a peer in each session before it has to wait for more."""

    max_data: int = 16 * 1024 * 1024
    max_streams_bidi: int = 100
    max_streams_uni: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.max_data <= MAX_VARINT:
            raise ValueError(f"max_data must be 0..{MAX_VARINT}, got {self.max_data}")
        for name in ("max_streams_bidi", "max_streams_uni"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_STREAMS_LIMIT:
                raise ValueError(f"{name} must be 0..{MAX_STREAMS_LIMIT}, got {value}")


def _flow_control_settings(limits: FlowControlLimits) -> dict[int, int]:
    return {
        SETTINGS_WT_INITIAL_MAX_DATA: limits.max_data,
        SETTINGS_WT_INITIAL_MAX_STREAMS_UNI: limits.max_streams_uni,
        SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI: limits.max_streams_bidi,
    }


def server_settings(limits: FlowControlLimits, *, max_sessions: int = 100) -> dict[int, int]:
    """Everything a server advertises so that peers of every supported draft connect.

    Chrome refuses servers without ENABLE_WEBTRANSPORT and H3_DATAGRAM, Safari needs a
    max-sessions setting plus initial flow-control credit, and draft-15 peers look for
    WT_ENABLED; sending all of them costs a few bytes once per connection.
    """
    if not 1 <= max_sessions <= MAX_VARINT:
        raise ValueError(f"max_sessions must be 1..{MAX_VARINT}, got {max_sessions}")
    return {
        SETTINGS_ENABLE_CONNECT_PROTOCOL: 1,
        SETTINGS_H3_DATAGRAM: 1,
        SETTINGS_H3_DATAGRAM_DRAFT04: 1,
        SETTINGS_ENABLE_WEBTRANSPORT: 1,
        SETTINGS_WEBTRANSPORT_MAX_SESSIONS: max_sessions,
        SETTINGS_WT_MAX_SESSIONS: max_sessions,
        SETTINGS_WT_ENABLED: 1,
        **_flow_control_settings(limits),
    }


def client_settings(limits: FlowControlLimits) -> dict[int, int]:
    """What a client sends: every draft codepoint (so the server can pick the newest it
    shares) and the credit the server may use on streams it opens towards us.

    ENABLE_CONNECT_PROTOCOL is a server's promise to accept extended CONNECT, so a
    client does not send it.
    """
    return {
        SETTINGS_H3_DATAGRAM: 1,
        SETTINGS_H3_DATAGRAM_DRAFT04: 1,
        SETTINGS_ENABLE_WEBTRANSPORT: 1,
        SETTINGS_WEBTRANSPORT_MAX_SESSIONS: 1,
        SETTINGS_WT_MAX_SESSIONS: 1,
        SETTINGS_WT_ENABLED: 1,
        **_flow_control_settings(limits),
    }


def negotiate_draft(peer_settings: Mapping[int, int]) -> Draft | None:
    """The newest draft the peer enabled, or ``None`` if it enabled none."""
    if peer_settings.get(SETTINGS_WT_ENABLED) == 1:
        return Draft.DRAFT15
    if peer_settings.get(SETTINGS_WT_MAX_SESSIONS, 0) > 0:
        return Draft.DRAFT13
    if peer_settings.get(SETTINGS_WEBTRANSPORT_MAX_SESSIONS, 0) > 0:
        return Draft.DRAFT07
    if peer_settings.get(SETTINGS_ENABLE_WEBTRANSPORT) == 1:
        return Draft.DRAFT02
    return None


def response_headers(draft: Draft) -> list[tuple[bytes, bytes]]:
    """Headers the 2xx must carry for ``draft``: draft-02 clients expect to see the
    draft named; later drafts are identified by SETTINGS alone."""
    if draft is Draft.DRAFT02:
        return [(DRAFT02_HEADER, b"draft02")]
    return []


def uses_flow_control(draft: Draft) -> bool:
    """WebTransport-level flow control (WT_MAX_DATA & co.) exists from draft-07 on."""
    return draft is not Draft.DRAFT02


# --- WT-Available-Protocols / WT-Protocol (RFC 9651 Structured Fields) -----------------


class _Malformed(Exception):
    """The field does not parse; the draft says to ignore the whole field then."""


_SP = frozenset(" ")
_OWS = frozenset(" \t")
_DIGITS = frozenset("0123456789")
_LCALPHA = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALPHA = _LCALPHA | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_KEY_START = _LCALPHA | {"*"}
_KEY_CHARS = _KEY_START | _DIGITS | frozenset("_-.")
_TOKEN_START = _ALPHA | {"*"}
_TOKEN_CHARS = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~:/")
_BASE64_CHARS = _ALPHA | _DIGITS | frozenset("+/=")
_LOWER_HEX = frozenset("0123456789abcdef")
_MAX_INTEGER_DIGITS = 15
_MAX_DECIMAL_INTEGER_DIGITS = 12
_MAX_DECIMAL_FRACTION_DIGITS = 3


class _FieldParser:
    """RFC 9651 section 4.2, for a List whose members must all be Strings.

    Parameters are parsed (so a malformed one rejects the field, as RFC 9651 wants)
    and dropped, because the draft gives them no meaning.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_while(self, allowed: frozenset[str]) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise _Malformed("unexpected end of field")
        self.pos += 1
        return char

    def parse_string_list(self) -> list[str]:
        self.skip_while(_SP)
        members: list[str] = []
        while self.pos < len(self.text):
            if self.peek() != '"':
                raise _Malformed("a member is not a String")
            members.append(self.parse_string())
            self.parse_parameters()
            self.skip_while(_OWS)
            if self.pos == len(self.text):
                break
            if self.take() != ",":
                raise _Malformed("members must be separated by commas")
            self.skip_while(_OWS)
            if self.pos == len(self.text):
                raise _Malformed("trailing comma")
        return members

    def parse_parameters(self) -> None:
        while self.peek() == ";":
            self.pos += 1
            self.skip_while(_SP)
            self.parse_key()
            if self.peek() == "=":
                self.pos += 1
                self.parse_bare_item()

    def parse_key(self) -> None:
        if self.take() not in _KEY_START:
            raise _Malformed("bad parameter key")
        self.skip_while(_KEY_CHARS)

    def parse_bare_item(self) -> None:
        char = self.peek()
        if char == "-" or char in _DIGITS:
            self.parse_number()
        elif char == '"':
            self.parse_string()
        elif char and char in _TOKEN_START:
            self.pos += 1
            self.skip_while(_TOKEN_CHARS)
        elif char == ":":
            self.parse_byte_sequence()
        elif char == "?":
            self.pos += 1
            if self.take() not in "01":
                raise _Malformed("bad Boolean")
        elif char == "@":
            self.pos += 1
            if self.parse_number():
                raise _Malformed("a Date must be an Integer")
        elif char == "%":
            self.parse_display_string()
        else:
            raise _Malformed("unknown item type")

    def parse_number(self) -> bool:
        """Consume an Integer or Decimal; True if it was a Decimal."""
        if self.peek() == "-":
            self.pos += 1
        start = self.pos
        self.skip_while(_DIGITS)
        integer_digits = self.pos - start
        if integer_digits == 0:
            raise _Malformed("a number needs digits")
        if self.peek() != ".":
            if integer_digits > _MAX_INTEGER_DIGITS:
                raise _Malformed("Integer too long")
            return False
        if integer_digits > _MAX_DECIMAL_INTEGER_DIGITS:
            raise _Malformed("Decimal too long")
        self.pos += 1
        start = self.pos
        self.skip_while(_DIGITS)
        if not 1 <= self.pos - start <= _MAX_DECIMAL_FRACTION_DIGITS:
            raise _Malformed("a Decimal needs 1 to 3 fraction digits")
        return True

    def parse_string(self) -> str:
        self.pos += 1  # the opening DQUOTE
        chars: list[str] = []
        while True:
            char = self.take()
            if char == "\\":
                escaped = self.take()
                if escaped not in '"\\':
                    raise _Malformed("bad escape in String")
                chars.append(escaped)
            elif char == '"':
                return "".join(chars)
            elif " " <= char <= "~":
                chars.append(char)
            else:
                raise _Malformed("control character in String")

    def parse_byte_sequence(self) -> None:
        self.pos += 1
        self.skip_while(_BASE64_CHARS)
        if self.take() != ":":
            raise _Malformed("bad Byte Sequence")

    def parse_display_string(self) -> None:
        self.pos += 1
        if self.take() != '"':
            raise _Malformed("bad Display String")
        encoded = bytearray()
        while True:
            char = self.take()
            if char == "%":
                digits = self.take() + self.take()
                if not set(digits) <= _LOWER_HEX:
                    raise _Malformed("bad percent-encoding in Display String")
                encoded.append(int(digits, 16))
            elif char == '"':
                break
            elif " " <= char <= "~":
                encoded += char.encode("ascii")
            else:
                raise _Malformed("control character in Display String")
        try:
            encoded.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("Display String is not UTF-8") from None


def parse_available_protocols(value: bytes) -> list[str]:
    """The protocols offered in ``WT-Available-Protocols``, in order.

    Malformed input, or any member that is not a String, means the field is ignored
    (``[]``), so negotiation stays optional as the draft requires.
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return []
    parser = _FieldParser(text)
    try:
        return parser.parse_string_list()
    except _Malformed:
        return []


def serialize_protocol(protocol: str) -> bytes:
    """``protocol`` as the String Item that ``WT-Protocol`` carries."""
    if not all(" " <= char <= "~" for char in protocol):
        raise ValueError(
            f"{protocol!r} cannot be a Structured Field String: only printable ASCII is allowed"
        )
    escaped = protocol.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'.encode("ascii")
