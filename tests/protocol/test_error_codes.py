import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_webtransport.protocol import (
    FIRST_APPLICATION_CODE,
    H3_GENERAL_PROTOCOL_ERROR,
    H3_INTERNAL_ERROR,
    H3_MESSAGE_ERROR,
    H3_STREAM_CREATION_ERROR,
    LAST_APPLICATION_CODE,
    MAX_APPLICATION_CODE,
    WT_FLOW_CONTROL_ERROR,
    CapsuleError,
    InvalidStateError,
    ProtocolError,
    StreamHeaderError,
    app_to_http3,
    http3_to_app,
)

EDGE_CODES = [0, 1, 0x1D, 0x1E, 0x1F, 0x3C, 2**31, MAX_APPLICATION_CODE - 1, MAX_APPLICATION_CODE]


def is_reserved(code: int) -> bool:
    return (code - 0x21) % 0x1F == 0


def test_draft_example_values() -> None:
    # The draft pins both ends of the range.
    assert app_to_http3(0) == 0x52E4A40FA8DB == FIRST_APPLICATION_CODE
    assert app_to_http3(MAX_APPLICATION_CODE) == 0x52E5AC983162 == LAST_APPLICATION_CODE


@pytest.mark.parametrize("code", EDGE_CODES)
def test_edge_codes_round_trip(code: int) -> None:
    http3 = app_to_http3(code)
    assert not is_reserved(http3)
    assert http3_to_app(http3) == code


def test_mapping_skips_exactly_the_reserved_codepoint() -> None:
    # Application codes 0x1d and 0x1e straddle the first reserved codepoint.
    low, high = app_to_http3(0x1D), app_to_http3(0x1E)
    assert high - low == 2
    assert is_reserved(low + 1)
    assert http3_to_app(low + 1) is None


@pytest.mark.parametrize("code", [-1, MAX_APPLICATION_CODE + 1, 2**62])
def test_app_to_http3_rejects_codes_outside_u32(code: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.4294967295"):
        app_to_http3(code)


@pytest.mark.parametrize(
    "http3",
    [0, 0x100, H3_MESSAGE_ERROR, WT_FLOW_CONTROL_ERROR, FIRST_APPLICATION_CODE - 1],
)
def test_codes_below_the_range_have_no_application_code(http3: int) -> None:
    assert http3_to_app(http3) is None


def test_codes_above_the_range_have_no_application_code() -> None:
    assert http3_to_app(LAST_APPLICATION_CODE + 1) is None
    assert http3_to_app(2**62 - 1) is None


@settings(max_examples=500, deadline=None)
@given(st.integers(0, MAX_APPLICATION_CODE))
def test_every_application_code_round_trips(code: int) -> None:
    http3 = app_to_http3(code)
    assert FIRST_APPLICATION_CODE <= http3 <= LAST_APPLICATION_CODE
    assert not is_reserved(http3)
    assert http3_to_app(http3) == code


@settings(max_examples=500, deadline=None)
@given(st.integers(FIRST_APPLICATION_CODE, LAST_APPLICATION_CODE))
def test_every_http3_code_in_range_maps_back_or_is_reserved(http3: int) -> None:
    code = http3_to_app(http3)
    if is_reserved(http3):
        assert code is None
    else:
        assert code is not None
        assert app_to_http3(code) == http3


def test_consecutive_codes_are_strictly_increasing_across_a_window() -> None:
    # Monotonic and gap-free apart from reserved codepoints: nothing collides.
    previous = app_to_http3(0)
    for code in range(1, 1000):
        current = app_to_http3(code)
        gap = current - previous
        assert gap in (1, 2)
        if gap == 2:
            assert is_reserved(previous + 1)
        previous = current


def test_error_classes_carry_default_http3_codes() -> None:
    assert issubclass(CapsuleError, ProtocolError)
    assert issubclass(StreamHeaderError, ProtocolError)
    assert issubclass(InvalidStateError, ProtocolError)
    assert ProtocolError("x").http3_code == H3_GENERAL_PROTOCOL_ERROR
    assert CapsuleError("x").http3_code == H3_MESSAGE_ERROR
    assert StreamHeaderError("x").http3_code == H3_STREAM_CREATION_ERROR
    assert InvalidStateError("x").http3_code == H3_INTERNAL_ERROR


def test_raise_site_can_override_the_code_without_touching_the_class() -> None:
    error = CapsuleError("limit shrank", http3_code=WT_FLOW_CONTROL_ERROR)
    assert error.http3_code == WT_FLOW_CONTROL_ERROR
    assert str(error) == "limit shrank"
    assert CapsuleError.http3_code == H3_MESSAGE_ERROR
