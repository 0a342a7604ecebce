"""Every serving mode of ``starlette-webtransport serve`` behaves the same for a developer:
plain, ``--reload`` and ``--workers 2`` each publish the development certificate's hash,
log the library's and the app's lines in one format at the chosen level, keep aioquic's
per-connection INFO lines out, and print one startup block that ends with the URL to open."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from starlette_webtransport.client import connect
from starlette_webtransport.server.serve import CERTIFICATE_HASH_PATH, free_port
from tests.tooling.test_cli_serve import kill_group

REPO = Path(__file__).resolve().parents[2]

APP = """
import logging

from starlette.applications import Starlette
from starlette_webtransport import WebTransportRoute, WebTransportSession, enable_webtransport

log = logging.getLogger("devapp")


async def echo(session: WebTransportSession) -> None:
    log.info("devapp accepting a session")
    await session.accept()
    async for stream in session.incoming_streams():
        await stream.write(await stream.read(), end_stream=True)


app = Starlette(routes=[WebTransportRoute("/echo", echo)])
enable_webtransport(app)
"""

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")


def fetch_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        result: dict[str, object] = json.loads(response.read())
        return result


async def read_block(stdout: asyncio.StreamReader) -> list[str]:
    """The startup block, up to and including its last line (``open <url>``)."""
    lines: list[str] = []
    async with asyncio.timeout(40):
        while not lines or not lines[-1].startswith("open "):
            line = (await stdout.readline()).decode()
            assert line, f"the server exited before its startup block ended: {lines}"
            lines.append(line.rstrip("\n"))
    return lines


@pytest.mark.parametrize("mode", [[], ["--reload"], ["--workers", "2"]], ids=str)
async def test_every_mode_serves_the_hash_and_logs_alike(tmp_path: Path, mode: list[str]) -> None:
    (tmp_path / "devapp.py").write_text(APP)
    http_port = free_port()
    stderr = (tmp_path / "stderr.txt").open("wb")
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "starlette_webtransport", "serve", "devapp:app", "--port", "0"],
        *["--http-port", str(http_port), "--graceful-timeout", "1", *mode],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        block = await read_block(process.stdout)
        page = f"http://127.0.0.1:{http_port}/"
        assert block[0].startswith("certificate sha256: ")
        assert block[-1] == f"open {page}", block
        assert f"listening on http://127.0.0.1:{http_port} (TCP, plain HTTP)" in block

        info = await asyncio.to_thread(fetch_json, page + CERTIFICATE_HASH_PATH.lstrip("/"))
        assert block[0] == f"certificate sha256: {info['hex']}"
        url = f"https://127.0.0.1:{info['port']}/echo"
        async with connect(url, certificate_hashes=[bytes.fromhex(str(info["hex"]))]) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"mode", end_stream=True)
            assert await stream.read() == b"mode"
        await asyncio.sleep(0.3)  # the server logs the session's end
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        await kill_group(process)
        stderr.close()
    log = (tmp_path / "stderr.txt").read_text().splitlines()
    assert any("INFO devapp: devapp accepting a session" in line for line in log), log
    assert any("INFO starlette_webtransport.server: UDP socket buffers" in line for line in log), (
        log
    )
    cli_warning = "starlette-webtransport: warning: "  # the CLI's own, before logging starts
    assert all(
        LOG_LINE.match(line) or line.startswith((" ", "Traceback", cli_warning)) for line in log
    ), log
    assert not [line for line in log if " quic: " in line or " http3: " in line], log
    assert not [line for line in log if "Running on" in line], log
