"""Limits over real QUIC: accept timeout, early streams, UDP socket buffers, shutdown.

Each test names the defect of issue 12 it pins down (docs/reliability.md lists them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from collections.abc import AsyncIterator
from typing import Any

from starlette_webtransport.protocol.capsules import CapsuleParser, CloseSession, DrainSession
from starlette_webtransport.protocol.errors import WT_BUFFERED_STREAM_REJECTED
from starlette_webtransport.server.serve import ServerState, serve
from starlette_webtransport.testing.server import running_server
from starlette_webtransport.transport.limits import Limits

from .conftest import ScriptedApp
from .rawclient import RawPeer, raw_peer


async def _never_answers(cancelled: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        cancelled.set()
        raise


async def test_connect_unanswered_gets_503_and_the_app_is_cancelled(app: ScriptedApp) -> None:
    """Issue 12, item 2: an endpoint that never accepts left the CONNECT unanswered."""
    cancelled = asyncio.Event()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _never_answers(cancelled)

    app.handlers["/stuck"] = handler
    async with running_server(app, limits=Limits(accept_timeout=0.5)) as state:
        loop = asyncio.get_running_loop()
        async with raw_peer(state.port) as peer:
            started = loop.time()
            _, headers = await peer.open_session("/stuck", timeout=5)
            assert headers[b":status"] == b"503"
            assert 0.4 < loop.time() - started < 3
        await asyncio.wait_for(cancelled.wait(), 2)
        assert not state.sessions


async def test_app_stuck_after_its_client_left_is_cancelled(app: ScriptedApp) -> None:
    """Issue 12, item 2: hung endpoint tasks outlived their clients until shutdown."""
    cancelled = [asyncio.Event() for _ in range(3)]
    calls = iter(cancelled)

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _never_answers(next(calls))

    app.handlers["/stuck"] = handler
    async with running_server(app, limits=Limits(accept_timeout=0.6)) as state:
        for _ in cancelled:
            async with raw_peer(state.port) as peer:
                peer.h3.send_headers(
                    peer.reserve_session(),
                    [
                        (b":method", b"CONNECT"),
                        (b":protocol", b"webtransport"),
                        (b":scheme", b"https"),
                        (b":authority", b"localhost"),
                        (b":path", b"/stuck"),
                        (b"origin", b"https://localhost"),
                    ],
                )
                peer.transmit()
                await peer.wait_for(lambda: state.sessions)
        async with asyncio.timeout(3):
            for event in cancelled:
                await event.wait()


async def _early_streams(peer: RawPeer, count: int) -> tuple[int, list[int], int]:
    """Reserve a session id and send ``count`` bidirectional streams and one
    unidirectional stream for it before its CONNECT, each with data but no FIN (a
    stream received whole leaves its sender nothing to be told)."""
    session = peer.reserve_session()
    bidi = []
    for index in range(count):
        stream = peer.open_stream()
        peer.send(stream, b"early %d" % index)
        bidi.append(stream)
    uni = peer.open_stream(unidirectional=True)
    peer.send(uni, b"one way")
    return session, bidi, uni


async def test_streams_before_connect_are_held_until_the_session_opens(
    app: ScriptedApp,
) -> None:
    """Issue 12, item 4: streams that raced ahead of their CONNECT were reset with
    WT_SESSION_GONE. Now they are held (within the limits) and handed to the session."""
    received: dict[int, bytes] = {}
    datagrams: list[bytes] = []
    done = asyncio.Event()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                return
            if message["type"] == "webtransport.datagram.receive":
                datagrams.append(message["data"])
            if message["type"] != "webtransport.stream.receive":
                continue
            stream = message["stream"]
            received[stream] = received.get(stream, b"") + message["data"]
            if message["end_stream"]:
                if not stream & 0x2:
                    await send(
                        {
                            "type": "webtransport.stream.send",
                            "stream": stream,
                            "data": b"echo " + received[stream],
                            "end_stream": True,
                        }
                    )
                if len(received) == 3:
                    done.set()

    app.handlers["/early"] = handler
    limits = Limits(pending_streams=3, pending_timeout=5)
    async with running_server(app, limits=limits) as state, raw_peer(state.port) as peer:
        session, bidi, uni = await _early_streams(peer, 3)
        peer.send_datagram(b"early datagram")
        # the fourth held stream is one too many: refused at once
        await peer.wait_for(lambda: uni in peer.stops)
        assert peer.stops[uni] == WT_BUFFERED_STREAM_REJECTED
        await asyncio.sleep(0.2)  # the others wait at the server
        _, headers = await peer.open_session("/early", stream_id=session)
        assert headers[b":status"] == b"200"
        for stream in bidi:
            peer.send(stream, b"", end_stream=True)
        await asyncio.wait_for(done.wait(), 5)
        for index, stream in enumerate(bidi):
            assert await peer.read_stream(stream) == b"echo early %d" % index
    assert received == {stream: b"early %d" % index for index, stream in enumerate(bidi)}
    assert datagrams == [b"early datagram"]
    assert not peer.resets and set(peer.stops) == {uni}


async def test_streams_for_a_session_that_never_opens_are_refused(app: ScriptedApp) -> None:
    """Issue 12, item 4: refused with WT_BUFFERED_STREAM_REJECTED once the hold ends,
    whether no CONNECT comes or the app rejects it."""

    async def reject(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.reject", "status": 403})

    app.handlers["/no"] = reject
    limits = Limits(pending_timeout=0.5)
    async with running_server(app, limits=limits) as state, raw_peer(state.port) as peer:
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, bidi, uni = await _early_streams(peer, 1)
        await peer.wait_for(lambda: bidi[0] in peer.resets and uni in peer.stops)
        assert 0.4 < loop.time() - started < 3
        assert peer.stops[bidi[0]] == peer.stops[uni] == WT_BUFFERED_STREAM_REJECTED

        session, bidi, uni = await _early_streams(peer, 1)
        _, headers = await peer.open_session("/no", stream_id=session)
        assert headers[b":status"] == b"403"
        await peer.wait_for(lambda: bidi[0] in peer.resets and uni in peer.stops, timeout=0.4)
        assert peer.resets[bidi[0]] == peer.stops[uni] == WT_BUFFERED_STREAM_REJECTED


def _socket_buffers(port: int) -> tuple[int, int]:
    """The UDP socket's receive and send buffers as the kernel reports them (``ss``)."""
    output = subprocess.run(
        ["ss", "-u", "-a", "-n", "-m", "-H", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    match = re.search(r"rb(\d+),t\d+,tb(\d+)", output)
    assert match is not None, output
    return int(match[1]), int(match[2])


async def test_udp_socket_buffers_are_sized_for_bursts(app: ScriptedApp) -> None:
    """Issue 12, item 3: the kernel's default receive buffer dropped handshake bursts."""
    limits = Limits(udp_receive_buffer=3 * 1024 * 1024, udp_send_buffer=2 * 1024 * 1024)
    async with running_server(app, limits=limits) as state:
        receive, send = _socket_buffers(state.port)
    assert state.udp_buffers == [(receive, send)]  # what the server logs is what it got
    if os.geteuid() == 0:  # may exceed net.core.rmem_max; Linux books twice the size
        assert receive >= 3 * 1024 * 1024 and send >= 2 * 1024 * 1024
    else:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
            assert receive >= plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


@contextlib.asynccontextmanager
async def _stoppable(
    app: ScriptedApp, grace: float
) -> AsyncIterator[tuple[ServerState, asyncio.Event, asyncio.Task[None]]]:
    stop = asyncio.Event()
    state = ServerState(certificate_sha256=b"", binds=[])
    task = asyncio.create_task(
        serve(app, port=0, state=state, shutdown_trigger=stop.wait, graceful_timeout=grace)
    )
    try:
        await asyncio.wait_for(state.ready.wait(), 10)
        yield state, stop, task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


async def test_shutdown_drains_refuses_new_sessions_and_ends_in_bounded_time(
    app: ScriptedApp,
) -> None:
    """Issue 12, item 6: new sessions were accepted with 200 during the drain."""
    opened = 0

    async def stubborn(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal opened
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        opened += 1
        while (await receive())["type"] != "webtransport.disconnect":
            pass  # ignores the drain: the grace period has to end it

    app.handlers["/stay"] = stubborn
    grace = 1.5
    loop = asyncio.get_running_loop()
    async with (
        _stoppable(app, grace) as (state, stop, task),
        raw_peer(state.port) as first,
        raw_peer(state.port) as second,
    ):
        sessions = [(first, (await first.open_session("/stay"))[0])]
        sessions.append((second, (await second.open_session("/stay"))[0]))
        stop.set()
        started = loop.time()
        for peer, _ in sessions:
            await peer.wait_for(lambda p=peer: CapsuleParser().feed(bytes(p.connect_data)))
            assert CapsuleParser().feed(bytes(peer.connect_data)) == [DrainSession()]
        _, headers = await first.open_session("/stay")  # same connection, while draining
        assert headers[b":status"] == b"503"
        first.session_id = sessions[0][1]  # the peer follows its open session again
        async with raw_peer(state.port) as third:  # a new connection, too
            _, headers = await third.open_session("/stay")
            assert headers[b":status"] == b"503"
        for peer, session in sessions:
            await peer.read_stream(session, timeout=grace + 2)
            assert CapsuleParser().feed(bytes(peer.connect_data)) == [
                DrainSession(),
                CloseSession(0, "server shutting down"),
            ]
        assert loop.time() - started >= grace - 0.1
        await asyncio.wait_for(task, 2 * grace + 3)  # hypercorn's own wait is bounded too
    assert opened == 2


def test_cli_flags_and_environment_set_the_limits() -> None:
    from starlette_webtransport.server.cli import build_parser, serve_settings

    parser = build_parser()
    args = parser.parse_args(["serve", "a:b", "--accept-timeout", "3", "--udp-buffer", "8M"])
    environ = {"STARLETTE_WEBTRANSPORT_RECEIVE_MEMORY": "64M"}
    settings = serve_settings(args, environ, parser)
    assert settings.limits == Limits(
        accept_timeout=3,
        receive_memory=64 * 1024 * 1024,
        udp_receive_buffer=8 * 1024 * 1024,
        udp_send_buffer=8 * 1024 * 1024,
    )
    assert serve_settings(parser.parse_args(["serve", "a:b"]), {}, parser).limits == Limits()
