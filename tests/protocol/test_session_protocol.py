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
    CloseSession,
    DataBlocked,
    DatagramCapsule,
    DatagramCapsuleReceived,
    DrainSession,
    FlowControlReceived,
    InvalidStateError,
    MaxData,
    MaxStreams,
    ProtocolError,
    SessionClosed,
    SessionDraining,
    SessionEvent,
    SessionProtocol,
    SessionState,
    StreamsBlocked,
    UnknownCapsule,
    encode_capsule,
    encode_varint,
)


def connected() -> SessionProtocol:
    session = SessionProtocol()
    session.accept()
    return session


def wire(*capsules: Capsule) -> bytes:
    return b"".join(encode_capsule(capsule) for capsule in capsules)


def decode(data: bytes) -> list[Capsule]:
    parser = CapsuleParser()
    capsules = parser.feed(data)
    parser.close()
    return capsules


# --- lifecycle ------------------------------------------------------------------------


def test_state_values() -> None:
    assert [state.value for state in SessionState] == [
        "connecting",
        "connected",
        "draining",
        "closing",
        "closed",
    ]


def test_accept_and_reject() -> None:
    session = SessionProtocol()
    assert session.state == "connecting"  # a str comparison keeps mypy from narrowing
    session.accept()
    assert session.state is SessionState.CONNECTED

    rejected = SessionProtocol()
    rejected.reject()
    assert rejected.state is SessionState.CLOSED
    assert rejected.connection_lost() is None


@pytest.mark.parametrize("action", ["accept", "reject"])
def test_accept_and_reject_only_while_connecting(action: str) -> None:
    session = connected()
    with pytest.raises(
        InvalidStateError, match=rf"{action}\(\) is not allowed in state 'connected'"
    ):
        getattr(session, action)()


def test_local_close_returns_the_capsule_and_closes() -> None:
    session = connected()
    data = session.close(42, "done")
    assert decode(data) == [CloseSession(42, "done")]
    assert session.state is SessionState.CLOSED
    assert session.capsules_sent == 1
    assert session.connection_lost() is None


def test_close_defaults_to_code_zero_and_empty_reason() -> None:
    assert decode(connected().close()) == [CloseSession(0, "")]


def test_close_validates_before_changing_state() -> None:
    session = connected()
    with pytest.raises(ValueError, match="1025 UTF-8 bytes"):
        session.close(1, "x" * 1025)
    with pytest.raises(ValueError, match=r"code must be 0\.\.4294967295"):
        session.close(2**32)
    assert session.state is SessionState.CONNECTED
    assert session.capsules_sent == 0


def test_close_is_not_possible_before_accept_or_twice() -> None:
    with pytest.raises(InvalidStateError, match="'connecting'"):
        SessionProtocol().close()
    session = connected()
    session.close()
    with pytest.raises(InvalidStateError, match=r"close\(\) is not allowed in state 'closed'"):
        session.close()


def test_drain_then_close() -> None:
    session = connected()
    assert decode(session.drain()) == [DrainSession()]
    assert session.state is SessionState.DRAINING
    with pytest.raises(InvalidStateError, match="already called"):
        session.drain()
    assert decode(session.close(3)) == [CloseSession(3, "")]
    assert session.capsules_sent == 2


def test_drain_needs_an_open_session() -> None:
    with pytest.raises(InvalidStateError, match=r"drain\(\) is not allowed in state 'connecting'"):
        SessionProtocol().drain()
    session = connected()
    session.close()
    with pytest.raises(InvalidStateError, match="'closed'"):
        session.drain()


def test_send_capsule_for_flow_control() -> None:
    session = connected()
    data = session.send_capsule(MaxData(1 << 20)) + session.send_capsule(MaxStreams(False, 10))
    assert decode(data) == [MaxData(1 << 20), MaxStreams(False, 10)]
    assert session.capsules_sent == 2


@pytest.mark.parametrize("capsule", [CloseSession(0, ""), DrainSession()])
def test_send_capsule_refuses_state_changing_capsules(capsule: Capsule) -> None:
    with pytest.raises(ValueError, match=r"use close\(\) or drain\(\)"):
        connected().send_capsule(capsule)


def test_send_capsule_needs_an_open_session() -> None:
    with pytest.raises(InvalidStateError, match=r"send_capsule\(\) is not allowed"):
        SessionProtocol().send_capsule(MaxData(1))


# --- receiving ------------------------------------------------------------------------


def test_peer_close_capsule_then_fin() -> None:
    session = connected()
    assert session.receive_data(wire(CloseSession(7, "bye"))) == [SessionClosed(7, "bye")]
    assert session.state is SessionState.CLOSED
    assert session.receive_data(b"", end_stream=True) == []
    assert session.connection_lost() is None
    assert session.capsules_received == 1


