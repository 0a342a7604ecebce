import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_webtransport.protocol import (
    H3_EXCESSIVE_LOAD,
    H3_MESSAGE_ERROR,
    WT_FLOW_CONTROL_ERROR,
    Capsule,
    CapsuleError,
    CapsuleParser,
    CapsuleType,
    CloseSession,
    DataBlocked,
    DatagramCapsule,
    DrainSession,
    InvalidStateError,
    MaxData,
    MaxStreams,
    ProtocolError,
    StreamsBlocked,
    UnknownCapsule,
    encode_capsule,
    encode_varint,
)

KNOWN_TYPES = {int(t) for t in CapsuleType}
U32 = st.integers(0, 2**32 - 1)
VARINTS = st.integers(0, 2**62 - 1)
STREAM_COUNTS = st.integers(0, 2**60)
REASONS = st.text(max_size=400).filter(lambda reason: len(reason.encode()) <= 1024)

CAPSULES: st.SearchStrategy[Capsule] = st.one_of(
    st.builds(CloseSession, U32, REASONS),
    st.just(DrainSession()),
    st.builds(DatagramCapsule, st.binary(max_size=300)),
    st.builds(MaxData, VARINTS),
    st.builds(MaxStreams, st.booleans(), STREAM_COUNTS),
    st.builds(DataBlocked, VARINTS),
    st.builds(StreamsBlocked, st.booleans(), STREAM_COUNTS),
    st.builds(
        UnknownCapsule,
        VARINTS.filter(lambda kind: kind not in KNOWN_TYPES),
        st.binary(max_size=100),
    ),
)


def raw_capsule(capsule_type: int, payload: bytes) -> bytes:
    return encode_varint(capsule_type) + encode_varint(len(payload)) + payload


def parse_all(data: bytes, **kwargs: int) -> list[Capsule]:
    parser = CapsuleParser(**kwargs)
    capsules = parser.feed(data)
    parser.close()
    return capsules


def feed_in_chunks(parser: CapsuleParser, data: bytes, cuts: list[int]) -> list[Capsule]:
    capsules: list[Capsule] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        capsules += parser.feed(data[start:cut])
        start = cut
    return capsules


