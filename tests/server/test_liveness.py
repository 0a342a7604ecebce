"""Issue 9, part 4: a vanished peer is noticed fast, and every session says how it ended.

A peer that disappears without a word (a killed process or browser tab, a dead network)
used to be noticed only by QUIC's idle timeout (30 s for Chromium, 60 s for aioquic) and
was reported exactly like a clean close without a reason. The server now PINGs a silent
peer every ``Limits.keep_alive`` seconds and advertises ``Limits.idle_timeout``; the
disconnect carries a ``cause``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from starlette_webtransport.client import connect
from starlette_webtransport.server.cli import build_parser, serve_settings
from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.testing.server import running_server
from starlette_webtransport.transport.limits import Limits

from ..tooling.example_server import ExampleServer, serve_example
from .conftest import ScriptedApp
from .rawclient import raw_peer

REPO = Path(__file__).resolve().parents[2]

CLIENT = """
import asyncio, sys
from starlette_webtransport.client import connect

async def main():
    hashes = [bytes.fromhex(sys.argv[2])]
    async with connect(sys.argv[1], certificate_hashes=hashes):
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def session_ends(app: ScriptedApp, path: str) -> asyncio.Future[tuple[float, WebTransportSession]]:
    """Serve ``path`` with a session that waits for its end; the future gets the loop
    time of the end and the session."""
    ended: asyncio.Future[tuple[float, WebTransportSession]] = (
        asyncio.get_running_loop().create_future()
    )

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await session.wait_closed()
        ended.set_result((asyncio.get_running_loop().time(), session))

    app.handlers[path] = handler
    return ended


def asgi_disconnects(app: ScriptedApp, path: str) -> asyncio.Future[tuple[float, dict[str, Any]]]:
    """The same with the raw contract: the loop time and the ``disconnect`` message."""
    ended: asyncio.Future[tuple[float, dict[str, Any]]] = asyncio.get_running_loop().create_future()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        while (message := await receive())["type"] != "webtransport.disconnect":
            pass
        ended.set_result((asyncio.get_running_loop().time(), message))

    app.handlers[path] = handler
    return ended


async def test_a_killed_client_is_reported_lost_within_10_s_with_the_defaults(
    app: ScriptedApp,
) -> None:
    ended = session_ends(app, "/live")
    async with running_server(app) as state:
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            f"https://127.0.0.1:{state.port}/live",
            state.certificate_sha256.hex(),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert client.stdout is not None
            assert await asyncio.wait_for(client.stdout.readline(), 20) == b"ready\n"
            await asyncio.sleep(2.5)  # idle, and kept alive, before it dies
            assert not ended.done()
            client.send_signal(signal.SIGKILL)
            killed = asyncio.get_running_loop().time()
            at, session = await asyncio.wait_for(ended, 15)
        finally:
            if client.returncode is None:
                client.kill()
            await client.wait()
    assert at - killed < 10
    assert session.close_cause == "timeout"
    assert session.close_code == 0


