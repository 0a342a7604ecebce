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
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from structured.memory import memory_stream_pair  # noqa: E402

from starlette_webtransport.structured import (  # noqa: E402
    HEADER,
    JSONSerializer,
    MsgPackSerializer,
    Schema,
    Serializer,
    StructuredStream,
)


class Tick(msgspec.Struct):
    seq: int
    price: float
    symbol: str


async def raw(frames: list[bytes]) -> float:
    near, far = memory_stream_pair()

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


async def structured(schema: Schema[Tick], ticks: list[Tick]) -> float:
    near, far = memory_stream_pair()
    client = StructuredStream(near, schema=schema)
    server = StructuredStream(far, schema=schema)

    async def send() -> None:
        for tick in ticks:
            await client.send_obj(tick)
        await client.close()

    start = time.perf_counter()
    sender = asyncio.create_task(send())
    count = 0
    async for _ in server:
        count += 1
    await sender
    assert count == len(ticks)
    return time.perf_counter() - start


async def main(messages: int) -> None:
    ticks = [Tick(i, 100.0 + i / 100, "WTX") for i in range(messages)]
    print(f"{messages} small messages over the in-memory stream (best of 3)")
    print(f"{'serializer':<10} {'payload':>8} {'raw msg/s':>12} {'typed msg/s':>12} {'ratio':>6}")
    serializers: dict[str, Serializer] = {"msgpack": MsgPackSerializer(), "json": JSONSerializer()}
    for name, serializer in serializers.items():
        schema = Schema({1: Tick}, serializer=serializer)
        encode = serializer.encoder()
        frames = [HEADER.pack(1, len(p)) + p for p in map(encode, ticks)]
        raw_time = min([await raw(frames) for _ in range(3)])
        typed_time = min([await structured(schema, ticks) for _ in range(3)])
        payload = len(frames[0]) - HEADER.size
        print(
            f"{name:<10} {payload:>7}B {messages / raw_time:>12,.0f} "
            f"{messages / typed_time:>12,.0f} {raw_time / typed_time:>6.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().messages))
