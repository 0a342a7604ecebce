import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_webtransport.protocol import (
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    SETTINGS_ENABLE_WEBTRANSPORT,
    SETTINGS_H3_DATAGRAM,
    SETTINGS_H3_DATAGRAM_DRAFT04,
    SETTINGS_WEBTRANSPORT_MAX_SESSIONS,
    SETTINGS_WT_ENABLED,
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
    SETTINGS_WT_MAX_SESSIONS,
    Draft,
    FlowControlLimits,
    client_settings,
    negotiate_draft,
    parse_available_protocols,
    response_headers,
    serialize_protocol,
    server_settings,
    uses_flow_control,
)

# What headless Chromium 156 sends (landscape notes, section 7), with QPACK settings
# and a GREASE setting.
CHROMIUM_SETTINGS = {
    0x1: 0,
    0x7: 0,
    SETTINGS_H3_DATAGRAM: 1,
    SETTINGS_H3_DATAGRAM_DRAFT04: 1,
    SETTINGS_ENABLE_WEBTRANSPORT: 1,
    0x1F * 7 + 0x21: 12345,
}
PYWEBTRANSPORT_SETTINGS = {SETTINGS_H3_DATAGRAM: 1, SETTINGS_WT_MAX_SESSIONS: 1}
SAFARI_SETTINGS = {SETTINGS_H3_DATAGRAM: 1, SETTINGS_WEBTRANSPORT_MAX_SESSIONS: 1}


def test_codepoints() -> None:
    assert SETTINGS_ENABLE_CONNECT_PROTOCOL == 0x8
    assert SETTINGS_H3_DATAGRAM == 0x33
    assert SETTINGS_H3_DATAGRAM_DRAFT04 == 0xFFD277
    assert SETTINGS_ENABLE_WEBTRANSPORT == 0x2B603742
    assert SETTINGS_WEBTRANSPORT_MAX_SESSIONS == 0xC671706A
    assert SETTINGS_WT_MAX_SESSIONS == 0x14E9CD29
    assert SETTINGS_WT_ENABLED == 0x2C7CF000
    assert SETTINGS_WT_INITIAL_MAX_DATA == 0x2B61
    assert SETTINGS_WT_INITIAL_MAX_STREAMS_UNI == 0x2B64
    assert SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI == 0x2B65


def test_server_settings_serve_every_draft() -> None:
    limits = FlowControlLimits(max_data=1 << 20, max_streams_bidi=7, max_streams_uni=3)
    assert server_settings(limits, max_sessions=5) == {
        SETTINGS_ENABLE_CONNECT_PROTOCOL: 1,
        SETTINGS_H3_DATAGRAM: 1,
        SETTINGS_H3_DATAGRAM_DRAFT04: 1,
        SETTINGS_ENABLE_WEBTRANSPORT: 1,
        SETTINGS_WEBTRANSPORT_MAX_SESSIONS: 5,
        SETTINGS_WT_MAX_SESSIONS: 5,
        SETTINGS_WT_ENABLED: 1,
        SETTINGS_WT_INITIAL_MAX_DATA: 1 << 20,
        SETTINGS_WT_INITIAL_MAX_STREAMS_UNI: 3,
        SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI: 7,
    }


def test_default_limits() -> None:
    limits = FlowControlLimits()
    assert (limits.max_data, limits.max_streams_bidi, limits.max_streams_uni) == (
        16 * 1024 * 1024,
        100,
        100,
    )
    settings_ = server_settings(limits)
    assert settings_[SETTINGS_WT_MAX_SESSIONS] == 100
    assert settings_[SETTINGS_WEBTRANSPORT_MAX_SESSIONS] == 100


