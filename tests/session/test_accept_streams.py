"""Waiting for one kind of peer stream, and structured streams typed per direction, over
real QUIC: ``accept_bidirectional_stream()`` leaves unidirectional streams queued for
``accept_unidirectional_stream()``, honours its timeout and ends with the session."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from test_quic_session import TIMEOUT, Live

from starlette_webtransport.session import (
    SessionClosedError,
    WebTransportReceiveStream,
    WebTransportStream,
    WebTransportTimeoutError,
)
from starlette_webtransport.structured import JSONSerializer, Schema, StructuredStream


class Ask(msgspec.Struct):
    question: str


class Answer(msgspec.Struct):
    text: str


# The same type id means a different type in each direction: each side reads its own.
ASKS = Schema[Ask]({1: Ask}, serializer=JSONSerializer())
ANSWERS = Schema[Answer]({1: Answer}, serializer=JSONSerializer())


async def test_each_kind_waits_for_its_own_streams(live: Live) -> None:
    async with asyncio.timeout(TIMEOUT), live.pair() as (client, server):
        one_way = await client.create_unidirectional_stream()
        await one_way.write(b"uni", end_stream=True)
        both_ways = await client.create_bidirectional_stream()
        await both_ways.write(b"bidi", end_stream=True)

        bidirectional = await server.accept_bidirectional_stream(timeout=TIMEOUT)
        assert isinstance(bidirectional, WebTransportStream)
        assert await bidirectional.read() == b"bidi"
        unidirectional = await server.accept_unidirectional_stream(timeout=TIMEOUT)
        assert isinstance(unidirectional, WebTransportReceiveStream)
        assert not isinstance(unidirectional, WebTransportStream)
        assert await unidirectional.read() == b"uni"

        with pytest.raises(WebTransportTimeoutError, match="no bidirectional stream"):
            await server.accept_bidirectional_stream(timeout=0.2)
        waiting = asyncio.create_task(server.accept_unidirectional_stream())
        await asyncio.sleep(0.05)
        await client.close(code=7)
        with pytest.raises(SessionClosedError):
            await waiting


async def test_a_stream_typed_per_direction_round_trips(live: Live) -> None:
    async with asyncio.timeout(TIMEOUT), live.pair() as (client, server):
        asking = StructuredStream(
            await client.create_bidirectional_stream(), send_schema=ASKS, receive_schema=ANSWERS
        )
        await asking.send_obj(Ask("why?"))
        answering = StructuredStream(
            await server.accept_bidirectional_stream(), send_schema=ANSWERS, receive_schema=ASKS
        )
        question = await answering.receive_obj()
        assert question == Ask("why?")
        await answering.send_obj(Answer(question.question.upper()))
        assert await asking.receive_obj() == Answer("WHY?")
        with pytest.raises(TypeError):
            await answering.send_obj(Ask("only the client asks"))  # type: ignore[arg-type]


async def test_the_factories_take_a_schema(live: Live) -> None:
    both = Schema[Ask | Answer]({1: Ask, 2: Answer}, serializer=JSONSerializer())
    async with asyncio.timeout(TIMEOUT), live.pair() as (client, server):
        stream = await client.create_structured_stream(schema=both)
        await stream.send_obj(Ask("schema?"))
        far = StructuredStream(await server.accept_bidirectional_stream(), schema=both)
        assert await far.receive_obj() == Ask("schema?")
        with pytest.raises(TypeError, match="not both"):
            await client.create_structured_datagram_transport(  # type: ignore[call-overload]
                schema=both, serializer=JSONSerializer(), registry={1: Ask}
            )
