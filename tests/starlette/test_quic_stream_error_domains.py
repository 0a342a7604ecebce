"""One stream's trouble stays on that stream, over real QUIC.

A peer's RESET_STREAM or STOP_SENDING on one of two echoed streams, or a handler that
raises on one of them, used to close the whole session (0x102) and hand the other stream
``SessionClosedError``; and every ordinary disconnect of the documented ``TaskGroup``
pattern logged an ERROR with an ``ExceptionGroup`` traceback. These tests run the example
app as users start it (the CLI, ``/echo``), and apps served by our hypercorn in the test's
loop, against the project's client and a raw aioquic peer that can vanish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette

from starlette_webtransport.asgi import Receive, Scope, Send
from starlette_webtransport.client import connect
from starlette_webtransport.session import (
    SessionState,
    StreamResetError,
    StreamStoppedError,
    StreamType,
    WebTransportSession,
    WebTransportStream,
    serve_streams,
)
from starlette_webtransport.session.constants import INTERNAL_ERROR_CODE
from starlette_webtransport.starlette import (
    WebTransportEndpoint,
    WebTransportRoute,
    enable_webtransport,
)
from starlette_webtransport.testing.plugin import ClientFactory, LiveServer, ServerFactory

from ..server.rawclient import raw_peer
from ..tooling.example_server import ExampleServer, serve_example

TIMEOUT = 15.0


async def echo(stream: WebTransportStream, data: bytes) -> bytes:
    await stream.write(data)
    return await stream.readexactly(len(data))


async def keeps_echoing(session: WebTransportSession, stream: WebTransportStream) -> None:
    """``stream`` still echoes, to its end, and the session is still open."""
    for i in range(3):
        assert await echo(stream, b"still here %d" % i) == b"still here %d" % i
    await stream.write(b"last", end_stream=True)
    assert await stream.read() == b"last"
    assert session.state is SessionState.CONNECTED
    fresh = await session.create_bidirectional_stream()
    await fresh.write(b"a new stream", end_stream=True)
    assert await fresh.read() == b"a new stream"


async def write_until_stopped(stream: WebTransportStream) -> StreamStoppedError:
    """Write until the peer's STOP_SENDING arrives (the server learns of a stop, or of its
    handler's failure, only when it next touches the stream)."""
    while True:
        try:
            await stream.write(b"more")
        except StreamStoppedError as exc:
            return exc
        await asyncio.sleep(0.01)


def session_closed_line(path: str) -> str:
    return rf"session \S+ closed: {path} code=0 "


# --- the example app's /echo, started by the CLI ----------------------------------------


async def test_example_echo_a_peer_reset_ends_only_that_stream() -> None:
    async with serve_example(ExampleServer) as server:
        async with connect(
            server.url("/echo"), certificate_hashes=[server.certificate_sha256]
        ) as session:
            async with asyncio.timeout(TIMEOUT):
                first = await session.create_bidirectional_stream()
                second = await session.create_bidirectional_stream()
                assert await echo(first, b"first") == b"first"
                assert await echo(second, b"second") == b"second"
                await first.reset(7)  # mid-data: no FIN was sent
                # The server's handler of that stream ends and gives up its side too.
                with pytest.raises(StreamResetError) as reset:
                    await first.read()
                assert reset.value.code == 0
                await keeps_echoing(session, second)
        await server.wait_for_line(session_closed_line("/echo"))
    assert server.errors() == []


async def test_example_echo_stop_sending_ends_only_that_stream() -> None:
    async with serve_example(ExampleServer) as server:
        async with connect(
            server.url("/echo"), certificate_hashes=[server.certificate_sha256]
        ) as session:
            async with asyncio.timeout(TIMEOUT):
                first = await session.create_bidirectional_stream()
                second = await session.create_bidirectional_stream()
                assert await echo(first, b"first") == b"first"
                assert await echo(second, b"second") == b"second"
                await first.stop_sending(9)
                stopped = await write_until_stopped(first)
                assert stopped.code == 0
                await keeps_echoing(session, second)
        await server.wait_for_line(session_closed_line("/echo"))
    assert server.errors() == []


async def test_example_echo_logs_no_error_when_a_client_closes_or_vanishes() -> None:
    async with serve_example(ExampleServer) as server:
        async with connect(
            server.url("/echo"), certificate_hashes=[server.certificate_sha256]
        ) as session:
            async with asyncio.timeout(TIMEOUT):
                for data in (b"one", b"two"):  # handlers left waiting for more
                    stream = await session.create_bidirectional_stream()
                    assert await echo(stream, data) == data
        await server.wait_for_line(session_closed_line("/echo"))
        await vanish_mid_echo(server.port, "/echo")
        async with asyncio.timeout(TIMEOUT):
            while len([line for line in server.log if " closed: /echo " in line]) < 2:
                await asyncio.sleep(0.02)
    # The server was stopped and waited for, so anything the app logged is in the log.
    assert server.errors() == []