async def test_a_vanished_peer_ends_with_cause_timeout_in_the_message_and_the_log(
    app: ScriptedApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The peer's packets stop (nothing is sent, not even CONNECTION_CLOSE)."""
    caplog.set_level(logging.DEBUG, logger="starlette_webtransport.server")
    ended = asgi_disconnects(app, "/gone")
    limits = Limits(idle_timeout=1.0, keep_alive=0.3)
    async with running_server(app, limits=limits) as state, raw_peer(state.port) as peer:
        await peer.open_session("/gone")
        peer._transport.sendto = lambda *args, **kwargs: None  # type: ignore[union-attr]
        vanished = asyncio.get_running_loop().time()
        at, message = await asyncio.wait_for(ended, 5)
    assert at - vanished < 1.0 + 0.3 + 1.0
    assert message == {
        "type": "webtransport.disconnect",
        "code": 0,
        "reason": "",
        "cause": "timeout",
    }
    assert any("/gone code=0 reason='' cause=timeout" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("keep_alive", [0.3, 0.0])
async def test_an_idle_live_session_is_kept_alive_past_the_idle_timeout(
    app: ScriptedApp, keep_alive: float
) -> None:
    """With keep-alive the server's PINGs are acknowledged and an idle session lasts;
    without, the same session times out: the PINGs are what keeps it."""
    idle_timeout = 1.0
    ended = session_ends(app, "/idle")
    limits = Limits(idle_timeout=idle_timeout, keep_alive=keep_alive)
    async with running_server(app, limits=limits) as state:
        url = f"https://127.0.0.1:{state.port}/idle"
        async with connect(url, certificate_hashes=[state.certificate_sha256]) as session:
            await asyncio.sleep(3 * idle_timeout)
            if keep_alive:
                assert not ended.done() and not session.is_closed
                await session.datagrams.send(b"still here")  # and it is usable
            else:
                _, server_session = await asyncio.wait_for(ended, 2)
                assert server_session.close_cause == "timeout"
                assert session.close_cause == "timeout"  # the client's side too


async def test_a_clean_close_says_peer_closed_with_its_code(app: ScriptedApp) -> None:
    ended = session_ends(app, "/bye")
    async with running_server(app) as state:
        url = f"https://127.0.0.1:{state.port}/bye"
        async with connect(url, certificate_hashes=[state.certificate_sha256]) as session:
            await session.close(code=7, reason="done")
            assert session.close_cause == "closed"
        _, server_session = await asyncio.wait_for(ended, 5)
    assert (server_session.close_cause, server_session.close_code) == ("peer_closed", 7)
    assert server_session.close_reason == "done"


async def test_a_connection_closed_under_the_session_says_connection_closed(
    app: ScriptedApp,
) -> None:
    """The peer closes its QUIC connection (CONNECTION_CLOSE) without closing the session
    first, as a browser does when its tab goes away normally: not a timeout."""
    ended = asgi_disconnects(app, "/abrupt")
    async with running_server(app) as state:
        async with raw_peer(state.port) as peer:
            await peer.open_session("/abrupt")
        _, message = await asyncio.wait_for(ended, 5)
    assert message == {
        "type": "webtransport.disconnect",
        "code": 0,
        "reason": "",
        "cause": "connection_closed",
    }


async def test_server_shutdown_says_shutdown(app: ScriptedApp) -> None:
    ended = asgi_disconnects(app, "/stay")
    async with contextlib.AsyncExitStack() as stack:
        server = contextlib.AsyncExitStack()
        state = await server.enter_async_context(running_server(app, graceful_timeout=0.3))
        stack.push_async_callback(server.aclose)
        peer = await stack.enter_async_context(raw_peer(state.port))
        session, _ = await peer.open_session("/stay")
        await server.aclose()  # shut down while the peer is still there
        await peer.read_stream(session, timeout=5)  # the server finished the session
    _, message = await asyncio.wait_for(ended, 5)
    assert message == {
        "type": "webtransport.disconnect",
        "code": 0,
        "reason": "server shutting down",
        "cause": "shutdown",
    }


def test_cli_flags_and_environment_set_keep_alive_and_idle_timeout() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "a:b", "--idle-timeout", "20"])
    environ = {"STARLETTE_WEBTRANSPORT_KEEP_ALIVE": "5"}
    assert serve_settings(args, environ, parser).limits == Limits(idle_timeout=20, keep_alive=5)
    defaults = Limits()
    assert defaults.keep_alive + defaults.idle_timeout < 10
    with pytest.raises(SystemExit) as exc:  # a keep-alive the idle timeout would beat
        serve_settings(parser.parse_args(["serve", "a:b", "--keep-alive", "8"]), {}, parser)
    assert exc.value.code == 2


async def test_the_cli_options_reach_the_server() -> None:
    """``serve --idle-timeout 1 --keep-alive 0.3``: the example's ``/echo`` session of a
    peer that goes silent ends as a timeout within about a second, and says so in the log."""
    async with (
        serve_example(ExampleServer, "--idle-timeout", "1", "--keep-alive", "0.3") as server,
        raw_peer(server.port) as peer,
    ):
        await peer.open_session("/echo")
        peer._transport.sendto = lambda *args, **kwargs: None  # type: ignore[union-attr]
        vanished = asyncio.get_running_loop().time()
        await peer.wait_for(lambda: bool(server.closes()), timeout=5)
        assert asyncio.get_running_loop().time() - vanished < 1.0 + 0.3 + 1.0
    assert "code=0 reason='' cause=timeout" in server.closes()[0]
    assert not [line for line in server.log if " ERROR " in line], server.log
