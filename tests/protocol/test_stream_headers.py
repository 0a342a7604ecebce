import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_webtransport.protocol import (
    H3_ID_ERROR,
    H3_STREAM_CREATION_ERROR,
    WT_BIDI_SIGNAL,
    WT_UNI_STREAM_TYPE,
    InvalidStateError,
    ProtocolError,
    StreamHeaderError,
    StreamHeaderParser,
    encode_stream_header,
    encode_varint,
)

SESSION_IDS = st.integers(0, (2**62 - 1) // 4).map(lambda n: n * 4)


def test_constants() -> None:
    assert WT_UNI_STREAM_TYPE == 0x54
    assert WT_BIDI_SIGNAL == 0x41


@pytest.mark.parametrize(
    ("session_id", "unidirectional", "wire"),
    [
        (0, True, "4054 00"),
        (0, False, "4041 00"),
        (4, True, "4054 04"),
        (64, False, "4041 4040"),
    ],
)
def test_wire_format(session_id: int, unidirectional: bool, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode_stream_header(session_id, unidirectional=unidirectional) == data
    parser = StreamHeaderParser(unidirectional=unidirectional)
    assert parser.feed(data + b"payload") == (session_id, b"payload")


@pytest.mark.parametrize("session_id", [1, 2, 3, 5, -4, 2**62])
def test_encode_rejects_ids_that_cannot_be_sessions(session_id: int) -> None:
    with pytest.raises(ValueError, match="client-initiated bidirectional"):
        encode_stream_header(session_id, unidirectional=True)


def test_incomplete_header_returns_none_until_complete() -> None:
    parser = StreamHeaderParser(unidirectional=False)
    header = encode_stream_header(2**40, unidirectional=False)
    for byte in header[:-1]:
        assert parser.feed(bytes([byte])) is None
    assert parser.feed(header[-1:]) == (2**40, b"")


def test_empty_payload_after_complete_header() -> None:
    parser = StreamHeaderParser(unidirectional=True)
    assert parser.feed(b"") is None
    assert parser.feed(encode_stream_header(8, unidirectional=True)) == (8, b"")


def test_wrong_unidirectional_stream_type() -> None:
    parser = StreamHeaderParser(unidirectional=True)
    # 0x00 is HTTP/3's control stream type.
    with pytest.raises(StreamHeaderError, match="expected WebTransport stream type 0x54, got 0x0"):
        parser.feed(b"\x00\x04")


def test_wrong_bidirectional_signal_is_reported_once_the_varint_is_complete() -> None:
    parser = StreamHeaderParser(unidirectional=False)
    assert parser.feed(b"\x40") is None
    # 0x0101 is not the signal (a HEADERS frame would start with 0x01).
    with pytest.raises(StreamHeaderError, match="signal value 0x41, got 0x1") as info:
        parser.feed(b"\x01")
    assert info.value.http3_code == H3_STREAM_CREATION_ERROR


def test_the_other_direction_s_marker_is_rejected() -> None:
    with pytest.raises(StreamHeaderError, match="got 0x41"):
        StreamHeaderParser(unidirectional=True).feed(encode_stream_header(0, unidirectional=False))


@pytest.mark.parametrize("session_id", [1, 2, 3, 6, 2**62 - 1])
def test_session_id_that_is_not_a_connect_stream_is_an_id_error(session_id: int) -> None:
    parser = StreamHeaderParser(unidirectional=True)
    with pytest.raises(StreamHeaderError, match=f"session id {session_id} is not") as info:
        parser.feed(encode_varint(0x54) + encode_varint(session_id))
    assert info.value.http3_code == H3_ID_ERROR


def test_non_shortest_encodings_are_accepted() -> None:
    parser = StreamHeaderParser(unidirectional=False)
    assert parser.feed(b"\x80\x00\x00\x41" + b"\x40\x08" + b"x") == (8, b"x")


def test_feed_after_completion_is_a_state_error() -> None:
    parser = StreamHeaderParser(unidirectional=True)
    assert parser.feed(encode_stream_header(0, unidirectional=True)) == (0, b"")
    with pytest.raises(InvalidStateError, match="after the header was complete"):
        parser.feed(b"more")


def test_error_poisons_the_parser() -> None:
    parser = StreamHeaderParser(unidirectional=True)
    with pytest.raises(StreamHeaderError) as first:
        parser.feed(b"\x01")
    with pytest.raises(StreamHeaderError) as second:
        parser.feed(encode_stream_header(0, unidirectional=True))
    assert second.value is first.value


@settings(max_examples=300, deadline=None)
@given(st.booleans(), SESSION_IDS, st.binary(max_size=50), st.data())
def test_round_trip_with_arbitrary_splits(
    unidirectional: bool, session_id: int, payload: bytes, data: st.DataObject
) -> None:
    wire = encode_stream_header(session_id, unidirectional=unidirectional) + payload
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = StreamHeaderParser(unidirectional=unidirectional)
    received = b""
    result = None
    start = 0
    for cut in [*cuts, len(wire)]:
        chunk = wire[start:cut]
        start = cut
        if result is None:
            result = parser.feed(chunk)
            if result is not None:
                received += result[1]
        else:
            received += chunk
    assert result is not None
    assert result[0] == session_id
    assert received == payload


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(st.binary(max_size=10), max_size=5))
def test_fuzzed_bytes_only_raise_protocol_errors(unidirectional: bool, chunks: list[bytes]) -> None:
    parser = StreamHeaderParser(unidirectional=unidirectional)
    try:
        for chunk in chunks:
            result = parser.feed(chunk)
            if result is not None:
                session_id, _ = result
                assert session_id % 4 == 0
                return
    except ProtocolError as exc:
        assert str(exc)