async def vanish_mid_echo(port: int, path: str) -> None:
    """A raw peer opens a session and two echoed streams, then drops the QUIC connection
    (CONNECTION_CLOSE, no WT_CLOSE_SESSION), as a closed browser tab does."""
    async with raw_peer(port) as peer:
        _, headers = await peer.open_session(path)
        assert headers[b":status"] == b"200"
        streams = [peer.open_stream(), peer.open_stream()]
        for stream_id in streams:
            peer.send(stream_id, b"ping")
        await peer.wait_for(
            lambda: all(bytes(peer.stream_data.get(s, b"")) == b"ping" for s in streams),
            TIMEOUT,
        )


# --- apps served in the test's loop ------------------------------------------------------


class Tracked:
    """An ASGI app wrapper that tells the test when each session's app call returned.

    The server logs an app's exception synchronously as it propagates, so once a path is
    in ``finished`` whatever the server and the app logged for that session is in caplog."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
        self.app = app
        self.finished: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "webtransport":
                self.finished.put_nowait(scope["path"])


class FailingEcho(WebTransportEndpoint):
    async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
        assert isinstance(stream, WebTransportStream)
        async for chunk in stream:
            if chunk == b"fail":
                raise ValueError("a bug in the stream handler")
            await stream.write(chunk)
        await stream.close()


async def test_a_failing_stream_handler_aborts_its_stream_only(
    webtransport_server: ServerFactory,
    webtransport_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Starlette(routes=[WebTransportRoute("/echo", FailingEcho)])
    enable_webtransport(app)
    async with webtransport_server(app) as server, webtransport_client(server, "/echo") as session:
        async with asyncio.timeout(TIMEOUT):
            first = await session.create_bidirectional_stream()
            second = await session.create_bidirectional_stream()
            assert await echo(first, b"first") == b"first"
            assert await echo(second, b"second") == b"second"
            await first.write(b"fail")
            with pytest.raises(StreamResetError) as reset:
                await first.read()
            assert reset.value.code == INTERNAL_ERROR_CODE
            assert (await write_until_stopped(first)).code == INTERNAL_ERROR_CODE
            await keeps_echoing(session, second)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    (error,) = errors
    assert error.name.startswith("starlette_webtransport.session")
    assert "/echo" in error.getMessage()
    assert f"stream {first.stream_id}" in error.getMessage()
    assert error.exc_info is not None and error.exc_info[0] is ValueError


async def task_group_echo(session: WebTransportSession) -> None:
    """The pattern the docs used to show: a TaskGroup with one task per stream."""
    await session.accept()
    async with asyncio.TaskGroup() as tasks:
        async for stream in session.incoming_streams():
            assert isinstance(stream, WebTransportStream)
            tasks.create_task(echo_stream(stream))


async def serve_streams_echo(session: WebTransportSession) -> None:
    await session.accept()
    await serve_streams(session, echo_stream, on_datagram=session.datagrams.send)


async def echo_stream(stream: StreamType) -> None:
    assert isinstance(stream, WebTransportStream)
    async for chunk in stream:
        await stream.write(chunk)
    await stream.close()


async def raw_task_group_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The TaskGroup pattern in a bare ASGI app: its exception reaches the server."""
    await task_group_echo(WebTransportSession(scope, receive, send))


def ordinary_apps() -> Tracked:
    starlette_app = Starlette(
        routes=[
            WebTransportRoute("/task-group", task_group_echo),
            WebTransportRoute("/serve-streams", serve_streams_echo),
        ]
    )
    enable_webtransport(starlette_app)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "webtransport" and scope["path"] == "/raw":
            await raw_task_group_echo(scope, receive, send)
        else:
            await starlette_app(scope, receive, send)

    return Tracked(app)


@pytest.mark.parametrize("path", ["/task-group", "/serve-streams", "/raw"])
async def test_an_ordinary_disconnect_logs_no_error(
    path: str,
    webtransport_server: ServerFactory,
    webtransport_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ordinary_apps()
    async with webtransport_server(app) as server:
        await close_mid_echo(server, webtransport_client, path)
        assert await asyncio.wait_for(app.finished.get(), TIMEOUT) == path
        await vanish_mid_echo(server.port, path)
        assert await asyncio.wait_for(app.finished.get(), TIMEOUT) == path
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def close_mid_echo(server: LiveServer, client: ClientFactory, path: str) -> None:
    """The client closes its session while two echo handlers wait for more data."""
    async with client(server, path) as session, asyncio.timeout(TIMEOUT):
        for data in (b"one", b"two"):
            stream = await session.create_bidirectional_stream()
            assert await echo(stream, data) == data