def test_peer_close_capsule_with_fin_in_one_call() -> None:
    session = connected()
    events = session.receive_data(wire(MaxData(5), CloseSession(1, "x")), end_stream=True)
    assert events == [FlowControlReceived(MaxData(5)), SessionClosed(1, "x")]


def test_bare_fin_is_a_clean_close() -> None:
    session = connected()
    assert session.receive_data(b"", end_stream=True) == [SessionClosed(0, "")]
    assert session.state is SessionState.CLOSED


def test_fin_inside_a_capsule_is_an_error() -> None:
    session = connected()
    with pytest.raises(CapsuleError, match="stream ended inside a WT_CLOSE_SESSION") as info:
        session.receive_data(wire(CloseSession(1, "abc"))[:-1], end_stream=True)
    assert info.value.http3_code == H3_MESSAGE_ERROR
    assert session.connection_lost() == SessionClosed(0, "")


def test_data_after_the_close_capsule_in_the_same_call() -> None:
    session = connected()
    with pytest.raises(CapsuleError, match="a capsule followed WT_CLOSE_SESSION"):
        session.receive_data(wire(CloseSession(1, ""), DrainSession()))


def test_partial_capsule_after_the_close_capsule() -> None:
    session = connected()
    with pytest.raises(CapsuleError, match="2 bytes followed WT_CLOSE_SESSION"):
        session.receive_data(wire(CloseSession(1, "")) + b"\x80\x00")


def test_data_after_the_close_capsule_in_a_later_call() -> None:
    session = connected()
    session.receive_data(wire(CloseSession(1, "")))
    with pytest.raises(CapsuleError, match="3 bytes followed WT_CLOSE_SESSION") as info:
        session.receive_data(b"abc")
    assert info.value.http3_code == H3_MESSAGE_ERROR


def test_data_after_fin_is_a_state_error() -> None:
    session = connected()
    session.receive_data(b"", end_stream=True)
    with pytest.raises(InvalidStateError, match="after its FIN"):
        session.receive_data(b"")


def test_peer_drain() -> None:
    session = connected()
    assert session.receive_data(wire(DrainSession())) == [SessionDraining()]
    assert session.state is SessionState.DRAINING
    # A repeated drain says nothing new.
    assert session.receive_data(wire(DrainSession())) == []
    # We may still drain and close from our side.
    assert decode(session.drain()) == [DrainSession()]
    assert decode(session.close()) == [CloseSession(0, "")]


def test_datagram_flow_control_and_unknown_capsules() -> None:
    session = connected()
    events = session.receive_data(
        wire(
            DatagramCapsule(b"dgram"),
            UnknownCapsule(0x17, b"grease"),
            MaxData(100),
            MaxStreams(True, 4),
            MaxStreams(False, 2),
            DataBlocked(100),
            StreamsBlocked(True, 4),
            StreamsBlocked(False, 2),
        )
    )
    assert events == [
        DatagramCapsuleReceived(b"dgram"),
        FlowControlReceived(MaxData(100)),
        FlowControlReceived(MaxStreams(True, 4)),
        FlowControlReceived(MaxStreams(False, 2)),
        FlowControlReceived(DataBlocked(100)),
        FlowControlReceived(StreamsBlocked(True, 4)),
        FlowControlReceived(StreamsBlocked(False, 2)),
    ]
    assert session.capsules_received == 8
    assert session.state is SessionState.CONNECTED


def test_capsules_split_across_calls() -> None:
    session = connected()
    data = wire(DatagramCapsule(b"a" * 50), CloseSession(9, "end"))
    assert session.receive_data(data[:30]) == []
    assert session.receive_data(data[30:60]) == [DatagramCapsuleReceived(b"a" * 50)]
    assert session.receive_data(data[60:], end_stream=True) == [SessionClosed(9, "end")]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (MaxData(10), MaxData(10), "WT_MAX_DATA must increase the previous limit 10, got 10"),
        (MaxData(10), MaxData(9), "WT_MAX_DATA must increase the previous limit 10, got 9"),
        (
            MaxStreams(True, 3),
            MaxStreams(True, 2),
            "WT_MAX_STREAMS (bidirectional) must increase the previous limit 3, got 2",
        ),
        (
            MaxStreams(False, 3),
            MaxStreams(False, 3),
            "WT_MAX_STREAMS (unidirectional) must increase",
        ),
    ],
)
def test_flow_control_limits_must_increase(first: Capsule, second: Capsule, message: str) -> None:
    session = connected()
    session.receive_data(wire(first))
    with pytest.raises(CapsuleError) as info:
        session.receive_data(wire(second))
    assert message in str(info.value)
    assert info.value.http3_code == WT_FLOW_CONTROL_ERROR


def test_stream_limits_per_direction_are_independent() -> None:
    session = connected()
    events = session.receive_data(
        wire(MaxStreams(True, 5), MaxStreams(False, 1), MaxStreams(False, 2), MaxData(0))
    )
    assert len(events) == 4


