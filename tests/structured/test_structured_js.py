"""``static/structured.js`` under node, against bytes produced and consumed by Python."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import shutil
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest

from starlette_webtransport.structured import (
    DATAGRAM_HEADER,
    DEFAULT_MAX_MESSAGE_SIZE,
    HEADER,
    MAX_TYPE_ID,
    MESSAGE_TOO_LARGE_CODE,
    JSONSerializer,
    Schema,
    StructuredDatagramTransport,
    StructuredSendStream,
    StructuredStream,
)

from .memory import memory_datagram_pair, memory_stream_pair
from .messages import REGISTRY, TYPE_IDS, Chat, Empty, Message, Point, Shape

NODE = shutil.which("node")  # Node.js is on every development and CI machine of ours
HARNESS = Path(__file__).with_name("js_harness.mjs")

SCHEMA = Schema[Message](REGISTRY, serializer=JSONSerializer())
SAMPLES: list[Message] = [
    Point(1.5, -2.0),
    Chat("lobby", "h\u00e9llo \U0001f600", ["ann"], reply_to=7),
    Shape("tri", [Point(0, 0), Point(1, 0.5)], {"z": 3}, b"\x00\xff\x10", True),
    Empty(),
]


async def run_js(op: str, **request: Any) -> Any:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(HARNESS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(
        process.communicate(json.dumps({"op": op, **request}).encode()), 30
    )
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def as_js(message: Message) -> dict[str, Any]:
    return {"typeId": TYPE_IDS[type(message)], "value": msgspec.to_builtins(message)}


async def python_wire(messages: list[Message]) -> bytes:
    near, far = memory_stream_pair()
    sender = StructuredSendStream(near, schema=SCHEMA)
    for message in messages:
        await sender.send_obj(message)
    await sender.close()
    return await far.read()


def cut(data: bytes, sizes: list[int]) -> list[str]:
    pieces, start = [], 0
    for size in sizes:
        pieces.append(b64(data[start : start + size]))
        start += size
    return [*pieces, b64(data[start:])]


@pytest.mark.parametrize("pattern", ["whole", "bytewise", "random"])
async def test_js_reads_python_frames(pattern: str) -> None:
    wire = await python_wire(SAMPLES)
    sizes = {
        "whole": [],
        "bytewise": [1] * len(wire),
        "random": [random.Random(7).randint(1, 9) for _ in range(len(wire) // 5)],
    }[pattern]
    answer = await run_js("receive", pieces=cut(wire, sizes))
    assert answer["error"] is None
    assert answer["messages"] == [as_js(m) for m in SAMPLES]
    iterated = await run_js("iterate", pieces=cut(wire, sizes))
    assert iterated["messages"] == [as_js(m) for m in SAMPLES]


async def test_python_reads_js_frames() -> None:
    messages = [
        [1, {"x": 1.5, "y": -2}],
        [2, {"room": "lobby", "text": "h\u00e9llo \U0001f600", "mentions": ["ann"], "reply_to": 7}],
        [3, {"name": "tri", "vertices": [{"x": 0, "y": 0}, {"x": 1, "y": 0.5}], "tags": {"z": 3},
             "data": b64(b"\x00\xff\x10"), "closed": True}],
        [0xFFFF, {}],
    ]  # fmt: skip
    answer = await run_js("send", messages=messages)
    assert answer["closed"] and answer["errors"] == []
    assert len(answer["writes"]) == len(messages)  # one write per frame
    near, far = memory_stream_pair()
    for write in answer["writes"]:
        await near.write(base64.b64decode(write))
    await near.close()
    assert [obj async for obj in StructuredStream(far, schema=SCHEMA)] == SAMPLES


async def test_js_send_errors() -> None:
    messages = [[70000, {}], [2, {"text": "x" * 50}]]
    answer = await run_js("send", messages=messages, maxMessageSize=20)
    assert answer["writes"] == []
    assert answer["errors"][0]["name"] == "RangeError"
    assert answer["errors"][1]["name"] == "MessageTooLargeError"
    assert (answer["errors"][1]["size"], answer["errors"][1]["limit"]) == (61, 20)


@pytest.mark.parametrize("cut_at", [3, 10])
async def test_js_truncated_frame_at_fin(cut_at: int) -> None:
    wire = await python_wire([Empty(), Point(1, 2)])
    first = len(await python_wire([Empty()]))
    answer = await run_js("receive", pieces=[b64(wire[: first + cut_at])])
    assert answer["messages"] == [as_js(Empty())]
    error = answer["error"]
    assert error["name"] == "TruncatedMessageError"
    assert (error["expected"], error["received"]) == (
        6 if cut_at < 6 else len(wire) - first,
        cut_at,
    )
    assert answer["after"] is None


async def test_js_oversized_frame_stops_the_stream() -> None:
    wire = await python_wire([Empty()]) + struct.pack(">HI", 1, 5000) + b"x" * 10
    answer = await run_js("receive", pieces=[b64(wire)], maxMessageSize=1000, fin=False)
    assert answer["messages"] == [as_js(Empty())]
    assert answer["error"]["name"] == "MessageTooLargeError"
    assert (answer["error"]["size"], answer["error"]["limit"]) == (5000, 1000)
    assert len(answer["cancelled"]) == 1  # the reader was cancelled: STOP_SENDING
    assert answer["after"] is None


async def test_js_bad_json_is_skipped() -> None:
    wire = struct.pack(">HI", 2, 3) + b"{x}" + await python_wire([Point(3, 4)])
    answer = await run_js("receive", pieces=[b64(wire)])
    assert answer["error"] is None
    bad, good = answer["messages"]
    assert (bad["name"], bad["typeId"]) == ("MessageDecodeError", 2)
    assert good == as_js(Point(3, 4))


async def test_js_datagrams() -> None:
    near, far = memory_datagram_pair()
    ours = StructuredDatagramTransport(near, schema=SCHEMA)
    python_datagrams = []
    for message in SAMPLES:
        await ours.send_obj(message)
        python_datagrams.append(b64(await far.receive()))
    answer = await run_js(
        "datagrams",
        encode=[[1, {"x": 0.5, "y": 1}], [0xFFFF, {}], [2, {"text": "y" * 40}]],
        decode=[*python_datagrams, b64(b"\x00")],
        maxDatagramSize=30,
    )
    assert answer["decoded"][:-1] == [as_js(m) for m in SAMPLES]
    assert answer["decoded"][-1]["name"] == "TruncatedMessageError"
    assert answer["encoded"][2]["name"] == "MessageTooLargeError"
    assert (answer["encoded"][2]["size"], answer["encoded"][2]["limit"]) == (53, 30)
    for data in answer["encoded"][:2]:
        await far.send(base64.b64decode(data))
    assert await ours.receive_obj() == Point(0.5, 1)
    assert await ours.receive_obj() == Empty()


async def test_js_constants_match_python() -> None:
    assert await run_js("constants") == {
        "HEADER_SIZE": HEADER.size,
        "DATAGRAM_HEADER_SIZE": DATAGRAM_HEADER.size,
        "MAX_TYPE_ID": MAX_TYPE_ID,
        "DEFAULT_MAX_MESSAGE_SIZE": DEFAULT_MAX_MESSAGE_SIZE,
        "MESSAGE_TOO_LARGE_CODE": MESSAGE_TOO_LARGE_CODE,
    }