# --- encoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capsule", "wire"),  # type, length, payload
    [
        (CloseSession(0x1234, "bye"), "6843 07 00001234 627965"),
        (CloseSession(0, ""), "6843 04 00000000"),
        (DrainSession(), "800078ae 00"),
        (DatagramCapsule(b"hi"), "00 02 6869"),
        (MaxData(1000), "990b4d3d 02 43e8"),
        (MaxStreams(True, 5), "990b4d3f 01 05"),
        (MaxStreams(False, 5), "990b4d40 01 05"),
        (DataBlocked(63), "990b4d41 01 3f"),
        (StreamsBlocked(True, 64), "990b4d43 02 4040"),
        (StreamsBlocked(False, 1), "990b4d44 01 01"),
        (UnknownCapsule(0x17, b"\x01"), "17 01 01"),
    ],
)
def test_wire_format(capsule: Capsule, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode_capsule(capsule) == data
    assert parse_all(data) == [capsule]


def test_close_reason_of_exactly_1024_utf8_bytes_is_allowed() -> None:
    capsule = CloseSession(7, "é" * 512)
    assert parse_all(encode_capsule(capsule)) == [capsule]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CloseSession(-1, ""), "WT_CLOSE_SESSION code must be 0..4294967295, got -1"),
        (lambda: CloseSession(2**32, ""), "WT_CLOSE_SESSION code must be 0..4294967295"),
        (lambda: CloseSession(0, "x" * 1025), "1025 UTF-8 bytes; the limit is 1024"),
        (lambda: CloseSession(0, "é" * 513), "1026 UTF-8 bytes; the limit is 1024"),
        (lambda: CloseSession(0, "\ud800"), "not encodable as UTF-8"),
        (lambda: MaxData(-1), "WT_MAX_DATA maximum must be"),
        (lambda: MaxData(2**62), "WT_MAX_DATA maximum must be"),
        (lambda: DataBlocked(2**62), "WT_DATA_BLOCKED maximum must be"),
        (lambda: MaxStreams(True, 2**60 + 1), "WT_MAX_STREAMS maximum must be"),
        (lambda: StreamsBlocked(False, -1), "WT_STREAMS_BLOCKED maximum must be"),
        (lambda: UnknownCapsule(2**62, b""), "capsule type must be"),
        (lambda: UnknownCapsule(0x2843, b""), "WT_CLOSE_SESSION capsule is a known type"),
        (lambda: UnknownCapsule(0x190B4D3E, b""), "WT_MAX_STREAM_DATA capsule is a known type"),
    ],
)
def test_invalid_capsules_cannot_be_built(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_capsules_are_frozen() -> None:
    capsule = MaxData(1)
    with pytest.raises(AttributeError):
        capsule.maximum = 2  # type: ignore[misc]


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize("grease", [0x17, 0x29 * 3 + 0x17, 0x29 * 10**9 + 0x17])
def test_grease_and_unknown_types_come_back_as_unknown_capsules(grease: int) -> None:
    data = raw_capsule(grease, b"ignored") + encode_capsule(DrainSession())
    assert parse_all(data) == [UnknownCapsule(grease, b"ignored"), DrainSession()]


def test_non_shortest_header_varints_are_accepted() -> None:
    data = b"\xc0\x00\x00\x00\x00\x00\x28\x43" + b"\x40\x04" + b"\x00\x00\x00\x09"
    assert parse_all(data) == [CloseSession(9, "")]


def test_feed_returns_only_completed_capsules_and_buffers_the_rest() -> None:
    parser = CapsuleParser()
    first = encode_capsule(MaxData(10))
    second = encode_capsule(DatagramCapsule(b"x" * 100))
    assert parser.feed(first + second[:50]) == [MaxData(10)]
    assert parser.buffered == 50
    assert parser.feed(second[50:]) == [DatagramCapsule(b"x" * 100)]
    assert parser.buffered == 0
    parser.close()


def test_large_capsule_fed_byte_by_byte() -> None:
    capsule = DatagramCapsule(bytes(range(256)) * 200)
    parser = CapsuleParser()
    data = encode_capsule(capsule)
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    assert results[-1] == [capsule]
    assert all(result == [] for result in results[:-1])


def test_empty_feed_and_empty_stream() -> None:
    parser = CapsuleParser()
    assert parser.feed(b"") == []
    parser.close()


@pytest.mark.parametrize("capsule_type", [0x190B4D3E, 0x190B4D42])
def test_prohibited_capsule_is_rejected_as_soon_as_its_type_is_known(capsule_type: int) -> None:
    parser = CapsuleParser()
    with pytest.raises(CapsuleError, match="is prohibited in WebTransport over HTTP/3") as info:
        parser.feed(encode_varint(capsule_type))
    assert info.value.http3_code == H3_MESSAGE_ERROR
    assert f"{capsule_type:#x}" in str(info.value)


def test_oversize_capsule_is_rejected_from_its_header_alone() -> None:
    parser = CapsuleParser(max_capsule_size=2000)
    header = encode_varint(0) + encode_varint(2001)
    with pytest.raises(
        CapsuleError, match="declares 2001 payload bytes; the limit is 2000"
    ) as info:
        parser.feed(header)
    assert info.value.http3_code == H3_EXCESSIVE_LOAD
    assert parser.buffered == 0


def test_capsule_of_exactly_the_maximum_size_is_accepted() -> None:
    capsule = DatagramCapsule(b"\x00" * 2000)
    assert parse_all(encode_capsule(capsule), max_capsule_size=2000) == [capsule]


def test_oversize_unknown_capsule_is_rejected_too() -> None:
    with pytest.raises(CapsuleError, match="capsule of type 0x17 declares 70000"):
        CapsuleParser().feed(encode_varint(0x17) + encode_varint(70000))


def test_max_capsule_size_must_admit_a_full_close_capsule() -> None:
    CapsuleParser(max_capsule_size=1028)
    with pytest.raises(ValueError, match="at least 1028"):
        CapsuleParser(max_capsule_size=1027)


@pytest.mark.parametrize(
    ("capsule_type", "payload", "message"),
    [
        (0x2843, b"", "WT_CLOSE_SESSION payload is 0 bytes; it needs at least 4"),
        (0x2843, b"\x00\x00\x01", "WT_CLOSE_SESSION payload is 3 bytes; it needs at least 4"),
        (0x2843, b"\x00" * 4 + b"x" * 1025, "reason is 1025 bytes; the limit is 1024"),
        (0x2843, b"\x00" * 4 + b"ok\xff", "not valid UTF-8 (byte 2 of the reason"),
        (0x2843, b"\x00" * 4 + b"\xed\xa0\x80", "not valid UTF-8 (byte 0 of the reason"),
        (0x78AE, b"\x00", "WT_DRAIN_SESSION must be empty; it carries 1 bytes"),
        (0x190B4D3D, b"", "WT_MAX_DATA capsule has a truncated Maximum Data varint"),
        (0x190B4D3D, b"\x80\x01", "WT_MAX_DATA capsule has a truncated Maximum Data varint"),
        (0x190B4D3D, b"\x01\x02", "WT_MAX_DATA capsule has 1 trailing bytes after Maximum Data"),
        (
            0x190B4D41,
            b"\x01\x00\x00",
            "WT_DATA_BLOCKED capsule has 2 trailing bytes after Maximum Data",
        ),
        (
            0x190B4D3F,
            b"",
            "WT_MAX_STREAMS (bidirectional) capsule has a truncated Maximum Streams varint",
        ),
        (
            0x190B4D40,
            b"\x05\x05",
            "WT_MAX_STREAMS (unidirectional) capsule has 1 trailing bytes after Maximum Streams",
        ),
        (
            0x190B4D43,
            b"\xc0",
            "WT_STREAMS_BLOCKED (bidirectional) capsule has a truncated Maximum Streams",
        ),
        (
            0x190B4D44,
            b"\x00\x00",
            "WT_STREAMS_BLOCKED (unidirectional) capsule has 1 trailing bytes",
        ),
    ],
)
def test_malformed_payloads_raise_specific_errors(
    capsule_type: int, payload: bytes, message: str
) -> None:
    parser = CapsuleParser()
    with pytest.raises(CapsuleError) as info:
        parser.feed(raw_capsule(capsule_type, payload))
    assert message in str(info.value)
    assert info.value.http3_code == H3_MESSAGE_ERROR


@pytest.mark.parametrize(
    ("capsule_type", "at_limit"),
    [
        (0x190B4D3F, MaxStreams(True, 2**60)),
        (0x190B4D40, MaxStreams(False, 2**60)),
        (0x190B4D43, StreamsBlocked(True, 2**60)),
        (0x190B4D44, StreamsBlocked(False, 2**60)),
    ],
)
def test_stream_counts_above_2_to_the_60_are_flow_control_errors(
    capsule_type: int, at_limit: Capsule
) -> None:
    assert parse_all(raw_capsule(capsule_type, encode_varint(2**60))) == [at_limit]
    parser = CapsuleParser()
    with pytest.raises(CapsuleError, match="allows 1152921504606846977 streams") as info:
        parser.feed(raw_capsule(capsule_type, encode_varint(2**60 + 1)))
    assert info.value.http3_code == WT_FLOW_CONTROL_ERROR


def test_error_poisons_the_parser() -> None:
    parser = CapsuleParser()
    with pytest.raises(CapsuleError) as first:
        parser.feed(raw_capsule(0x78AE, b"x"))
    with pytest.raises(CapsuleError) as second:
        parser.feed(encode_capsule(DrainSession()))
    assert second.value is first.value
    with pytest.raises(CapsuleError) as third:
        parser.close()
    assert third.value is first.value


def test_close_inside_a_header() -> None:
    parser = CapsuleParser()
    parser.feed(b"\x80\x00")
    with pytest.raises(CapsuleError, match=r"inside a capsule header \(2 bytes of it\)"):
        parser.close()


def test_close_after_the_type_but_before_the_length() -> None:
    parser = CapsuleParser()
    parser.feed(encode_varint(0x2843))
    with pytest.raises(CapsuleError, match="inside a capsule header"):
        parser.close()


def test_close_inside_a_payload() -> None:
    parser = CapsuleParser()
    parser.feed(encode_capsule(CloseSession(1, "goodbye"))[:-3])
    with pytest.raises(
        CapsuleError, match="inside a WT_CLOSE_SESSION capsule: 8 of its 11"
    ) as info:
        parser.close()
    assert info.value.http3_code == H3_MESSAGE_ERROR


def test_feed_after_close_is_a_state_error() -> None:
    parser = CapsuleParser()
    parser.close()
    parser.close()
    with pytest.raises(InvalidStateError, match=r"feed\(\) after close\(\)"):
        parser.feed(b"")


def test_buffer_holds_only_the_incomplete_tail() -> None:
    parser = CapsuleParser()
    chunk = encode_capsule(DatagramCapsule(b"y" * 1000)) * 50
    for _ in range(20):
        assert len(parser.feed(chunk + b"\x00\x05ab")) == 50
        assert parser.buffered == 4
        assert parser.feed(b"cde") == [DatagramCapsule(b"abcde")]
        assert parser.buffered == 0


# --- properties -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(CAPSULES, max_size=8), st.data())
def test_round_trip_with_arbitrary_splits(capsules: list[Capsule], data: st.DataObject) -> None:
    wire = b"".join(encode_capsule(capsule) for capsule in capsules)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    parser = CapsuleParser()
    assert feed_in_chunks(parser, wire, cuts) == capsules
    assert parser.buffered == 0
    parser.close()


Outcome = tuple[list[Capsule], None] | tuple[None, tuple[type[ProtocolError], str]]


def _outcome(run: Callable[[CapsuleParser], list[Capsule]]) -> Outcome:
    parser = CapsuleParser(max_capsule_size=2048)
    try:
        capsules = run(parser)
        parser.close()
    except ProtocolError as exc:
        return None, (type(exc), str(exc))
    return capsules, None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.data())
def test_fuzzed_bytes_only_raise_protocol_errors_and_ignore_splits(
    wire: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    whole = _outcome(lambda parser: parser.feed(wire))
    chunked = _outcome(lambda parser: feed_in_chunks(parser, wire, cuts))
    assert chunked == whole


KNOWN_AND_GREASE = st.sampled_from([*KNOWN_TYPES, 0x17, 0x40])


@settings(max_examples=400, deadline=None)
@given(KNOWN_AND_GREASE, st.binary(max_size=12), st.integers(-2, 2), st.binary(max_size=6))
def test_fuzzed_payloads_of_known_types_only_raise_capsule_errors(
    capsule_type: int, payload: bytes, length_delta: int, trailing: bytes
) -> None:
    wire = (
        encode_varint(capsule_type)
        + encode_varint(max(0, len(payload) + length_delta))
        + payload
        + trailing
    )
    parser = CapsuleParser()
    try:
        parsed = parser.feed(wire)
        parser.close()
    except CapsuleError as exc:
        assert str(exc)
        return
    for capsule in parsed:
        assert parse_all(encode_capsule(capsule)) == [capsule]