@pytest.mark.parametrize("max_sessions", [0, -1, 2**62])
def test_server_settings_reject_impossible_session_counts(max_sessions: int) -> None:
    with pytest.raises(ValueError, match="max_sessions must be 1"):
        server_settings(FlowControlLimits(), max_sessions=max_sessions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_data": -1}, "max_data must be"),
        ({"max_data": 2**62}, "max_data must be"),
        ({"max_streams_bidi": 2**60 + 1}, "max_streams_bidi must be"),
        ({"max_streams_uni": -1}, "max_streams_uni must be"),
    ],
)
def test_limits_are_validated(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowControlLimits(**kwargs)


def test_client_settings() -> None:
    limits = FlowControlLimits(max_data=10, max_streams_bidi=2, max_streams_uni=1)
    sent = client_settings(limits)
    assert SETTINGS_ENABLE_CONNECT_PROTOCOL not in sent
    assert sent[SETTINGS_H3_DATAGRAM] == 1
    assert sent[SETTINGS_H3_DATAGRAM_DRAFT04] == 1
    assert sent[SETTINGS_ENABLE_WEBTRANSPORT] == 1
    assert sent[SETTINGS_WT_MAX_SESSIONS] >= 1
    assert sent[SETTINGS_WT_ENABLED] == 1
    assert sent[SETTINGS_WT_INITIAL_MAX_DATA] == 10
    assert sent[SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI] == 2
    assert sent[SETTINGS_WT_INITIAL_MAX_STREAMS_UNI] == 1


@pytest.mark.parametrize(
    ("peer", "draft"),
    [
        (CHROMIUM_SETTINGS, Draft.DRAFT02),
        (SAFARI_SETTINGS, Draft.DRAFT07),
        (PYWEBTRANSPORT_SETTINGS, Draft.DRAFT13),
        ({SETTINGS_WT_ENABLED: 1}, Draft.DRAFT15),
        ({**CHROMIUM_SETTINGS, SETTINGS_WEBTRANSPORT_MAX_SESSIONS: 4}, Draft.DRAFT07),
        ({SETTINGS_ENABLE_WEBTRANSPORT: 1, SETTINGS_WT_MAX_SESSIONS: 1}, Draft.DRAFT13),
        ({SETTINGS_WT_ENABLED: 0, SETTINGS_WEBTRANSPORT_MAX_SESSIONS: 2}, Draft.DRAFT07),
        ({SETTINGS_WT_ENABLED: 2, SETTINGS_ENABLE_WEBTRANSPORT: 1}, Draft.DRAFT02),
        ({}, None),
        ({SETTINGS_H3_DATAGRAM: 1, SETTINGS_ENABLE_CONNECT_PROTOCOL: 1}, None),
        ({SETTINGS_ENABLE_WEBTRANSPORT: 0, SETTINGS_WT_MAX_SESSIONS: 0}, None),
    ],
)
def test_negotiate_draft(peer: dict[int, int], draft: Draft | None) -> None:
    assert negotiate_draft(peer) is draft


def test_our_server_and_client_negotiate_the_newest_draft() -> None:
    assert negotiate_draft(server_settings(FlowControlLimits())) is Draft.DRAFT15
    assert negotiate_draft(client_settings(FlowControlLimits())) is Draft.DRAFT15


def test_draft_values_match_the_asgi_scope() -> None:
    assert [draft.value for draft in Draft] == ["draft02", "draft07", "draft13", "draft15"]
    assert Draft("draft13") is Draft.DRAFT13


def test_response_headers_and_flow_control() -> None:
    assert response_headers(Draft.DRAFT02) == [(b"sec-webtransport-http3-draft", b"draft02")]
    for draft in (Draft.DRAFT07, Draft.DRAFT13, Draft.DRAFT15):
        assert response_headers(draft) == []
        assert uses_flow_control(draft)
    assert not uses_flow_control(Draft.DRAFT02)


# --- WT-Available-Protocols / WT-Protocol ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "protocols"),
    [
        (b'"chat", "v2"', ["chat", "v2"]),
        (b'"chat"', ["chat"]),
        (b"", []),
        (b"   ", []),
        (b'  "a"  ,\t"b"\t ', ["a", "b"]),
        (b'"a","b"', ["a", "b"]),
        (b'"q\\"uote", "back\\\\slash"', ['q"uote', "back\\slash"]),
        (b'""', [""]),
        (b'"a";q=0.5;x, "b";n=-12;t=tok/en:1;b=:aGk=:;f=?0;d=@17;s="p";u=%"%c3%a9"', ["a", "b"]),
        (b'"a"; k=1', ["a"]),
        (b'"a";*k.-_9=1', ["a"]),
        (b'"dup", "dup"', ["dup", "dup"]),
    ],
)
def test_parse_available_protocols(field: bytes, protocols: list[str]) -> None:
    assert parse_available_protocols(field) == protocols


@pytest.mark.parametrize(
    "field",
    [
        b"chat",  # Token, not String
        b'"chat", v2',
        b'"a", 1',
        b'("a" "b")',  # Inner List
        b'"a", ("b")',
        b'"a",',
        b'"a",  ',
        b', "a"',
        b'"a" "b"',
        b'"unterminated',
        b'"bad \\n escape"',
        b'"tab\tinside"',
        b'"caf\xc3\xa9"',  # non-ASCII
        b'\t"a"',  # leading HTAB is not SP
        b'"a";',
        b'"a";K=1',  # keys are lowercase
        b'"a";1k=1',
        b'"a";k=',
        b'"a";k=1234567890123456',  # Integer with 16 digits
        b'"a";k=1234567890123.5',  # Decimal with 13 integer digits
        b'"a";k=1.2345',
        b'"a";k=1.',
        b'"a";k=-',
        b'"a";k=?2',
        b'"a";k=:abc',
        b'"a";k=:a!b:',
        b'"a";k=@1.5',
        b'"a";k=%"%C3%A9"',  # uppercase hex
        b'"a";k=%"%ff"',  # not UTF-8
        b'"a";k=%"%c3',
        b'"a";k=%x',
        b'"a";k=!',
        b'"a";k="x',
    ],
)
def test_malformed_fields_are_ignored(field: bytes) -> None:
    assert parse_available_protocols(field) == []


@pytest.mark.parametrize(
    ("protocol", "wire"),
    [
        ("chat", b'"chat"'),
        ("", b'""'),
        ('a"b', b'"a\\"b"'),
        ("a\\b", b'"a\\\\b"'),
        (" ~", b'" ~"'),
    ],
)
def test_serialize_protocol(protocol: str, wire: bytes) -> None:
    assert serialize_protocol(protocol) == wire


@pytest.mark.parametrize("protocol", ["é", "a\nb", "\x7f", "tab\t"])
def test_serialize_protocol_rejects_non_printable_ascii(protocol: str) -> None:
    with pytest.raises(ValueError, match="only printable ASCII"):
        serialize_protocol(protocol)


PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(PRINTABLE, max_size=6), st.sampled_from([",", ", ", " ,\t", "\t,  "]))
def test_serialized_protocols_parse_back(protocols: list[str], separator: str) -> None:
    field = separator.encode().join(serialize_protocol(protocol) for protocol in protocols)
    assert parse_available_protocols(field) == protocols


SF_SOUP = st.text(st.sampled_from('"\\;=,:?@%()*-._/ \t019aefkzAZé'), max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=60), SF_SOUP.map(lambda text: text.encode())))
def test_fuzzed_fields_never_raise_and_yield_echoable_protocols(field: bytes) -> None:
    for protocol in parse_available_protocols(field):
        # Whatever a client offers, the server can send back as WT-Protocol.
        assert parse_available_protocols(serialize_protocol(protocol)) == [protocol]
