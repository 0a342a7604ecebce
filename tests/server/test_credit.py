"""Credit on the server follows what the app consumed: bytes, streams and WebTransport's own.

A peer that sends faster than the app reads must find the server's buffers bounded by
QUIC's windows and stream credit, lose nothing, and get new credit (including the
WT_MAX_DATA / WT_MAX_STREAMS capsules of draft-07+) exactly as the app reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aioquic.h3.connection import H3Connection

from starlette_webtransport.protocol.capsules import CapsuleParser, MaxData, MaxStreams
from starlette_webtransport.protocol.settings import (
    SETTINGS_WT_ENABLED,
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
    FlowControlLimits,
)
from starlette_webtransport.server import h3 as server_h3
from starlette_webtransport.server.serve import ServerState
from starlette_webtransport.transport import CONNECTION_WINDOW, MAX_STREAMS, SessionChannel

from .conftest import ScriptedApp
from .rawclient import RawPeer, raw_peer


def only_session(server: ServerState) -> SessionChannel:
    (session,) = server.sessions
    assert isinstance(session, SessionChannel)
    return session


def queued(session: SessionChannel) -> list[dict[str, Any]]:
    return [m for m in session.events or () if m["type"] == "webtransport.stream.receive"]


async def test_finished_unread_streams_stay_counted_until_the_app_reads(
    app: ScriptedApp, server: ServerState
) -> None:
    """Streams that end before the app reads them keep holding connection credit (the
    window must not slide at their FIN), and the count never goes negative."""
    count, size = 80, 64 * 1024  # 5 MiB in all: more than the connection window
    payloads = [bytes([i]) * size for i in range(count)]
    release = asyncio.Event()
    all_read = asyncio.Event()
    unconsumed: list[int] = []
    received: dict[int, bytearray] = {}

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        await release.wait()
        session = only_session(server)
        finished = 0
        while finished < count:
            message = await receive()
            assert message["type"] == "webtransport.stream.receive", message
            received.setdefault(message["stream"], bytearray()).extend(message["data"])
            finished += message["end_stream"]
            unconsumed.append(session.quic.unconsumed_total)
        all_read.set()
        await receive()

    app.handlers["/finished"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/finished")
        session = only_session(server)
        streams = []
        for payload in payloads:  # one after the other, so that each finishes in turn
            stream = peer.open_stream(unidirectional=True)
            peer.send(stream, payload, end_stream=True)
            streams.append(stream)
            expected = min(len(streams) * size, CONNECTION_WINDOW)
            if expected < CONNECTION_WINDOW:
                await peer.wait_for(lambda n=expected: session.quic.unconsumed_total >= n)
        await asyncio.sleep(0.3)  # a server that let the window slide would take it all now
        events = queued(session)
        held = sum(len(m["data"]) for m in events)
        assert sum(m["end_stream"] for m in events) >= 60  # many finished, none read
        assert held == session.quic.unconsumed_total <= CONNECTION_WINDOW
        assert held < count * size  # so the peer is waiting for credit
        release.set()
        await asyncio.wait_for(all_read.wait(), 20)
        assert min(unconsumed) >= 0
        assert max(unconsumed) <= CONNECTION_WINDOW
        assert session.quic.unconsumed_total == 0
    assert [received[stream] for stream in streams] == payloads


async def test_app_exit_releases_what_it_left_unread(app: ScriptedApp, server: ServerState) -> None:
    """A session that ends with data still queued gives its credit back to the
    connection, so the connection's other sessions keep their window."""
    done = asyncio.Event()

    async def leave_unread(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "webtransport.accept"})
        await done.wait()

    app.handlers["/unread"] = leave_unread
    async with raw_peer(server.port) as peer:
        await peer.open_session("/unread")
        stream = peer.open_stream(unidirectional=True)
        peer.send(stream, bytes(200_000), end_stream=True)
        session = only_session(server)
        await peer.wait_for(lambda: session.quic.unconsumed_total == 200_000)
        quic = session.quic
        done.set()
        await peer.wait_for(lambda: not server.sessions)
        assert quic.unconsumed_total == 0
        assert quic.unconsumed == {}


