"""Property tests: any registered value survives any split of the byte stream."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starlette_webtransport.structured import (
    Schema,
    StructuredDatagramTransport,
    StructuredSendStream,
    StructuredStream,
    UnknownMessageTypeError,
)

from .memory import memory_datagram_pair, memory_stream_pair
from .messages import REGISTRY, SERIALIZERS, TYPE_IDS, Message, messages

SCHEMAS = {name: Schema[Message](REGISTRY, serializer=s) for name, s in SERIALIZERS.items()}
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def encode_frame(schema: Schema[Message], message: Message) -> bytes:
    payload = schema.serializer.encoder()(message)
    return struct.pack(">HI", TYPE_IDS[type(message)], len(payload)) + payload


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


async def send_pieces(stream: object, pieces: list[bytes]) -> None:
    for piece in pieces:
        await stream.write(piece)  # type: ignore[attr-defined]
    await stream.close()  # type: ignore[attr-defined]


@PROPERTY_SETTINGS
@given(
    name=st.sampled_from(sorted(SCHEMAS)),
    values=st.lists(messages, max_size=10),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
async def test_round_trip_over_any_split(name: str, values: list[Message], cuts: list[int]) -> None:
    schema = SCHEMAS[name]
    wire = b"".join(encode_frame(schema, value) for value in values)

    # The library writes exactly the documented format, one write per message ...
    near, far = memory_stream_pair()
    sender = StructuredSendStream(near, schema=schema)
    for value in values:
        await sender.send_obj(value)
    await sender.close()
    assert await far.readexactly(len(wire)) == wire
    assert await far.read() == b""

    # ... and reads it back however the bytes are split.
    near, far = memory_stream_pair()
    writer = asyncio.create_task(send_pieces(near, split(wire, cuts)))
    received = [obj async for obj in StructuredStream(far, schema=schema)]
    await writer
    assert received == values


frames_or_junk = st.one_of(
    messages,
    st.tuples(st.integers(4, 0xFFFE), st.binary(max_size=40)),  # unregistered type ids
)


@PROPERTY_SETTINGS
@given(
    name=st.sampled_from(sorted(SCHEMAS)),
    items=st.lists(frames_or_junk, max_size=10),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
async def test_unknown_frames_are_skipped_wherever_they_fall(
    name: str, items: list[Message | tuple[int, bytes]], cuts: list[int]
) -> None:
    schema = SCHEMAS[name]
    wire = b"".join(
        struct.pack(">HI", item[0], len(item[1])) + item[1]
        if isinstance(item, tuple)
        else encode_frame(schema, item)
        for item in items
    )
    near, far = memory_stream_pair()
    writer = asyncio.create_task(send_pieces(near, split(wire, cuts)))
    receiver = StructuredStream(far, schema=schema)
    received: list[Message | int] = []
    for _ in items:
        try:
            received.append(await receiver.receive_obj())
        except UnknownMessageTypeError as exc:
            received.append(exc.type_id)
    assert [obj async for obj in receiver] == []
    await writer
    assert received == [item[0] if isinstance(item, tuple) else item for item in items]


@PROPERTY_SETTINGS
@given(name=st.sampled_from(sorted(SCHEMAS)), value=messages)
async def test_datagram_round_trip(name: str, value: Message) -> None:
    schema = SCHEMAS[name]
    near, far = memory_datagram_pair(max_size=2**16)
    await StructuredDatagramTransport(near, schema=schema).send_obj(value)
    assert await StructuredDatagramTransport(far, schema=schema).receive_obj() == value
