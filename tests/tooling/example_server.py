"""The example app served by the CLI (``starlette-webtransport serve example_app.app:app``)
in a process of its own, with everything it logs, for tests that check the example's
``/echo`` contract end to end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

from starlette_webtransport.server.serve import free_port

from .test_cli_serve import kill_group

ROOT = Path(__file__).resolve().parents[2]


class ExampleServer:
    """The server process, its UDP port and its log lines so far."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/echo"

    async def collect(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.log.append(line.decode(errors="replace"))

    def closes(self) -> list[str]:
        return [line for line in self.log if " closed: /echo " in line]


Server = TypeVar("Server", bound=ExampleServer)


@contextlib.asynccontextmanager
async def example_server(
    *options: str,
    server_class: type[Server] = ExampleServer,  # type: ignore[assignment]
) -> AsyncIterator[Server]:
    """Serve the example on a free loopback port at DEBUG (session closes are logged at
    DEBUG), with the extra CLI ``options``; the process is killed on exit."""
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
        *options,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    server = server_class(process, port)
    collector = asyncio.create_task(server.collect())
    try:
        async with asyncio.timeout(30):
            while not any(line.startswith("listening on") for line in server.log):
                assert not collector.done(), "the server exited:\n" + "".join(server.log)
                await asyncio.sleep(0.05)
        yield server
    finally:
        await kill_group(process)
        await asyncio.wait_for(collector, 10)
