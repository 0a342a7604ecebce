"""WebTransport credit in both directions over real QUIC, with the project's own client.

Both ends now enforce the credit they grant, so a sender that overran the other's credit
would lose its session with WT_FLOW_CONTROL_ERROR: every byte arriving is the proof that
the sender waited. Peers over our credit, and CONNECTs over WT_MAX_SESSIONS, are refused
with the codes the draft names.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from starlette_webtransport.client import connect
from starlette_webtransport.protocol.capsules import CapsuleParser, DataBlocked, StreamsBlocked
from starlette_webtransport.protocol.errors import (
    H3_REQUEST_REJECTED,
    WT_FLOW_CONTROL_ERROR,
    app_to_http3,
)
from starlette_webtransport.protocol.settings import FlowControlLimits
from starlette_webtransport.protocol.state import SessionProtocol
from starlette_webtransport.server import h3 as server_h3
from starlette_webtransport.server.serve import ServerState

from .conftest import ScriptedApp
from .rawclient import raw_peer
from .test_credit import Draft15Peer, only_session

SMALL = FlowControlLimits(max_data=64 * 1024, max_streams_bidi=2, max_streams_uni=2)
STREAMS, SIZE = 10, 32 * 1024
"""Five times the stream credit and five times the data credit."""


def url(server: ServerState, path: str) -> str:
    return f"https://127.0.0.1:{server.port}{path}"


async def test_the_server_waits_for_the_clients_stream_and_data_credit(
    app: ScriptedApp, server: ServerState
) -> None:
    """The app opens 10 streams of 32 KiB under the client's 2 streams and 64 KiB: opens
    queue and sends wait, the server says so, and the client's grants let all through."""
    sent: list[int] = []

    async def push(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        for _ in range(STREAMS):
            await send({"type": "webtransport.stream.open", "bidirectional": False})
        while len(sent) < STREAMS:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                return
            assert message["type"] == "webtransport.stream.opened", message
            data = bytes([len(sent)]) * SIZE
            await send(
                {
                    "type": "webtransport.stream.send",
                    "stream": message["stream"],
                    "data": data,
                    "end_stream": True,
                }
            )
            sent.append(message["stream"])
        await receive()

    app.handlers["/push"] = push
    pin = [server.certificate_sha256]
    async with connect(url(server, "/push"), certificate_hashes=pin, credit=SMALL) as s:
        channel = only_session(server)
        assert channel.peer_credit.max_streams(unidirectional=True) == 2
        received = []
        async with asyncio.timeout(20):
            async for stream in s.incoming_streams():
                received.append(await stream.read())
                if len(received) == STREAMS:
                    break
        assert sorted(received) == [bytes([i]) * SIZE for i in range(STREAMS)]
        peer = channel.peer_credit
        assert peer.streams_opened(unidirectional=True) == STREAMS <= peer.max_streams_uni
        assert peer.data_sent == STREAMS * SIZE <= peer.max_data
        # No open waits. (Whether the client's last grant stopped at exactly 10 streams,
        # which would make an 11th open wait, depends on when its renewals went out.)
        assert not channel.pending_opens
        assert s.state.value == "connected"


async def test_the_client_waits_for_the_servers_stream_and_data_credit(
    app: ScriptedApp, server: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client writes 10 streams of 32 KiB under the server's 2 streams and 64 KiB; the
    server, which would end the session of a client over its credit, takes them all."""
    monkeypatch.setattr(server_h3, "WT_CREDIT", SMALL)
    received: dict[int, bytearray] = {}
    capsules = CapsuleParser()
    seen: list[Any] = []

    async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                seen.append(message)
                return
            received.setdefault(message["stream"], bytearray()).extend(message["data"])

    app.handlers["/sink"] = sink
    async with connect(url(server, "/sink"), certificate_hashes=[server.certificate_sha256]) as s:
        channel = only_session(server)

        class Recording(SessionProtocol):
            """The server's protocol object, also noting every capsule it is fed."""

            __slots__ = ()

            def receive_data(self, data: bytes, end_stream: bool = False) -> Any:
                seen.extend(capsules.feed(data))
                return super().receive_data(data, end_stream)

        channel.protocol.__class__ = Recording  # slotted, so no per-instance override

        async def write(i: int) -> None:
            stream = await s.create_unidirectional_stream()
            await stream.write(bytes([i]) * SIZE, end_stream=True)

        async with asyncio.timeout(20):
            await asyncio.gather(*(write(i) for i in range(STREAMS)))
            while sum(map(len, received.values())) < STREAMS * SIZE:
                await asyncio.sleep(0.01)
        assert sorted(map(bytes, received.values())) == [bytes([i]) * SIZE for i in range(STREAMS)]
        assert channel.credit.streams_opened(unidirectional=True) == STREAMS
        assert channel.credit.data_received == STREAMS * SIZE
        assert any(isinstance(c, StreamsBlocked) and not c.bidirectional for c in seen)
        assert any(isinstance(c, DataBlocked) for c in seen)
        assert not channel.finished


@pytest.mark.parametrize("excess", ["streams", "data"])
async def test_a_peer_over_our_credit_loses_the_session_with_wt_flow_control_error(
    app: ScriptedApp, server: ServerState, monkeypatch: pytest.MonkeyPatch, excess: str
) -> None:
    """The app reads nothing, so no grant slides: the peer's excess is plain."""
    monkeypatch.setattr(server_h3, "WT_CREDIT", SMALL)
    ended: list[dict[str, Any]] = []
    reset_seen = asyncio.Event()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        await reset_seen.wait()
        while (message := await receive())["type"] != "webtransport.disconnect":
            pass
        ended.append(message)

    app.handlers["/greedy"] = handler
    async with raw_peer(server.port, peer_class=Draft15Peer) as peer:
        session_id, _ = await peer.open_session("/greedy")
        if excess == "streams":
            for _ in range(SMALL.max_streams_uni + 1):
                peer.send(peer.open_stream(unidirectional=True), b"x", end_stream=True)
        else:
            peer.send(peer.open_stream(unidirectional=True), bytes(SMALL.max_data + 1))
        await peer.wait_for(lambda: session_id in peer.resets)
        assert peer.resets[session_id] == WT_FLOW_CONTROL_ERROR
        reset_seen.set()
        await peer.wait_for(lambda: bool(ended))
    assert ended[0]["reason"].startswith("protocol error: the peer ")


async def test_connects_over_wt_max_sessions_are_rejected_and_the_others_live_on(
    app: ScriptedApp, server: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_h3, "MAX_SESSIONS", 2)
    done = asyncio.Event()

    async def hold(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        await done.wait()

    app.handlers["/hold"] = hold
    async with raw_peer(server.port, peer_class=Draft15Peer) as peer:
        first, _ = await peer.open_session("/hold")
        second, _ = await peer.open_session("/hold")
        assert len(server.sessions) == 2
        peer.session_id = None
        third = peer._quic.get_next_available_stream_id()
        with pytest.raises(TimeoutError):
            await peer.open_session("/hold", timeout=1.0)  # no answer: a reset instead
        assert peer.resets.get(third) == H3_REQUEST_REJECTED
        assert len(server.sessions) == 2
        assert first not in peer.resets and second not in peer.resets
        done.set()
        await peer.wait_for(lambda: not server.sessions)


@pytest.mark.parametrize(("http3_code", "code"), [(WT_FLOW_CONTROL_ERROR, 0), (app_to_http3(7), 7)])
async def test_the_code_of_a_connect_stream_reset_reaches_the_app_and_the_log(
    app: ScriptedApp,
    server: ServerState,
    caplog: pytest.LogCaptureFixture,
    http3_code: int,
    code: int,
) -> None:
    """A client that gives up on a session (pywebtransport does so with
    WT_FLOW_CONTROL_ERROR) resets the CONNECT stream; its code must not be lost.
    (Per-session lines are logged at DEBUG.)"""
    caplog.set_level(logging.DEBUG, logger="starlette_webtransport.server")
    ended: list[dict[str, Any]] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        while (message := await receive())["type"] != "webtransport.disconnect":
            pass
        ended.append(message)

    app.handlers["/abort"] = handler
    async with raw_peer(server.port) as peer:
        session_id, _ = await peer.open_session("/abort")
        peer._quic.reset_stream(session_id, http3_code)
        peer.transmit()
        await peer.wait_for(lambda: bool(ended))
    reason = f"CONNECT stream reset ({http3_code:#x})"
    assert ended == [
        {"type": "webtransport.disconnect", "code": code, "reason": reason, "cause": "peer_reset"}
    ]
    line = f"code={code} reason={reason!r} cause=peer_reset"
    assert any(line in r.getMessage() for r in caplog.records)


async def test_an_open_waiting_for_credit_delays_only_later_opens(
    app: ScriptedApp, server: ServerState
) -> None:
    """Under a grant of one unidirectional stream, a second one waits: the bidirectional
    open after it is answered after it, in order, but the app's other messages (writes,
    datagrams) go on meanwhile."""
    one_uni = FlowControlLimits(max_data=1024 * 1024, max_streams_bidi=10, max_streams_uni=1)
    replies: list[dict[str, Any]] = []

    async def opener(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        for bidirectional in (False, False, True):
            await send({"type": "webtransport.stream.open", "bidirectional": bidirectional})
        while (message := await receive())["type"] != "webtransport.disconnect":
            if message["type"] == "webtransport.stream.opened":
                replies.append(message)
                if len(replies) == 1:  # unfinished, so it holds the only stream credit
                    await send(
                        {
                            "type": "webtransport.stream.send",
                            "stream": message["stream"],
                            "data": b"one",
                        }
                    )
            elif message["type"] == "webtransport.datagram.receive":
                await send({"type": "webtransport.datagram.send", "data": message["data"]})
                if message["data"] == b"finish":
                    await send(
                        {
                            "type": "webtransport.stream.send",
                            "stream": replies[0]["stream"],
                            "data": b"",
                            "end_stream": True,
                        }
                    )

    app.handlers["/open"] = opener
    pin = [server.certificate_sha256]
    async with connect(url(server, "/open"), certificate_hashes=pin, credit=one_uni) as s:
        async with asyncio.timeout(10):
            first = await anext(aiter(s.incoming_streams()))
            assert await first.read(3) == b"one"
            await s.datagrams.send(b"ping")
            assert await s.datagrams.receive() == b"ping"  # the app is not held up
            assert len(replies) == 1
            assert list(only_session(server).pending_opens) == [False, True]
            await s.datagrams.send(b"finish")
            assert await s.datagrams.receive() == b"finish"
            assert await first.read() == b""  # its FIN: the client grants one more stream
            while len(replies) < 3:
                await asyncio.sleep(0.01)
    assert [r["bidirectional"] for r in replies] == [False, False, True]
    assert replies[0]["stream"] < replies[1]["stream"]
