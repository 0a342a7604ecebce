"""``starlette-webtransport serve`` end to end: a real process, a real QUIC session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

from starlette_webtransport.client import connect
from starlette_webtransport.session.events import EventType
from starlette_webtransport.session.state import SessionState

REPO = Path(__file__).resolve().parents[2]

APP = """
from starlette_webtransport.session.session import WebTransportSession


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    session = WebTransportSession(scope, receive, send)
    await session.accept()
    async for stream in session.incoming_streams():
        await stream.write(await stream.read(), end_stream=True)
"""


async def start_serve(directory: Path, *options: str) -> asyncio.subprocess.Process:
    """``python -m starlette_webtransport serve echoapp:app OPTIONS`` in ``directory``, in a
    process group of its own so that :func:`kill_group` reaches its workers too."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starlette_webtransport",
        "serve",
        "echoapp:app",
        *options,
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


async def kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill the server and its workers: a worker left alive would hold the stdout pipe
    open and make ``wait()`` hang."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)


async def read_banner(stdout: asyncio.StreamReader) -> tuple[int, bytes]:
    """The port and certificate hash the server prints once it listens."""
    sha256 = port = None
    async with asyncio.timeout(30):
        while port is None:
            line = (await stdout.readline()).decode()
            assert line, "the server exited before listening"
            if match := re.fullmatch(r"certificate sha256: ([0-9a-f]{64})\n", line):
                sha256 = bytes.fromhex(match.group(1))
            if match := re.match(r"listening on https://127\.0\.0\.1:(\d+) ", line):
                port = int(match.group(1))
    assert sha256 is not None, "no certificate line before the listening line"
    return port, sha256


async def test_serve_echoes_and_sigterm_drains_then_exits_0(tmp_path: Path) -> None:
    (tmp_path / "echoapp.py").write_text(APP)
    process = await start_serve(tmp_path, "--port", "0", "--graceful-timeout", "2")
    try:
        assert process.stdout is not None
        port, sha256 = await read_banner(process.stdout)
        async with connect(
            f"https://127.0.0.1:{port}/echo", certificate_hashes=[sha256]
        ) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"before", end_stream=True)
            assert await stream.read() == b"before"

            draining = asyncio.Event()
            session.on(EventType.SESSION_DRAINING, lambda event: draining.set())
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(draining.wait(), 5)
            assert session.state is SessionState.DRAINING
            # Draining sessions keep working until the grace period ends.
            stream = await session.create_bidirectional_stream()
            await stream.write(b"while draining", end_stream=True)
            assert await stream.read() == b"while draining"

            await asyncio.wait_for(session.wait_closed(), 10)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        await kill_group(process)


FREEZE_APP = """
import gc

from starlette_webtransport.session.session import WebTransportSession


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    session = WebTransportSession(scope, receive, send)
    await session.accept()
    async for stream in session.incoming_streams():
        await stream.write(b"%d" % gc.get_freeze_count(), end_stream=True)
"""


async def test_serve_takes_its_startup_heap_out_of_the_collectors_sight(tmp_path: Path) -> None:
    """Full collections would otherwise walk every module and route the process holds
    again and again (``startup.freeze_startup_heap``)."""
    (tmp_path / "echoapp.py").write_text(FREEZE_APP)
    process = await start_serve(tmp_path, "--port", "0")
    try:
        assert process.stdout is not None
        port, sha256 = await read_banner(process.stdout)
        async with connect(f"https://127.0.0.1:{port}/", certificate_hashes=[sha256]) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"?", end_stream=True)
            frozen = int(await asyncio.wait_for(stream.read(), 10))
        assert frozen > 10_000  # the modules, the app, hypercorn, aioquic: all of it
    finally:
        await kill_group(process)


async def test_serve_with_two_workers_shares_one_port(tmp_path: Path) -> None:
    """Each worker binds the port with SO_REUSEPORT; a QUIC connection stays on one."""
    (tmp_path / "echoapp.py").write_text(APP)
    process = await start_serve(
        tmp_path, "--port", "0", "--workers", "2", "--graceful-timeout", "1"
    )
    try:
        assert process.stdout is not None
        port, sha256 = await read_banner(process.stdout)
        for i in range(6):  # new connections from new ports land on either worker
            async with connect(
                f"https://127.0.0.1:{port}/echo", certificate_hashes=[sha256]
            ) as session:
                stream = await session.create_bidirectional_stream()
                await stream.write(b"worker %d" % i, end_stream=True)
                assert await asyncio.wait_for(stream.read(), 10) == b"worker %d" % i
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        await kill_group(process)


async def test_reload_restarts_the_server_when_code_changes(tmp_path: Path) -> None:
    app_file = tmp_path / "echoapp.py"
    app_file.write_text(APP)
    process = await start_serve(tmp_path, "--port", "0", "--reload", "--graceful-timeout", "0.2")

    async def echo(port: int, sha256: bytes) -> bytes:
        async with connect(f"https://127.0.0.1:{port}/", certificate_hashes=[sha256]) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"x", end_stream=True)
            return await stream.read()

    try:
        assert process.stdout is not None
        port, sha256 = await read_banner(process.stdout)
        assert await echo(port, sha256) == b"x"
        app_file.write_text(APP.replace("await stream.read()", "b'new ' + await stream.read()"))
        async with asyncio.timeout(30):
            while b"restarting" not in await process.stdout.readline():
                pass
            while not (await process.stdout.readline()).startswith(b"listening on"):
                pass
        assert await echo(port, sha256) == b"new x"  # same port, same certificate
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        await kill_group(process)
