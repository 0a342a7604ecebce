"""Interop with pywebtransport's structured streams and datagrams, whose framing ours
keeps byte for byte, so a pywebtransport peer with its JSON serializer can talk to us."""

from __future__ import annotations

import asyncio
import dataclasses

from pywebtransport.datagram.structured import (
    StructuredDatagramTransport as TheirDatagrams,
)
from pywebtransport.serializer.json import JSONSerializer as TheirJSON
from pywebtransport.stream.structured import StructuredStream as TheirStream

from starlette_webtransport.structured import (
    JSONSerializer,
    StructuredDatagramTransport,
    StructuredStream,
)

from .memory import memory_datagram_pair, memory_stream_pair
from .messages import Chat, Point


@dataclasses.dataclass
class TheirPoint:
    x: float
    y: float


@dataclasses.dataclass
class TheirChat:
    room: str
    text: str
    mentions: list[str]
    reply_to: int | None = None


OURS: dict[int, type[Point | Chat]] = {1: Point, 2: Chat}
THEIRS = {1: TheirPoint, 2: TheirChat}


async def test_stream_interop() -> None:
    near, far = memory_stream_pair()
    theirs = TheirStream(stream=near, serializer=TheirJSON(), registry=THEIRS)  # type: ignore[arg-type]
    ours = StructuredStream(far, serializer=JSONSerializer(), registry=OURS)
    await theirs.send_obj(obj=TheirChat("lobby", "hi", ["ann"]))
    await theirs.send_obj(obj=TheirPoint(1.5, 2.0))
    assert await asyncio.wait_for(ours.receive_obj(), 5) == Chat("lobby", "hi", ["ann"])
    assert await asyncio.wait_for(ours.receive_obj(), 5) == Point(1.5, 2.0)
    await ours.send_obj(Chat("lobby", "hello", [], reply_to=3))
    assert await asyncio.wait_for(theirs.receive_obj(), 5) == TheirChat("lobby", "hello", [], 3)


class _DatagramEndpoint:
    """pywebtransport's datagram transport API over our in-memory datagram channel."""

    def __init__(self, channel: object) -> None:
        self._channel = channel

    async def send(self, *, data: bytes, priority: int = 0, ttl: float | None = None) -> None:
        await self._channel.send(data)  # type: ignore[attr-defined]

    async def receive(self, **_: object) -> bytes:  # pywebtransport passes timeout=
        data: bytes = await self._channel.receive()  # type: ignore[attr-defined]
        return data


async def test_datagram_interop() -> None:
    near, far = memory_datagram_pair()
    theirs = TheirDatagrams(
        datagram_transport=_DatagramEndpoint(near),  # type: ignore[arg-type]
        serializer=TheirJSON(),
        registry=THEIRS,
    )
    ours = StructuredDatagramTransport(far, serializer=JSONSerializer(), registry=OURS)
    await theirs.send_obj(obj=TheirPoint(-1.0, 0.25))
    assert await asyncio.wait_for(ours.receive_obj(), 5) == Point(-1.0, 0.25)
    await ours.send_obj(Chat("r", "t", ["m"]))
    assert await asyncio.wait_for(theirs.receive_obj(), 5) == TheirChat("r", "t", ["m"])
