"""Every bad input over real QUIC, sent by either end, and what it leaves working.

The parametrized tests in ``test_structured_streams.py`` and ``test_structured_datagrams.py``
already run over QUIC (the ``quic`` connection factory). These add what only a real session
shows: the peer's view of each error (a STOP_SENDING with ``MESSAGE_TOO_LARGE_CODE`` for an
oversized frame, nothing at all for a bad frame), a stream that was in the middle of a frame
when the error happened and completes afterwards, fresh streams and datagrams both ways, and
both sessions' statistics and diagnostics.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from starlette_webtransport.session import (
    SessionState,
    StreamResetError,
    StreamStoppedError,
    WebTransportStream,
)
from starlette_webtransport.structured import (
    MESSAGE_TOO_LARGE_CODE,
    EndOfStream,
    MessageDecodeError,
    MessageTooLargeError,
    MessageValidationError,
    Schema,
    StructuredDatagramTransport,
    StructuredStream,
    TruncatedMessageError,
    UnknownMessageTypeError,
)

from .conftest import QuicConnection
from .messages import REGISTRY, SERIALIZERS, Chat, Empty, Message, Point, Shape

TIMEOUT = 10.0
LIMIT = 1000
"""The receivers' max_message_size."""


@pytest.fixture(params=sorted(SERIALIZERS))
def schema(request: pytest.FixtureRequest) -> Schema[Message]:
    return Schema[Message](REGISTRY, serializer=SERIALIZERS[request.param])


def frame(type_id: int, payload: bytes) -> bytes:
    return struct.pack(">HI", type_id, len(payload)) + payload


def encode(schema: Schema[Message], value: Any) -> bytes:
    return schema.serializer.encoder()(value)


BadInput = Callable[
    [QuicConnection, WebTransportStream, StructuredStream[Message], Schema[Message]],
    Awaitable[None],
]


async def unknown_type_id(
    quic: QuicConnection,
    near: WebTransportStream,
    far: StructuredStream[Message],
    schema: Schema[Message],
) -> None:
    await near.write(frame(99, b"meant for a newer peer"))
    with pytest.raises(UnknownMessageTypeError) as caught:
        await far.receive_obj()
    assert caught.value.type_id == 99 and "99" in str(caught.value)
    await near.write(frame(1, encode(schema, Point(1, 2))), end_stream=True)
    assert await far.receive_obj() == Point(1, 2)


async def validation_failure(
    quic: QuicConnection,
    near: WebTransportStream,
    far: StructuredStream[Message],
    schema: Schema[Message],
) -> None:
    bad = {"name": "sq", "vertices": [{"x": 0, "y": 0}, {"x": "one", "y": 0}], "tags": {}}
    await near.write(frame(3, encode(schema, bad | {"data": b""})))
    with pytest.raises(MessageValidationError) as caught:
        await far.receive_obj()
    assert (caught.value.type_id, caught.value.message_type) == (3, Shape)
    assert "$.vertices[1].x" in caught.value.detail and "$.vertices[1].x" in str(caught.value)
    await near.write(frame(1, encode(schema, Point(3, 4))), end_stream=True)
    assert await far.receive_obj() == Point(3, 4)


async def undecodable_payload(
    quic: QuicConnection,
    near: WebTransportStream,
    far: StructuredStream[Message],
    schema: Schema[Message],
) -> None:
    await near.write(frame(2, b"\xc1{"))
    with pytest.raises(MessageDecodeError) as caught:
        await far.receive_obj()
    assert (caught.value.type_id, caught.value.message_type) == (2, Chat)
    await near.write(frame(0xFFFF, encode(schema, Empty())), end_stream=True)
    assert await far.receive_obj() == Empty()


