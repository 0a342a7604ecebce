"""Structured messages per second against pre-encoded bytes on the same stream.

Both runs push the same frames through the in-memory stream pipe of the structured
tests: the baseline writes pre-encoded frames and reads raw bytes, the structured run
encodes with ``send_obj`` and decodes with ``async for``. The ratio is the share of
raw throughput left after framing and (de)serialization, which is what the
structured layer costs; the pipe's own cost is in both.

    python bench/bench_structured.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from starlette_webtransport.client import connect  # noqa: E402
from starlette_webtransport.session import WebTransportSession  # noqa: E402
from starlette_webtransport.structured import (  # noqa: E402
    HEADER,
    JSONSerializer,
    MsgPackSerializer,
    Schema,
    Serializer,
    StructuredStream,
)
from starlette_webtransport.testing.server import running_server  # noqa: E402
from tests.structured.memory import memory_stream_pair  # noqa: E402

Pair = Callable[[], AbstractAsyncContextManager[tuple[Any, Any]]]


@contextlib.asynccontextmanager
async def memory_pair() -> AsyncIterator[tuple[Any, Any]]:
    yield memory_stream_pair()


class QuicPairs:
    """Stream pairs over one real session: the client's end and the server app's end."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Any] = asyncio.Queue()

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "webtransport":
            return
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        async for stream in session.incoming_streams():
            await self.incoming.put(stream)

    @contextlib.asynccontextmanager
    async def pair(self) -> AsyncIterator[tuple[Any, Any]]:
        stream = await self.session.create_bidirectional_stream()
        yield stream, _Far(self.incoming)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[QuicPairs]:
        async with running_server(self.app) as server:
            url = f"https://127.0.0.1:{server.port}/"
            async with connect(url, certificate_hashes=[server.certificate_sha256]) as session:
                self.session = session
                yield self


class _Far:
    """The server's end, which appears once the first byte arrived (as over QUIC)."""

    def __init__(self, incoming: asyncio.Queue[Any]) -> None:
        self._incoming = incoming
        self._stream: Any = None

    async def _get(self) -> Any:
        if self._stream is None:
            self._stream = await self._incoming.get()
        return self._stream

    async def read(self, n: int = -1) -> bytes:
        return bytes(await (await self._get()).read(n))

    async def readexactly(self, n: int) -> bytes:
        return bytes(await (await self._get()).readexactly(n))


class Tick(msgspec.Struct):
    seq: int
    price: float
    symbol: str


async def raw(pair: Pair, frames: list[bytes]) -> float:
    async with pair() as (near, far):

        async def send() -> None:
            for data in frames:
                await near.write(data)
            await near.close()

        start = time.perf_counter()
        sender = asyncio.create_task(send())
        while await far.read(65536):
            pass
        await sender
        return time.perf_counter() - start


async def structured(pair: Pair, schema: Schema[Tick], ticks: list[Tick]) -> float:
    async with pair() as (near, far):
        client = StructuredStream(near, schema=schema)

        async def send() -> None:
            for tick in ticks:
                await client.send_obj(tick)
            await client.close()

        start = time.perf_counter()
        sender = asyncio.create_task(send())
        count = 0
        async for _ in StructuredStream(far, schema=schema):
            count += 1
        await sender
        assert count == len(ticks)
        return time.perf_counter() - start


async def measure(label: str, pair: Pair, messages: int) -> None:
    ticks = [Tick(i, 100.0 + i / 100, "WTX") for i in range(messages)]
    print(f"{messages} small messages over {label} (best of 3)")
    print(f"{'serializer':<10} {'payload':>8} {'raw msg/s':>12} {'typed msg/s':>12} {'ratio':>6}")
    serializers: dict[str, Serializer] = {"msgpack": MsgPackSerializer(), "json": JSONSerializer()}
    for name, serializer in serializers.items():
        schema = Schema({1: Tick}, serializer=serializer)
        encode = serializer.encoder()
        frames = [HEADER.pack(1, len(p)) + p for p in map(encode, ticks)]
        raw_time = min([await raw(pair, frames) for _ in range(3)])
        typed_time = min([await structured(pair, schema, ticks) for _ in range(3)])
        payload = len(frames[0]) - HEADER.size
        print(
            f"{name:<10} {payload:>7}B {messages / raw_time:>12,.0f} "
            f"{messages / typed_time:>12,.0f} {raw_time / typed_time:>6.2f}"
        )


async def main(messages: int) -> None:
    await measure("the in-memory stream", memory_pair, messages)
    async with QuicPairs().running() as quic:
        await measure("one WebTransport stream over QUIC (loopback)", quic.pair, messages)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().messages))
