"""The pytest plugin as a user meets it: registered by the ``pytest11`` entry point of the
installed package, in a separate pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

USER_TESTS = """
import pytest

from starlette_webtransport.server.certs import load_certificate
from starlette_webtransport.session import SessionRejectedError, WebTransportSession


async def echo_app(scope, receive, send):
    if scope["type"] != "webtransport":
        return  # no lifespan support needed
    session = WebTransportSession(scope, receive, send)
    if scope["path"] != "/echo":
        await session.reject(404)
        return
    await session.accept()
    async for stream in session.incoming_streams():
        await stream.write(await stream.read(), end_stream=True)


def test_certificate_fixture(webtransport_certificate):
    info = load_certificate(webtransport_certificate.certfile)
    assert info.sha256 == webtransport_certificate.sha256
    assert info.pinning_problems == ()
    assert webtransport_certificate.keyfile.stat().st_mode & 0o777 == 0o600


@pytest.mark.asyncio
async def test_live_server_and_client(
    webtransport_server, webtransport_client, webtransport_certificate
):
    async with webtransport_server(echo_app) as server:
        assert server.url == f"https://127.0.0.1:{server.port}"
        assert server.certificate_hash == webtransport_certificate.sha256
        async with webtransport_client(server, "/echo") as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"over QUIC", end_stream=True)
            assert await stream.read() == b"over QUIC"
        with pytest.raises(SessionRejectedError) as caught:
            async with webtransport_client(server, "/elsewhere"):
                pass
        assert caught.value.status == 404


@pytest.mark.asyncio
async def test_in_process_client(webtransport_test_client):
    async with webtransport_test_client(echo_app).connect("/echo") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"in memory", end_stream=True)
        assert await stream.read() == b"in memory"
"""


def test_plugin_fixtures_in_a_user_test_run(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-q",
            "test_user.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
