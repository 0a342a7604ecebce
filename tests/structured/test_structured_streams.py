from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec
import pytest

from starlette_webtransport.structured import (
    MESSAGE_TOO_LARGE_CODE,
    EndOfStream,
    JSONSerializer,
    MessageDecodeError,
    MessageTooLargeError,
    MessageValidationError,
    MsgPackSerializer,
    Schema,
    Serializer,
    StructuredReceiveStream,
    StructuredSendStream,
    StructuredStream,
    TruncatedMessageError,
    UnknownMessageTypeError,
)

from .messages import REGISTRY, SERIALIZERS, TYPE_IDS, Chat, Empty, Message, Point, Shape

TIMEOUT = 5


@pytest.fixture(params=sorted(SERIALIZERS))
def schema(request: pytest.FixtureRequest) -> Schema[Message]:
    return Schema[Message](REGISTRY, serializer=SERIALIZERS[request.param])


def frame(type_id: int, payload: bytes) -> bytes:
    """The wire format, written out independently of the library."""
    return struct.pack(">HI", type_id, len(payload)) + payload


def payload(schema: Schema[Message], value: Any) -> bytes:
    return schema.serializer.encoder()(value)


async def receive(stream: StructuredReceiveStream[Message]) -> Message:
    return await asyncio.wait_for(stream.receive_obj(), TIMEOUT)


SAMPLES: list[Message] = [
    Point(1.5, -2.0),
    Chat("lobby", "hi", ["ann", "bob"], reply_to=7),
    Shape("tri", [Point(0, 0), Point(1, 0), Point(0, 1)], {"z": 3}, b"\x00\xff", True),
    Empty(),
]


async def test_round_trip_both_directions(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    client = StructuredStream(near, schema=schema)
    for sample in SAMPLES:
        await client.send_obj(sample)
    server = StructuredStream(far, schema=schema)  # wrapping an incoming stream
    for sample in SAMPLES:
        assert await receive(server) == sample
        await server.send_obj(sample)
    await server.close()
    await client.close()
    assert [obj async for obj in client] == SAMPLES
    assert [obj async for obj in server] == []
    with pytest.raises(EndOfStream):
        await server.receive_obj()


async def test_serializer_and_registry_form(connection: Any) -> None:
    """The session API's ``create_structured_stream(serializer=, registry=)`` form."""
    near, far = await connection.open_stream_pair()
    sender = StructuredSendStream(near, serializer=JSONSerializer(), registry=REGISTRY)
    receiver = StructuredReceiveStream(far, serializer=JSONSerializer(), registry=REGISTRY)
    await sender.send_obj(Point(3, 4))
    await sender.close()
    assert [obj async for obj in receiver] == [Point(3, 4)]


DOCUMENTED_POINT = {  # docs/structured.md, section 5
    "json": "00 01 00 00 00 12 7b 22 78 22 3a 31 2e 35 2c 22 79 22 3a 2d 32 2e 30 7d",
    "msgpack": "00 01 00 00 00 17 82 a1 78 cb 3f f8 00 00 00 00 00 00"
    " a1 79 cb c0 00 00 00 00 00 00 00",
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED_POINT))
async def test_exact_bytes_on_the_wire(connection: Any, name: str) -> None:
    near, far = await connection.open_stream_pair()
    schema = Schema[Message](REGISTRY, serializer=SERIALIZERS[name])
    await StructuredStream(near, schema=schema).send_obj(Point(1.5, -2.0))
    await near.close()
    expected = bytes.fromhex(DOCUMENTED_POINT[name])
    assert await far.readexactly(len(expected)) == expected
    assert await far.read(100) == b""


async def test_frames_split_and_coalesced_across_writes(
    connection: Any, schema: Schema[Message]
) -> None:
    near, far = await connection.open_stream_pair()
    wire = b"".join(frame(TYPE_IDS[type(s)], payload(schema, s)) for s in SAMPLES)
    await near.write(wire[:3])  # inside the first header
    await near.write(wire[3:9])  # header complete, payload started
    await near.write(wire[9:])  # the rest of the first frame and three more
    await near.close()
    assert [obj async for obj in StructuredStream(far, schema=schema)] == SAMPLES