async def frame_over_the_limit(
    quic: QuicConnection,
    near: WebTransportStream,
    far: StructuredStream[Message],
    schema: Schema[Message],
) -> None:
    await near.write(struct.pack(">HI", 1, LIMIT + 1) + b"x" * 100)
    with pytest.raises(MessageTooLargeError) as caught:
        await far.receive_obj()
    assert (caught.value.size, caught.value.limit) == (LIMIT + 1, LIMIT)
    # The peer sees STOP_SENDING with MESSAGE_TOO_LARGE_CODE, and its writes fail with it.
    assert await quic.wait_stopped(near) == MESSAGE_TOO_LARGE_CODE
    with pytest.raises(StreamStoppedError) as stopped:
        await near.write(b"more")
    assert (stopped.value.code, stopped.value.stream_id) == (MESSAGE_TOO_LARGE_CODE, near.stream_id)
    with pytest.raises(EndOfStream):
        await far.receive_obj()


async def truncated_at_fin(
    quic: QuicConnection,
    near: WebTransportStream,
    far: StructuredStream[Message],
    schema: Schema[Message],
) -> None:
    point = frame(1, encode(schema, Point(1, 2)))
    await near.write(frame(0xFFFF, encode(schema, Empty())) + point[:10], end_stream=True)
    assert await far.receive_obj() == Empty()
    with pytest.raises(TruncatedMessageError) as caught:
        await far.receive_obj()
    assert (caught.value.expected, caught.value.received) == (len(point), 10)
    with pytest.raises(EndOfStream):
        await far.receive_obj()


async def reset_mid_frame(
    quic: QuicConnection,
    near: WebTransportStream,
    far: StructuredStream[Message],
    schema: Schema[Message],
) -> None:
    await near.write(frame(1, encode(schema, Point(1, 2)))[:9])
    receiving = asyncio.create_task(far.receive_obj())
    await quic.accepted(near)  # the other end has the stream and its nine bytes
    await near.reset(0x52E4)
    with pytest.raises(StreamResetError) as caught:
        await receiving
    assert (caught.value.code, caught.value.stream_id) == (0x52E4, near.stream_id)


BAD_INPUTS: dict[str, tuple[BadInput, int]] = {
    # name: (case, RESET_STREAM/STOP_SENDING each session counts)
    "unknown type id": (unknown_type_id, 0),
    "validation failure": (validation_failure, 0),
    "undecodable payload": (undecodable_payload, 0),
    "frame over max_message_size": (frame_over_the_limit, 1),
    "truncated frame at FIN": (truncated_at_fin, 0),
    "reset mid-frame": (reset_mid_frame, 1),
}


