from __future__ import annotations

import asyncio
from typing import Any

import pytest

from starlette_webtransport.structured import (
    MessageTooLargeError,
    MessageValidationError,
    Schema,
    StructuredDatagramTransport,
    TruncatedMessageError,
    UnknownMessageTypeError,
)

from .memory import memory_datagram_pair
from .messages import REGISTRY, SERIALIZERS, Chat, Empty, Message, Point

TIMEOUT = 5


@pytest.fixture(params=sorted(SERIALIZERS))
def schema(request: pytest.FixtureRequest) -> Schema[Message]:
    return Schema[Message](REGISTRY, serializer=SERIALIZERS[request.param])


async def receive(transport: StructuredDatagramTransport[Message]) -> Message:
    return await asyncio.wait_for(transport.receive_obj(), TIMEOUT)


async def test_round_trip(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.datagram_pair()
    client = StructuredDatagramTransport(near, schema=schema)
    server = StructuredDatagramTransport(far, serializer=schema.serializer, registry=REGISTRY)
    await client.send_obj(Chat("r", "hi", ["x"]))
    assert await receive(server) == Chat("r", "hi", ["x"])
    await server.send_obj(Empty())
    await server.send_obj(Point(1, 2))
    received = []
    async for obj in client:
        received.append(obj)
        if len(received) == 2:
            break
    assert received == [Empty(), Point(1, 2)]


async def test_exact_bytes(connection: Any) -> None:
    near, far = await connection.datagram_pair()
    json_schema = Schema[Message](REGISTRY, serializer=SERIALIZERS["json"])
    await StructuredDatagramTransport(near, schema=json_schema).send_obj(Point(1.5, -2.0))
    assert await asyncio.wait_for(far.receive(), TIMEOUT) == b'\x00\x01{"x":1.5,"y":-2.0}'


async def test_size_limit_counts_the_header(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.datagram_pair()
    client = StructuredDatagramTransport(near, schema=schema)
    limit = near.max_datagram_size
    encode = schema.serializer.encoder()
    fits = Chat("", "x" * limit, [])
    while 2 + len(encode(fits)) > limit:
        fits = Chat("", fits.text[1:], [])
    assert 2 + len(encode(fits)) == limit
    await client.send_obj(fits)
    assert await receive(StructuredDatagramTransport(far, schema=schema)) == fits
    too_big = Chat("", fits.text + "x", [])
    with pytest.raises(MessageTooLargeError) as info:
        await client.send_obj(too_big)
    assert (info.value.size, info.value.limit) == (limit + 1, limit)
    assert f"{limit + 1} bytes" in str(info.value) and f"limit of {limit}" in str(info.value)
    await client.send_obj(Empty())
    assert await receive(StructuredDatagramTransport(far, schema=schema)) == Empty()


@pytest.mark.parametrize("data", [b"", b"\x00"])
async def test_truncated_datagram(connection: Any, schema: Schema[Message], data: bytes) -> None:
    near, far = await connection.datagram_pair()
    server = StructuredDatagramTransport(far, schema=schema)
    await near.send(data)
    await near.send(b"\xff\xff" + schema.serializer.encoder()(Empty()))
    with pytest.raises(TruncatedMessageError) as info:
        await receive(server)
    assert (info.value.expected, info.value.received) == (2, len(data))
    assert await receive(server) == Empty()


async def test_bad_datagrams_raise_and_the_next_one_works(
    connection: Any, schema: Schema[Message]
) -> None:
    near, far = await connection.datagram_pair()
    server = StructuredDatagramTransport(far, schema=schema)
    encode = schema.serializer.encoder()
    await near.send(b"\x00\x07" + encode(Point(1, 2)))
    await near.send(b"\x00\x01" + encode({"x": 1, "y": None}))
    await near.send(b"\x00\x01" + encode(Point(3, 4)))
    with pytest.raises(UnknownMessageTypeError) as unknown:
        await receive(server)
    assert unknown.value.type_id == 7
    with pytest.raises(MessageValidationError) as invalid:
        await receive(server)
    assert (invalid.value.type_id, invalid.value.message_type) == (1, Point)
    assert "$.y" in invalid.value.detail
    assert await receive(server) == Point(3, 4)


async def test_iteration_ends_with_the_channel(schema: Schema[Message]) -> None:
    near, far = memory_datagram_pair()
    await StructuredDatagramTransport(near, schema=schema).send_obj(Point(1, 2))
    await near.close()
    server = StructuredDatagramTransport(far, schema=schema)
    assert [obj async for obj in server] == [Point(1, 2)]