def test_malformed_capsule_error_reaches_the_caller() -> None:
    session = connected()
    with pytest.raises(CapsuleError, match="WT_MAX_STREAM_DATA capsule"):
        session.receive_data(encode_varint(0x190B4D3E) + b"\x00")
    # The caller resets the CONNECT stream, then reports the close.
    assert session.connection_lost() == SessionClosed(0, "")
    assert session.state is SessionState.CLOSED
    assert session.receive_data(b"anything") == []


def test_max_capsule_size_is_applied() -> None:
    session = SessionProtocol(max_capsule_size=2048)
    session.accept()
    with pytest.raises(CapsuleError) as info:
        session.receive_data(encode_varint(0) + encode_varint(4096))
    assert info.value.http3_code == H3_EXCESSIVE_LOAD


def test_data_after_local_close_is_ignored() -> None:
    session = connected()
    session.close()
    # The peer's in-flight capsules and its own close no longer matter.
    assert session.receive_data(wire(MaxData(1), CloseSession(5, "late"))) == []
    assert session.receive_data(b"garbage", end_stream=True) == []
    assert session.capsules_received == 0


def test_capsules_before_accept_are_processed() -> None:
    # A client may send capsules right behind its CONNECT, before our 2xx is out.
    session = SessionProtocol()
    assert session.receive_data(wire(MaxData(10))) == [FlowControlReceived(MaxData(10))]
    assert session.state == "connecting"  # a str comparison keeps mypy from narrowing
    session.accept()
    assert session.state is SessionState.CONNECTED


def test_drain_before_accept_takes_effect_on_accept() -> None:
    session = SessionProtocol()
    assert session.receive_data(wire(DrainSession())) == [SessionDraining()]
    assert session.state == "connecting"  # a str comparison keeps mypy from narrowing
    session.accept()
    assert session.state is SessionState.DRAINING


def test_close_before_accept() -> None:
    session = SessionProtocol()
    assert session.receive_data(wire(CloseSession(2, ""))) == [SessionClosed(2, "")]
    with pytest.raises(InvalidStateError, match="'closed'"):
        session.accept()


def test_connection_lost() -> None:
    for session in (SessionProtocol(), connected()):
        assert session.connection_lost() == SessionClosed(0, "")
        assert session.state is SessionState.CLOSED
        assert session.connection_lost() is None


def test_connection_lost_after_peer_close_reports_nothing_more() -> None:
    session = connected()
    session.receive_data(wire(CloseSession(1, "")))
    assert session.connection_lost() is None


# --- properties -----------------------------------------------------------------------

NON_CLOSING: st.SearchStrategy[Capsule] = st.one_of(
    st.builds(DatagramCapsule, st.binary(max_size=40)),
    st.builds(DataBlocked, st.integers(0, 2**62 - 1)),
    st.builds(StreamsBlocked, st.booleans(), st.integers(0, 2**60)),
    st.builds(
        UnknownCapsule, st.sampled_from([0x17, 0x40, 0x29 * 5 + 0x17]), st.binary(max_size=40)
    ),
    st.just(DrainSession()),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(NON_CLOSING, max_size=6),
    st.one_of(st.none(), st.builds(CloseSession, st.integers(0, 2**32 - 1), st.text(max_size=20))),
    st.data(),
)
def test_any_split_gives_the_same_events(
    capsules: list[Capsule], close: CloseSession | None, data: st.DataObject
) -> None:
    stream = wire(*capsules, *([close] if close else []))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    session = connected()
    events: list[SessionEvent] = []
    start = 0
    for cut in cuts:
        events += session.receive_data(stream[start:cut])
        start = cut
    events += session.receive_data(stream[start:], end_stream=True)

    assert events[-1] == (
        SessionClosed(close.code, close.reason) if close else SessionClosed(0, "")
    )
    assert sum(isinstance(event, SessionClosed) for event in events) == 1
    datagrams = [c.payload for c in capsules if isinstance(c, DatagramCapsule)]
    assert [e.payload for e in events if isinstance(e, DatagramCapsuleReceived)] == datagrams
    drained = any(isinstance(c, DrainSession) for c in capsules)
    assert events.count(SessionDraining()) == int(drained)
    assert session.state is SessionState.CLOSED
    assert session.capsules_received == len(capsules) + (close is not None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=5), st.booleans())
def test_fuzzed_connect_stream_only_raises_protocol_errors(
    chunks: list[bytes], end_stream: bool
) -> None:
    session = connected()
    try:
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            session.receive_data(chunk, end_stream=end_stream and last)
    except ProtocolError as exc:
        assert str(exc)
        session.connection_lost()
        assert session.state is SessionState.CLOSED
        return
    if end_stream and chunks:
        assert session.state is SessionState.CLOSED
