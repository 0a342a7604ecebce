"""Fan-out through rooms: messages delivered per second and latency to N members.

    python bench/bench_fanout.py [--members 10 100 1000] [--deliveries 10000]
                                 [--duration 3] [--backends memory redis]

Serves the example app with the CLI in its own process(es): ``memory://`` in one
process, ``redis://`` with ``--workers 2`` (the kernel spreads the members' connections
over both workers, and Redis carries each publish to the other) on a ``redis-server``
this script starts on a free loopback port and stops. This process is the load: N member
sessions in room ``/rooms/bench-N`` and one more member that publishes datagrams, each
stamped with its send time, at ``deliveries / N`` per second, so every N is offered the
same number of deliveries per second. It reports deliveries per second received, the
share lost, and p50/p99 latency from send to receipt (one clock: same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from starlette_webtransport.client import connect  # noqa: E402
from starlette_webtransport.session import WebTransportSession  # noqa: E402

STAMP = struct.Struct("!Id")
"""Sequence number and send time (``time.monotonic()``, one clock for all processes)."""
PAYLOAD = 64
CONNECT_BATCH = 25


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: run scripts/setup --browsers")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def app_server(broadcast: str, workers: int) -> AsyncIterator[tuple[int, bytes]]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "starlette_webtransport", "serve", "example_app.app:app"),
        *("--port", "0", "--workers", str(workers), "--broadcast", broadcast),
        *("--log-level", "warning", "--graceful-timeout", "0.5"),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        sha256 = port = None
        async with asyncio.timeout(60):
            while port is None:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise SystemExit("the server exited before listening")
                if match := re.fullmatch(r"certificate sha256: ([0-9a-f]{64})\n", line):
                    sha256 = bytes.fromhex(match.group(1))
                if match := re.match(r"listening on https://127\.0\.0\.1:(\d+) ", line):
                    port = int(match.group(1))
        assert sha256 is not None
        yield port, sha256
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


class Member:
    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        self.latencies: list[float] = []
        self.task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        async for data in self.session.datagrams:
            _, sent = STAMP.unpack_from(data)
            self.latencies.append(time.monotonic() - sent)


async def run_room(port: int, sha256: bytes, n: int, deliveries: int, duration: float) -> str:
    url = f"https://127.0.0.1:{port}/rooms/bench-{n}"
    async with contextlib.AsyncExitStack() as stack:

        async def join() -> WebTransportSession:
            return await stack.enter_async_context(
                connect(url, certificate_hashes=[sha256], timeout=30)
            )

        members: list[Member] = []
        while len(members) < n:
            batch = min(CONNECT_BATCH, n - len(members))
            members += [Member(s) for s in await asyncio.gather(*(join() for _ in range(batch)))]
        publisher = await join()
        await asyncio.sleep(1.0 + n / 500)  # joins reach every worker's presence and Redis
        rate = deliveries / n
        count = max(1, int(rate * duration))
        started = time.monotonic()
        for seq in range(count):
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = STAMP.pack(seq, time.monotonic())
            await publisher.datagrams.send(stamp + bytes(PAYLOAD - len(stamp)))
        await asyncio.sleep(1.0)  # the last ones land
        received = [lat for member in members for lat in member.latencies]
        elapsed = time.monotonic() - started
        for member in members:
            member.task.cancel()
    expected = count * n
    if not received:
        return f"{n:>5} members: nothing delivered"
    received.sort()
    p99 = received[min(len(received) - 1, int(len(received) * 0.99))]
    return (
        f"{n:>5} members: {len(received) / (elapsed - 1.0):>8.0f} deliveries/s "
        f"({count} publishes at {rate:.0f}/s), lost {100 * (1 - len(received) / expected):5.1f}%, "
        f"latency p50 {1000 * statistics.median(received):6.1f} ms p99 {1000 * p99:6.1f} ms"
    )


async def bench(args: argparse.Namespace) -> None:
    for backend in args.backends:
        with contextlib.ExitStack() as stack:
            if backend == "redis":
                url, workers = stack.enter_context(redis_server()), 2
            else:
                url, workers = "memory://", 1
            async with app_server(url, workers) as (port, sha256):
                print(f"{backend}:// backend, {workers} worker process(es):", flush=True)
                for n in args.members:
                    line = await run_room(port, sha256, n, args.deliveries, args.duration)
                    print("  " + line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--deliveries", type=int, default=10_000, help="offered per second")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of publishing")
    parser.add_argument("--backends", nargs="+", default=["memory", "redis"])
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
