"""The example app as users start it, ``starlette-webtransport serve example_app.app:app``,
in a process of its own, with everything it logs.

Tests that check what the example's contracts promise over real QUIC (the interop tests,
the stream error-domain tests) share this one way of starting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from starlette_webtransport.server.serve import free_port

from .test_cli_serve import kill_group

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 15.0


class ExampleServer:
    """The server process, its port, and its log lines as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.log: list[str] = []

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @property
    def certificate_sha256(self) -> bytes:
        for line in self.log:
            if match := re.fullmatch(r"certificate sha256: ([0-9a-f]{64})\n", line):
                return bytes.fromhex(match.group(1))
        raise AssertionError("the server printed no certificate hash:\n" + "".join(self.log))

    def errors(self) -> list[str]:
        """Lines at ERROR or above, and tracebacks."""
        return [
            line
            for line in self.log
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]

    async def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        """The first line matching ``pattern`` (a regular expression), once logged."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.log:
                    if re.search(pattern, line):
                        return line
                await asyncio.sleep(0.02)

    def closes(self, path: str = "/echo") -> list[str]:
        """The per-session close lines (logged at DEBUG) of sessions on ``path``."""
        return [line for line in self.log if f" closed: {path} " in line]

    async def collect(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.log.append(line.decode(errors="replace"))


S = TypeVar("S", bound=ExampleServer)


@contextlib.asynccontextmanager
async def serve_example(
    factory: Callable[[asyncio.subprocess.Process, int], S], *options: str
) -> AsyncIterator[S]:
    """Serve the example app on a free loopback port at ``--log-level debug`` (session
    closes are logged at DEBUG). On exit the server is stopped with SIGTERM and waited for,
    so its log is complete (what apps log as their sessions end included); SIGKILL only if
    it does not stop in time."""
    port = free_port()
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
        "--log-level",
        "debug",
        "--graceful-timeout",
        "2",
        *options,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    server = factory(process, port)
    collector = asyncio.create_task(server.collect())
    try:
        async with asyncio.timeout(30):
            while not any(line.startswith("listening on") for line in server.log):
                assert not collector.done(), "the server exited:\n" + "".join(server.log)
                await asyncio.sleep(0.05)
        yield server
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        await kill_group(process)
        await asyncio.wait_for(collector, 10)
