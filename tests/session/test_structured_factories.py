"""create_structured_stream / create_structured_datagram_transport wrap session objects."""

from __future__ import annotations

from typing import Any

import msgspec

from starlette_webtransport.session import WebTransportSession, WebTransportStream
from starlette_webtransport.structured import (
    MsgPackSerializer,
    StructuredDatagramTransport,
    StructuredStream,
)
from starlette_webtransport.testing import WebTransportTestClient


class Ping(msgspec.Struct):
    n: int


REGISTRY = {1: Ping}


async def test_structured_stream_and_datagrams_round_trip() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        datagrams = await session.create_structured_datagram_transport(
            serializer=MsgPackSerializer(), registry=REGISTRY
        )
        async for stream in session.incoming_streams():
            assert isinstance(stream, WebTransportStream)
            typed = StructuredStream(stream, serializer=MsgPackSerializer(), registry=REGISTRY)
            ping = await typed.receive_obj()
            await typed.send_obj(Ping(ping.n + 1))
            await datagrams.send_obj(Ping(ping.n * 10))

    async with WebTransportTestClient(app).connect("/") as session:
        stream = await session.create_structured_stream(
            serializer=MsgPackSerializer(), registry=REGISTRY, timeout=1
        )
        assert isinstance(stream, StructuredStream)
        datagrams = await session.create_structured_datagram_transport(
            serializer=MsgPackSerializer(), registry=REGISTRY
        )
        assert isinstance(datagrams, StructuredDatagramTransport)
        await stream.send_obj(Ping(41))
        assert await stream.receive_obj() == Ping(42)
        assert await datagrams.receive_obj() == Ping(410)
