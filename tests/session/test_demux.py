"""The session's demultiplexer of received messages, without I/O: messages in, effects out.

Each rule the session's reader applies to what the server hands it (new peer streams,
refusals, late data, replies to opens, contract violations) is checked with plain dicts
and values, as ``tests/protocol`` checks the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette_webtransport.session.demux import (
    Data,
    Datagram,
    Demux,
    Disconnect,
    Drain,
    NewStream,
    Opened,
    OpenFailed,
    PeerReset,
    PeerStopped,
    Refuse,
    Violation,
)
from starlette_webtransport.session.state import Side


@dataclass
class Sides:
    receive_side: Side | None
    send_side: Side | None


def data(stream: int, payload: bytes = b"x", end: bool = False) -> dict[str, Any]:
    return {
        "type": "webtransport.stream.receive",
        "stream": stream,
        "data": payload,
        "end_stream": end,
    }


def server() -> Demux:
    return Demux(local_bit=1)


NONE: dict[int, Sides] = {}


def test_a_new_peer_stream_is_admitted_then_fed() -> None:
    demux = server()
    assert demux.receive(data(0, b"hi"), streams=NONE, admit=True, oldest_open=None) == [
        NewStream(0, bidirectional=True),
        Data(0, b"hi", False),
    ]
    assert demux.receive(data(2, b"", True), streams=NONE, admit=True, oldest_open=None) == [
        NewStream(2, bidirectional=False),
        Data(2, b"", True),
    ]


def test_a_peer_stream_over_the_limits_is_refused_and_its_late_data_ignored() -> None:
    demux = server()
    assert demux.receive(data(4), streams=NONE, admit=False, oldest_open=None) == [
        Refuse(4, bidirectional=True)
    ]
    assert demux.receive(data(4), streams=NONE, admit=True, oldest_open=None) == []


def test_data_for_known_streams_follows_their_receiving_side() -> None:
    demux = server()
    streams = {
        0: Sides(Side.OPEN, Side.OPEN),
        5: Sides(None, Side.OPEN),  # our unidirectional stream
        8: Sides(Side.STOPPED, Side.OPEN),
        12: Sides(Side.FINISHED, Side.OPEN),
    }
    assert demux.receive(data(0), streams=streams, admit=False, oldest_open=None) == [
        Data(0, b"x", False)
    ]
    assert demux.receive(data(8), streams=streams, admit=True, oldest_open=None) == []
    (send_only,) = demux.receive(data(5), streams=streams, admit=True, oldest_open=None)
    assert isinstance(send_only, Violation) and "send-only" in send_only.text
    (after_fin,) = demux.receive(data(12), streams=streams, admit=True, oldest_open=None)
    assert isinstance(after_fin, Violation) and "after its finished" in after_fin.text
    (ours,) = demux.receive(data(9), streams=NONE, admit=True, oldest_open=None)
    assert isinstance(ours, Violation) and "never opened" in ours.text


def test_retired_ids_are_remembered_within_the_memory() -> None:
    demux = Demux(local_bit=1, memory=2)
    for stream_id in (0, 4, 8):
        demux.retire(stream_id)
    assert demux.receive(data(8), streams=NONE, admit=True, oldest_open=None) == []
    assert demux.receive(data(0), streams=NONE, admit=True, oldest_open=None) == [
        NewStream(0, bidirectional=True),
        Data(0, b"x", False),
    ]  # forgotten: the oldest went first


def test_replies_to_opens_must_match_the_oldest_open() -> None:
    demux = server()

    def opened(stream: int, bidirectional: bool, oldest: bool | None) -> list[Any]:
        message = {
            "type": "webtransport.stream.opened",
            "stream": stream,
            "bidirectional": bidirectional,
        }
        return demux.receive(message, streams=NONE, admit=True, oldest_open=oldest)

    assert opened(1, True, True) == [Opened(1, True)]
    assert opened(3, False, False) == [Opened(3, False)]
    (unasked,) = opened(1, True, None)
    assert isinstance(unasked, Violation) and "without a pending open" in unasked.text
    for stream, bidirectional, oldest in ((3, False, True), (0, True, True), (1, False, False)):
        violation, failed = opened(stream, bidirectional, oldest)
        assert isinstance(violation, Violation) and failed == OpenFailed(stream)


def test_resets_and_stops() -> None:
    demux = server()
    streams = {
        0: Sides(Side.OPEN, Side.OPEN),
        2: Sides(Side.FINISHED, None),
        5: Sides(None, Side.OPEN),
    }

    def signal(kind: str, stream: int) -> list[Any]:
        message = {"type": f"webtransport.stream.{kind}", "stream": stream, "code": 7}
        return demux.receive(message, streams=streams, admit=True, oldest_open=None)

    assert signal("reset", 0) == [PeerReset(0, 7)]
    assert signal("reset", 2) == []  # already finished: nothing more to tell
    assert signal("reset", 40) == []  # unknown: ended or never announced
    (bad_reset,) = signal("reset", 5)
    assert isinstance(bad_reset, Violation)
    assert signal("stop_sending", 0) == [PeerStopped(0, 7)]
    assert signal("stop_sending", 5) == [PeerStopped(5, 7)]
    assert signal("stop_sending", 40) == []
    (bad_stop,) = signal("stop_sending", 2)
    assert isinstance(bad_stop, Violation)


def test_session_level_messages() -> None:
    demux = server()

    def effects(message: dict[str, Any]) -> list[Any]:
        return demux.receive(message, streams=NONE, admit=True, oldest_open=None)

    assert effects({"type": "webtransport.datagram.receive", "data": b"d"}) == [Datagram(b"d")]
    assert effects({"type": "webtransport.drain"}) == [Drain()]
    assert effects({"type": "webtransport.disconnect", "code": 3, "reason": "r"}) == [
        Disconnect(3, "r", None)
    ]
    assert effects(
        {"type": "webtransport.disconnect", "code": 0, "reason": "", "cause": "timeout"}
    ) == [Disconnect(0, "", "timeout")]
    (unknown,) = effects({"type": "webtransport.nonsense"})
    assert isinstance(unknown, Violation) and "nonsense" in unknown.text
