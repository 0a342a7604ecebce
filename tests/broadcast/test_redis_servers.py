"""Rooms across two server processes (the CLI, different ports) sharing a real Redis:
the example app's ``/rooms/{room}`` contract end to end, Redis lost and back, and a
server that dies taking its members out of presence."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from starlette_webtransport.client import connect
from starlette_webtransport.session import WebTransportSession
from tests.tooling.test_cli_serve import kill_group, read_banner

from .conftest import RedisServer
from .helpers import next_stream_data

REPO = Path(__file__).resolve().parents[2]
TTL = 1.5


@dataclass
class Server:
    process: asyncio.subprocess.Process
    port: int
    sha256: bytes
    log: Path

    def url(self, room: str) -> str:
        return f"https://127.0.0.1:{self.port}/rooms/{room}"

    async def members(self, room: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(verify=False) as client:
            response = await client.get(f"{self.url(room)}/members", timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    async def wait_log(self, text: str, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.log.read_text():
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def cli_server(tmp: Path, name: str, broadcast: str) -> AsyncIterator[Server]:
    log = tmp / f"{name}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "starlette_webtransport", "serve", "example_app.app:app"),
            *("--port", "0", "--broadcast", broadcast, "--graceful-timeout", "1"),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        port, sha256 = await read_banner(process.stdout)
        yield Server(process, port, sha256, log)
    finally:
        await kill_group(process)


async def join(server: Server, room: str, stack: contextlib.AsyncExitStack) -> WebTransportSession:
    return await stack.enter_async_context(
        connect(server.url(room), certificate_hashes=[server.sha256])
    )


async def datagram_reaches(
    sender: WebTransportSession, receivers: list[WebTransportSession], tag: bytes
) -> None:
    """Datagrams may be lost even on loopback: resend until each receiver has one."""
    pending = set(range(len(receivers)))
    async with asyncio.timeout(10):
        for attempt in range(1000):
            await sender.datagrams.send(tag + b" %d" % attempt)
            await asyncio.sleep(0.05)
            for index in list(pending):
                while receivers[index].datagrams.queued:
                    data = await receivers[index].datagrams.receive()
                    if data.startswith(tag):
                        pending.discard(index)
            if not pending:
                return


async def until(condition: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_rooms_span_two_servers_and_survive_losing_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    broadcast = f"{redis_server.url}?presence_ttl={TTL}"
    async with (
        cli_server(tmp_path, "a", broadcast) as a,
        cli_server(tmp_path, "b", broadcast) as b,
        contextlib.AsyncExitStack() as stack,
    ):
        a1, a2 = await join(a, "lobby", stack), await join(a, "lobby", stack)
        b1 = await join(b, "lobby", stack)
        other = await join(b, "elsewhere", stack)

        async def three_members() -> bool:
            return len(await a.members("lobby")) == 3 and len(await b.members("lobby")) == 3

        await until(three_members)

        # A publish in either server reaches members in both, never the sender.
        await datagram_reaches(a1, [a2, b1], b"from a1")
        stream = await b1.create_unidirectional_stream()
        await stream.write(b"from b1 " * 1000, end_stream=True)
        assert await next_stream_data(a1) == b"from b1 " * 1000
        assert await next_stream_data(a2) == b"from b1 " * 1000
        await asyncio.sleep(0.3)
        assert other.datagrams.queued == 0
        for sender in (a1, b1):
            while sender.datagrams.queued:
                assert not (await sender.datagrams.receive()).startswith(b"from a1")

        # Redis goes away: both servers say so; a server's own members still hear each other.
        redis_server.kill()
        await a.wait_log("lost Redis")
        await b.wait_log("lost Redis")
        await datagram_reaches(a2, [a1], b"local only")

        # Redis returns (empty: no persistence): the servers resubscribe and rewrite presence.
        redis_server.start()
        await a.wait_log("is back")
        await b.wait_log("is back")
        await datagram_reaches(b1, [a1, a2], b"after the outage")
        await until(three_members)

        # A server that dies takes its members with it within the presence TTL.
        os.killpg(b.process.pid, signal.SIGKILL)

        async def two_members() -> bool:
            return len(await a.members("lobby")) == 2

        await until(two_members, timeout=3 * TTL + 2)