async def test_unknown_type_id_is_skipped(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    await near.write(frame(99, b"whatever the peer meant"))
    await near.write(frame(1, payload(schema, Point(1, 2))))
    server = StructuredStream(far, schema=schema)
    with pytest.raises(UnknownMessageTypeError) as info:
        await receive(server)
    assert info.value.type_id == 99
    assert "99" in str(info.value)
    assert await receive(server) == Point(1, 2)


async def test_invalid_payload_names_field_path(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    bad = {"name": "sq", "vertices": [{"x": 0, "y": 0}, {"x": "one", "y": 0}], "tags": {}}
    await near.write(frame(3, payload(schema, bad | {"data": b""})))
    await near.write(frame(1, payload(schema, Point(5, 6))))
    server = StructuredStream(far, schema=schema)
    with pytest.raises(MessageValidationError) as info:
        await receive(server)
    error = info.value
    assert (error.type_id, error.message_type) == (3, Shape)
    assert "Expected `float`, got `str`" in error.detail
    assert "$.vertices[1].x" in error.detail
    assert "Shape" in str(error) and "type id 3" in str(error)
    assert await receive(server) == Point(5, 6)


async def test_malformed_payload(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    await near.write(frame(2, b"\xc1{"))  # neither MessagePack nor JSON
    await near.write(frame(0xFFFF, payload(schema, Empty())))
    server = StructuredStream(far, schema=schema)
    with pytest.raises(MessageDecodeError) as info:
        await receive(server)
    assert not isinstance(info.value, MessageValidationError)
    assert (info.value.type_id, info.value.message_type) == (2, Chat)
    assert await receive(server) == Empty()


async def test_oversized_frame_stops_the_stream_only(
    connection: Any, schema: Schema[Message]
) -> None:
    near, far = await connection.open_stream_pair()
    other_near, other_far = await connection.open_stream_pair()
    await near.write(struct.pack(">HI", 1, 5000) + b"x" * 100)
    server = StructuredStream(far, schema=schema, max_message_size=1000)
    with pytest.raises(MessageTooLargeError) as info:
        await receive(server)
    assert (info.value.size, info.value.limit) == (5000, 1000)
    assert "5000" in str(info.value) and "1000" in str(info.value)
    assert await asyncio.wait_for(connection.wait_stopped(near), TIMEOUT) == MESSAGE_TOO_LARGE_CODE
    with pytest.raises(EndOfStream):
        await server.receive_obj()
    # The session's other streams are unaffected.
    await StructuredStream(other_near, schema=schema).send_obj(Point(7, 8))
    assert await receive(StructuredStream(other_far, schema=schema)) == Point(7, 8)


async def test_limit_is_inclusive(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    body = payload(schema, Point(1, 1))
    await near.write(frame(1, body))
    server = StructuredStream(far, schema=schema, max_message_size=len(body))
    assert await receive(server) == Point(1, 1)


async def test_sending_an_oversized_message_writes_nothing(
    connection: Any, schema: Schema[Message]
) -> None:
    near, far = await connection.open_stream_pair()
    client = StructuredStream(near, schema=schema, max_message_size=64)
    with pytest.raises(MessageTooLargeError) as info:
        await client.send_obj(Chat("room", "x" * 100, []))
    assert info.value.limit == 64 and info.value.size > 100
    await client.send_obj(Point(0, 0))
    assert await receive(StructuredStream(far, schema=schema)) == Point(0, 0)


async def test_unregistered_type_writes_nothing(connection: Any, schema: Schema[Message]) -> None:
    class Stranger(msgspec.Struct):
        pass

    near, far = await connection.open_stream_pair()
    client: StructuredStream[Any] = StructuredStream(near, schema=schema)
    with pytest.raises(TypeError, match="Stranger is not in the message registry"):
        await client.send_obj(Stranger())
    await client.send_obj(Empty())
    assert await receive(StructuredStream(far, schema=schema)) == Empty()


@pytest.mark.parametrize("cut", [3, 10])  # inside the header; inside the payload
async def test_truncated_frame_at_fin(connection: Any, schema: Schema[Message], cut: int) -> None:
    near, far = await connection.open_stream_pair()
    data = frame(1, payload(schema, Point(1, 2)))
    await near.write(frame(0xFFFF, payload(schema, Empty())) + data[:cut])
    await near.close()
    server = StructuredStream(far, schema=schema)
    assert await receive(server) == Empty()
    with pytest.raises(TruncatedMessageError) as info:
        await receive(server)
    assert info.value.received == cut
    assert info.value.expected == (6 if cut < 6 else len(data))
    with pytest.raises(EndOfStream):
        await server.receive_obj()


async def test_reset_inside_a_frame(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    other_near, other_far = await connection.open_stream_pair()
    await near.write(frame(1, payload(schema, Point(1, 2)))[:9])
    server = StructuredStream(far, schema=schema)
    reader = asyncio.create_task(receive(server))
    await asyncio.sleep(0.01)
    await near.reset(42)
    with pytest.raises(connection.reset_error) as info:
        await reader
    assert info.value.code == 42
    await StructuredStream(other_near, schema=schema).send_obj(Point(7, 8))
    assert await receive(StructuredStream(other_far, schema=schema)) == Point(7, 8)


async def test_cancelled_receive_loses_nothing(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    data = frame(2, payload(schema, Chat("r", "hello", [])))
    await near.write(data[:4])
    server = StructuredStream(far, schema=schema)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(server.receive_obj(), 0.05)
    await near.write(data[4:12])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(server.receive_obj(), 0.05)
    await near.write(data[12:])
    assert await receive(server) == Chat("r", "hello", [])


async def test_concurrent_receivers_are_refused(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    await near.write(b"\x00")  # announce the stream to a real server
    server = StructuredStream(far, schema=schema)
    first = asyncio.create_task(server.receive_obj())
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="already being awaited"):
        await server.receive_obj()
    await near.write(frame(1, payload(schema, Point(1, 2)))[1:])
    assert await asyncio.wait_for(first, TIMEOUT) == Point(1, 2)


async def test_stop_sending_ends_receiving(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    await near.write(frame(1, payload(schema, Point(1, 2))))
    server = StructuredStream(far, schema=schema)
    assert await receive(server) == Point(1, 2)
    await server.stop_sending(5)
    assert await asyncio.wait_for(connection.wait_stopped(near), TIMEOUT) == 5
    with pytest.raises(EndOfStream):
        await server.receive_obj()
    await server.send_obj(Point(3, 4))  # the other direction still works
    assert await receive(StructuredStream(near, schema=schema)) == Point(3, 4)


async def test_large_message_spanning_many_reads(connection: Any, schema: Schema[Message]) -> None:
    near, far = await connection.open_stream_pair()
    big = Shape("big", [Point(i, -i) for i in range(20_000)], {}, bytes(range(256)) * 400)
    client = StructuredStream(near, schema=schema, max_message_size=2**22)
    server = StructuredStream(far, schema=schema, max_message_size=2**22)
    sender = asyncio.create_task(client.send_obj(big))
    assert await receive(server) == big
    await sender


@pytest.mark.parametrize("size", [0, -1, 2**32])
def test_max_message_size_must_fit_the_length_field(size: int) -> None:
    schema = Schema[Message](REGISTRY, serializer=MsgPackSerializer())
    with pytest.raises(ValueError, match="max_message_size"):
        StructuredStream(object(), schema=schema, max_message_size=size)  # type: ignore[call-overload]


def test_schema_and_registry_forms_are_exclusive() -> None:
    serializer: Serializer = MsgPackSerializer()
    schema = Schema[Message](REGISTRY, serializer=serializer)
    with pytest.raises(TypeError, match="not both"):
        StructuredStream(  # type: ignore[call-overload]
            object(), schema=schema, serializer=serializer, registry=REGISTRY
        )
    with pytest.raises(TypeError, match="both serializer= and registry="):
        StructuredStream(object(), serializer=serializer)  # type: ignore[call-overload]
