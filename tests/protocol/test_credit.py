"""WebTransport credit arithmetic in both directions, without a network."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlette_webtransport.protocol import (
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
    WT_FLOW_CONTROL_ERROR,
    DataBlocked,
    Draft,
    FlowControlLimits,
    MaxData,
    MaxStreams,
    StreamsBlocked,
)
from starlette_webtransport.protocol.credit import (
    FlowControlError,
    LocalCredit,
    PeerCredit,
    flow_control_negotiated,
)
from starlette_webtransport.protocol.ids import is_unidirectional

SMALL = FlowControlLimits(max_data=100, max_streams_bidi=4, max_streams_uni=2)


# --- our grants to the peer ------------------------------------------------------------


def test_data_credit_slides_once_half_the_window_is_consumed() -> None:
    credit = LocalCredit(SMALL)
    credit.receive_data(100)
    assert credit.consume_data(49) is None
    assert credit.consume_data(1) == MaxData(150)
    assert credit.data_granted == 150
    credit.receive_data(50)
    assert credit.consume_data(49) is None
    assert credit.consume_data(1) == MaxData(200)


def test_stream_credit_slides_once_half_the_streams_are_retired() -> None:
    credit = LocalCredit(SMALL)
    for _ in range(4):
        credit.open_stream(unidirectional=False)
    assert credit.retire_stream(unidirectional=False) is None
    assert credit.retire_stream(unidirectional=False) == MaxStreams(True, 6)
    credit.open_stream(unidirectional=True)
    assert credit.retire_stream(unidirectional=True) == MaxStreams(False, 3)


def test_a_peer_over_the_data_it_was_granted_is_a_flow_control_error() -> None:
    credit = LocalCredit(SMALL)
    credit.receive_data(100)
    with pytest.raises(FlowControlError) as caught:
        credit.receive_data(1)
    assert caught.value.http3_code == WT_FLOW_CONTROL_ERROR
    assert "101" in str(caught.value) and "100" in str(caught.value)


def test_a_peer_over_its_streams_is_a_flow_control_error_per_direction() -> None:
    credit = LocalCredit(SMALL)
    credit.open_stream(unidirectional=True)
    credit.open_stream(unidirectional=True)
    for _ in range(4):
        credit.open_stream(unidirectional=False)  # the other direction has its own count
    with pytest.raises(FlowControlError, match="3 unidirectional streams"):
        credit.open_stream(unidirectional=True)


def test_renewed_credit_admits_what_the_first_window_did_not() -> None:
    credit = LocalCredit(SMALL)
    credit.receive_data(100)
    credit.consume_data(100)
    credit.receive_data(100)  # within the renewed grant of 200
    with pytest.raises(FlowControlError):
        credit.receive_data(1)


def test_zero_windows_admit_nothing() -> None:
    credit = LocalCredit(FlowControlLimits(max_data=0, max_streams_bidi=0, max_streams_uni=0))
    with pytest.raises(FlowControlError):
        credit.open_stream(unidirectional=False)
    with pytest.raises(FlowControlError):
        credit.receive_data(1)


def test_draft02_peers_are_neither_checked_nor_renewed() -> None:
    credit = LocalCredit(SMALL, enabled=False)
    credit.receive_data(10_000)
    for _ in range(10):
        credit.open_stream(unidirectional=True)
    assert credit.consume_data(10_000) is None
    assert credit.retire_stream(unidirectional=True) is None


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=200))
def test_a_peer_keeping_to_its_grants_never_errs_and_never_has_more_than_a_window_unread(
    chunks: list[int],
) -> None:
    """The peer sends whatever it may; we consume each chunk as it arrives."""
    credit = LocalCredit(SMALL)
    granted = credit.data_granted
    for chunk in chunks:
        size = min(chunk, granted - credit.data_received)
        credit.receive_data(size)
        assert credit.data_received - credit.data_consumed <= SMALL.max_data
        capsule = credit.consume_data(size)
        if capsule is not None:
            assert capsule.maximum > granted
            granted = capsule.maximum
        assert granted - credit.data_consumed > SMALL.max_data // 2 - 1


# --- the peer's grants to us -----------------------------------------------------------


def settings(data: int, bidi: int, uni: int) -> dict[int, int]:
    return {
        SETTINGS_WT_INITIAL_MAX_DATA: data,
        SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI: bidi,
        SETTINGS_WT_INITIAL_MAX_STREAMS_UNI: uni,
    }


def test_initial_peer_credit_comes_from_its_settings() -> None:
    credit = PeerCredit.from_settings(settings(1000, 1, 2))
    assert credit.limited
    assert credit.sendable(5000) == 1000
    assert credit.may_open(unidirectional=True)
    credit.open_stream(unidirectional=True)
    credit.open_stream(unidirectional=True)
    assert not credit.may_open(unidirectional=True)
    assert credit.may_open(unidirectional=False)


def test_settings_left_out_grant_nothing() -> None:
    partial = PeerCredit.from_settings({SETTINGS_WT_INITIAL_MAX_DATA: 10})
    assert not partial.may_open(unidirectional=False)
    assert not partial.may_open(unidirectional=True)
    assert partial.sendable(20) == 10


def test_flow_control_needs_credit_offered_by_both_ends_of_a_draft07_session() -> None:
    ours = FlowControlLimits()
    assert flow_control_negotiated(Draft.DRAFT15, ours, settings(0, 0, 1))
    assert flow_control_negotiated(Draft.DRAFT07, ours, settings(5, 0, 0))
    assert not flow_control_negotiated(Draft.DRAFT15, ours, {})
    assert not flow_control_negotiated(Draft.DRAFT15, ours, settings(0, 0, 0))
    assert not flow_control_negotiated(Draft.DRAFT02, ours, settings(5, 5, 5))
    none = FlowControlLimits(max_data=0, max_streams_bidi=0, max_streams_uni=0)
    assert not flow_control_negotiated(Draft.DRAFT15, none, settings(5, 5, 5))


def test_without_flow_control_the_peer_grants_are_unlimited() -> None:
    unlimited = PeerCredit.from_settings(settings(0, 0, 0), enabled=False)
    assert not unlimited.limited
    assert unlimited.sendable(10**12) == 10**12
    unlimited.open_stream(unidirectional=True)
    assert unlimited.data_blocked() is None
    assert unlimited.streams_blocked(unidirectional=True) is None


def test_without_flow_control_grants_change_nothing() -> None:
    credit = PeerCredit.from_settings(settings(0, 0, 0), enabled=False)
    assert credit.sendable(100) == 100
    assert credit.may_open(unidirectional=False)
    assert not credit.grant(MaxData(5))
    assert credit.sendable(100) == 100


def test_data_blocked_is_said_once_per_limit_and_grants_lift_it() -> None:
    credit = PeerCredit.from_settings(settings(10, 0, 0))
    assert credit.data_blocked() is None  # not blocked yet
    credit.send_data(credit.sendable(25))
    assert credit.sendable(15) == 0
    assert credit.data_blocked() == DataBlocked(10)
    assert credit.data_blocked() is None
    assert credit.grant(MaxData(30))
    assert credit.sendable(15) == 15
    credit.send_data(20)
    assert credit.data_blocked() == DataBlocked(30)


def test_streams_blocked_is_said_once_per_limit_and_direction() -> None:
    credit = PeerCredit.from_settings(settings(0, 1, 0))
    assert credit.streams_blocked(unidirectional=True) == StreamsBlocked(False, 0)
    assert credit.streams_blocked(unidirectional=True) is None
    assert credit.streams_blocked(unidirectional=False) is None  # one left
    credit.open_stream(unidirectional=False)
    assert credit.streams_blocked(unidirectional=False) == StreamsBlocked(True, 1)
    assert credit.grant(MaxStreams(False, 3))
    credit.open_stream(unidirectional=True)
    assert credit.may_open(unidirectional=True)


def test_grants_never_shrink_credit() -> None:
    credit = PeerCredit.from_settings(settings(100, 5, 5))
    assert not credit.grant(MaxData(50))  # below the initial SETTINGS
    assert not credit.grant(MaxStreams(True, 5))
    assert credit.sendable(1000) == 100
    assert (credit.max_streams_bidi, credit.max_streams_uni) == (5, 5)


def test_sending_or_opening_beyond_credit_is_a_caller_bug() -> None:
    credit = PeerCredit.from_settings(settings(3, 0, 0))
    with pytest.raises(ValueError, match="WT_MAX_DATA"):
        credit.send_data(4)
    with pytest.raises(ValueError, match="WT_MAX_STREAMS"):
        credit.open_stream(unidirectional=False)


def test_stream_id_bits() -> None:
    assert [is_unidirectional(i) for i in (0, 1, 2, 3)] == [False, False, True, True]