@pytest.mark.parametrize("opener", ["client", "server"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_bad_input_leaves_the_session_and_its_streams_working(
    quic: QuicConnection, schema: Schema[Message], opener: str, case: str
) -> None:
    bad_input, stream_errors = BAD_INPUTS[case]
    async with asyncio.timeout(TIMEOUT):
        # A stream in the middle of a frame while the bad input arrives on another one.
        witness_near, witness_far = await quic.open_stream_pair(opener=opener)
        chat = frame(2, encode(schema, Chat("lobby", "still here", ["ann"])))
        await witness_near.write(chat[:4])

        near, far = await quic.open_stream_pair(opener=opener)
        receiver = StructuredStream(far, schema=schema, max_message_size=LIMIT)
        await bad_input(quic, near, receiver, schema)

        # The bad stream's other direction still carries messages back to the sender.
        await receiver.send_obj(Point(5, 6))
        await receiver.close()
        assert [m async for m in StructuredStream(near, schema=schema)] == [Point(5, 6)]

        await witness_near.write(chat[4:], end_stream=True)
        witness = StructuredStream(witness_far, schema=schema)
        assert [m async for m in witness] == [Chat("lobby", "still here", ["ann"])]
        await witness_far.close()

        # New streams and datagrams work both ways.
        for side in ("client", "server"):
            fresh_near, fresh_far = await quic.open_stream_pair(opener=side)
            sender = StructuredStream(fresh_near, schema=schema)
            await sender.send_obj(Point(7, 8))
            await sender.close()
            fresh = StructuredStream(fresh_far, schema=schema)
            assert [m async for m in fresh] == [Point(7, 8)]
            await fresh.close()
            near_datagrams, far_datagrams = await quic.datagram_pair(sender=side)
            await StructuredDatagramTransport(near_datagrams, schema=schema).send_obj(Empty())
            arrived = StructuredDatagramTransport(far_datagrams, schema=schema)
            assert await arrived.receive_obj() == Empty()

        for end in (quic.client, quic.server):
            session = end.session
            assert session.state is SessionState.CONNECTED
            stats = await session.get_session_stats()
            assert stats["stream_errors"] == stream_errors
            assert stats["protocol_errors"] == 0 and stats["streams_refused"] == 0
            assert stats["streams_created"] == 4
            assert await session.diagnose_issues() == []


@pytest.mark.parametrize("sender", ["client", "server"])
async def test_bad_datagrams_both_ways(
    quic: QuicConnection, schema: Schema[Message], sender: str
) -> None:
    near, far = await quic.datagram_pair(sender=sender)
    outgoing = StructuredDatagramTransport(near, schema=schema)
    incoming = StructuredDatagramTransport(far, schema=schema)
    async with asyncio.timeout(TIMEOUT):
        # Each bad datagram is waited for before the next is sent: datagrams may reorder.
        await near.send(b"\x00\x07" + encode(schema, Point(1, 2)))
        with pytest.raises(UnknownMessageTypeError) as unknown:
            await incoming.receive_obj()
        assert unknown.value.type_id == 7
        await near.send(b"\x00\x01" + encode(schema, {"x": 1, "y": None}))
        with pytest.raises(MessageValidationError) as invalid:
            await incoming.receive_obj()
        assert (invalid.value.type_id, invalid.value.message_type) == (1, Point)
        assert "$.y" in invalid.value.detail
        for short in (b"", b"\x00"):
            await near.send(short)
            with pytest.raises(TruncatedMessageError) as truncated:
                await incoming.receive_obj()
            assert (truncated.value.expected, truncated.value.received) == (2, len(short))

        limit = near.max_datagram_size
        fits = Chat("", "x" * limit, [])
        while 2 + len(encode(schema, fits)) > limit:
            fits = Chat("", fits.text[1:], [])
        await outgoing.send_obj(fits)
        assert await incoming.receive_obj() == fits
        with pytest.raises(MessageTooLargeError) as too_large:
            await outgoing.send_obj(Chat("", fits.text + "x", []))
        assert (too_large.value.size, too_large.value.limit) == (limit + 1, limit)

        await outgoing.send_obj(Point(3, 4))
        assert await incoming.receive_obj() == Point(3, 4)
        for end in (quic.client, quic.server):
            stats = await end.session.get_session_stats()
            assert (stats["datagrams_dropped"], stats["protocol_errors"]) == (0, 0)
        sending = quic.client if sender == "client" else quic.server
        sent = await sending.session.get_session_stats()
        assert sent["datagrams_sent"] == 6  # the oversized message was never sent


async def test_session_factories_for_structured_transports(quic: QuicConnection) -> None:
    """``create_structured_stream`` / ``create_structured_datagram_transport`` on each end."""
    serializer = SERIALIZERS["msgpack"]
    client, server = quic.client.session, quic.server.session
    async with asyncio.timeout(TIMEOUT):
        for near_session, far_session in ((client, server), (server, client)):
            stream = await near_session.create_structured_stream(
                serializer=serializer, registry=REGISTRY
            )
            await stream.send_obj(Chat("r", "typed", []))
            assert isinstance(stream.stream, WebTransportStream)
            accepted = await quic.accepted(stream.stream)
            answer = StructuredStream(accepted, serializer=serializer, registry=REGISTRY)
            assert await answer.receive_obj() == Chat("r", "typed", [])
            await answer.send_obj(Point(0, 1))
            await answer.close()
            await stream.close()
            assert [m async for m in stream] == [Point(0, 1)]

            datagrams = await near_session.create_structured_datagram_transport(
                serializer=serializer, registry=REGISTRY
            )
            peer = await far_session.create_structured_datagram_transport(
                serializer=serializer, registry=REGISTRY
            )
            await datagrams.send_obj(Empty())
            assert await peer.receive_obj() == Empty()