async def test_peer_streams_wait_for_the_app_instead_of_being_refused(
    app: ScriptedApp, server: ServerState
) -> None:
    """Stream credit comes back when the app took a stream's last event, not when the
    stream finished arriving: a peer opening many small streams while the app reads
    nothing can make the server hold at most the initial credit, and none is lost."""
    count = 300
    release = asyncio.Event()
    received: dict[int, bytes] = {}

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        await release.wait()
        parts: dict[int, bytes] = {}
        while len(received) < count:
            message = await receive()
            assert message["type"] == "webtransport.stream.receive", message
            # A tiny stream's data and its FIN may arrive as one event or as two.
            stream = message["stream"]
            parts[stream] = parts.get(stream, b"") + message["data"]
            if message["end_stream"]:
                received[stream] = parts.pop(stream)
        await receive()

    app.handlers["/many"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/many")
        streams = [peer.open_stream(unidirectional=True) for _ in range(count)]
        for i, stream in enumerate(streams):
            peer.send(stream, b"%d" % i, end_stream=True)
        session = only_session(server)
        await peer.wait_for(lambda: len(queued(session)) >= 100)
        await asyncio.sleep(0.5)  # time for credit that must not come
        assert len(queued(session)) <= MAX_STREAMS
        assert peer._quic._remote_max_streams_uni == MAX_STREAMS
        assert peer._quic._streams_blocked_uni  # the rest wait for credit
        release.set()
        await peer.wait_for(lambda: len(received) == count, timeout=20)
        assert peer.stops == {} and peer.resets == {}  # none refused
    assert [received[stream] for stream in streams] == [b"%d" % i for i in range(count)]


PEER_CREDIT = {
    SETTINGS_WT_INITIAL_MAX_DATA: 16 * 1024 * 1024,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI: 100,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI: 100,
}
"""The credit a draft-15 peer offers, without which the session has no flow control."""


class Draft15H3(H3Connection):
    def _get_local_settings(self) -> dict[int, int]:
        return {**super()._get_local_settings(), SETTINGS_WT_ENABLED: 1, **PEER_CREDIT}


class Draft15Peer(RawPeer):
    """A draft-15 client that keeps to the WebTransport credit it was given."""

    h3_class = Draft15H3

    def capsules(self) -> list[Any]:
        return CapsuleParser().feed(bytes(self.connect_data))

    def granted(self, initial: FlowControlLimits) -> tuple[int, int, int]:
        """The (data, bidirectional, unidirectional) credit granted so far."""
        data, bidi, uni = initial.max_data, initial.max_streams_bidi, initial.max_streams_uni
        for capsule in self.capsules():
            if isinstance(capsule, MaxData):
                data = capsule.maximum
            elif isinstance(capsule, MaxStreams) and capsule.bidirectional:
                bidi = capsule.maximum
            elif isinstance(capsule, MaxStreams):
                uni = capsule.maximum
        return data, bidi, uni


async def test_webtransport_credit_is_renewed_as_the_app_reads(
    app: ScriptedApp, server: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = FlowControlLimits(max_data=64 * 1024, max_streams_bidi=4, max_streams_uni=4)
    monkeypatch.setattr(server_h3, "WT_CREDIT", small)
    uni_count, bidi_count, size = 12, 8, 16 * 1024
    drafts: list[str] = []
    received: dict[int, bytearray] = {}

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        drafts.append(scope["extensions"]["webtransport"]["draft"])
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                return
            stream = message["stream"]
            received.setdefault(stream, bytearray()).extend(message["data"])
            if message["end_stream"] and not stream & 0x2:
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "stream": stream,
                        "data": b"ok",
                        "end_stream": True,
                    }
                )

    app.handlers["/credit"] = handler
    async with raw_peer(server.port, peer_class=Draft15Peer) as peer:
        assert isinstance(peer, Draft15Peer)
        await peer.open_session("/credit")
        settings = peer.h3.received_settings
        assert settings is not None
        assert settings[SETTINGS_WT_INITIAL_MAX_DATA] == small.max_data
        assert settings[SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI] == 4
        assert settings[SETTINGS_WT_INITIAL_MAX_STREAMS_UNI] == 4
        uni: list[int] = []
        bidi: list[int] = []
        sent = 0
        while len(uni) < uni_count or len(bidi) < bidi_count:
            data, bidi_limit, uni_limit = peer.granted(small)
            progressed = False
            while len(uni) < min(uni_count, uni_limit) and sent + size <= data:
                stream = peer.open_stream(unidirectional=True)
                peer.send(stream, bytes([len(uni)]) * size, end_stream=True)
                uni.append(stream)
                sent += size
                progressed = True
            while len(bidi) < min(bidi_count, bidi_limit) and sent + 1 <= data:
                stream = peer.open_stream()
                peer.send(stream, b"b", end_stream=True)
                bidi.append(stream)
                sent += 1
                progressed = True
            if not progressed:  # everything granted is used: only the app's reading helps
                await peer.wait_for(
                    lambda g=(data, bidi_limit, uni_limit): peer.granted(small) != g
                )
        for stream in bidi:
            assert await peer.read_stream(stream) == b"ok"
        await peer.wait_for(lambda: sum(map(len, received.values())) == sent)
    assert drafts == ["draft15"]
    assert [bytes(received[stream]) for stream in uni] == [
        bytes([i]) * size for i in range(uni_count)
    ]
    assert all(received[stream] == b"b" for stream in bidi)
    grants = peer.capsules()
    data_grants = [c.maximum for c in grants if isinstance(c, MaxData)]
    assert data_grants == sorted(data_grants) and data_grants[-1] >= sent
    assert (
        max(c.maximum for c in grants if isinstance(c, MaxStreams) and c.bidirectional)
        >= bidi_count
    )
    assert (
        max(c.maximum for c in grants if isinstance(c, MaxStreams) and not c.bidirectional)
        >= uni_count
    )
