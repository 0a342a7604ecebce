"""The example app's page in real headless Chromium and Firefox, against the real CLI.

This is the whole path a user takes: ``starlette-webtransport serve example_app.app:app``,
a page on plain HTTP (a secure context on 127.0.0.1) that fetches the development
certificate's hash and pins it with ``serverCertificateHashes``, then bidirectional,
unidirectional and datagram echo, a clean close, and typed messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from starlette_webtransport.server.serve import free_port

from .harness import run_page

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_CHECKS = {
    "session",
    "bidirectional echo (small)",
    "bidirectional echo (1 MiB)",
    "unidirectional echo",
    "datagram echo",
    "close with code and reason",
    "structured messages",
}


@contextlib.asynccontextmanager
async def example_server() -> AsyncIterator[tuple[int, int, str]]:
    port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starlette_webtransport",
        "serve",
        "example_app.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(http_port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not any(line.startswith("listening on") for line in output):
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("the server exited:\n" + "".join(output))
                output.append(line)
        (fingerprint,) = [
            line.split(": ", 1)[1].strip()
            for line in output
            if line.startswith("certificate sha256: ")
        ]
        assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
        yield port, http_port, fingerprint
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)
        assert process.returncode == 0, "".join(output)


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_example_page(browser: str) -> None:
    async with example_server() as (_, http_port, fingerprint):
        # The page pins the hash the CLI printed, which proves browsers accept it.
        url = f"http://127.0.0.1:{http_port}/echo-checks?hash={fingerprint}"
        report = await run_page(browser, url, timeout=90)
    results = {r["name"]: r for r in report["results"]}
    failures = {name: r["detail"] for name, r in results.items() if not r["ok"]}
    assert not failures, f"{report['userAgent']}: {failures}"
    assert set(results) == EXPECTED_CHECKS
    assert "4000" in results["close with code and reason"]["detail"]
