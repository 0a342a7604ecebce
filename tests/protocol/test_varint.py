import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_webtransport.protocol import decode_varint, encode_varint

MAX = 2**62 - 1


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        # RFC 9000 appendix A.1 examples.
        (37, bytes.fromhex("25")),
        (15293, bytes.fromhex("7bbd")),
        (494878333, bytes.fromhex("9d7f3e7d")),
        (151288809941952652, bytes.fromhex("c2197c5eff14e88c")),
        # Size boundaries.
        (0, b"\x00"),
        (63, b"\x3f"),
        (64, b"\x40\x40"),
        (16383, b"\x7f\xff"),
        (16384, b"\x80\x00\x40\x00"),
        (2**30 - 1, b"\xbf\xff\xff\xff"),
        (2**30, b"\xc0\x00\x00\x00\x40\x00\x00\x00"),
        (MAX, b"\xff" * 8),
    ],
)
def test_known_encodings(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("value", [-1, MAX + 1])
def test_encode_rejects_values_outside_the_range(value: int) -> None:
    with pytest.raises(ValueError, match="QUIC varints hold"):
        encode_varint(value)


def test_decode_accepts_non_shortest_encodings() -> None:
    # RFC 9000 example: 37 in two bytes.
    assert decode_varint(bytes.fromhex("4025"), 0) == (37, 2)
    assert decode_varint(b"\xc0\x00\x00\x00\x00\x00\x00\x05", 0) == (5, 8)


def test_decode_at_offset_and_in_bytearray() -> None:
    buffer = bytearray(b"\xaa\x7b\xbd\x01")
    assert decode_varint(buffer, 1) == (15293, 3)
    assert decode_varint(buffer, 3) == (1, 4)


@pytest.mark.parametrize("data", [b"", b"\x40", b"\x80\x00\x00", b"\xc0" + b"\x00" * 6])
def test_decode_reports_need_more_bytes(data: bytes) -> None:
    assert decode_varint(data, 0) is None


def test_decode_past_the_end_needs_more_bytes() -> None:
    assert decode_varint(b"\x01", 1) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX), st.binary(max_size=8))
def test_round_trip_with_trailing_bytes(value: int, trailing: bytes) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + trailing, 0) == (value, len(encoded))
    for cut in range(len(encoded)):
        assert decode_varint(encoded[:cut], 0) is None
