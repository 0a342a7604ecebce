"""The broadcast layer on ``memory://`` over real QUIC: fan-out, exclusion, delivery
kinds, typed messages encoded once, presence, automatic leave and slow members."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from starlette_webtransport.broadcast import (
    SLOW_CONSUMER_CODE,
    Broadcast,
    Delivery,
    DeliveryPolicy,
    PresenceKind,
    SlowConsumer,
)
from starlette_webtransport.session import (
    SessionClosedError,
    StreamError,
    WebTransportReceiveStream,
)
from starlette_webtransport.structured import (
    DATAGRAM_HEADER,
    HEADER,
    MsgPackSerializer,
    Schema,
    Serializer,
)

from .helpers import members, next_stream_data, room_server, wait_for


async def test_datagrams_and_streams_reach_every_other_member() -> None:
    server = room_server(Broadcast())
    async with server as (base, sha256, _), members(base, sha256, "r", 3) as (a, b, c):
        await a.datagrams.send(b"from a")
        async with asyncio.timeout(5):
            assert await b.datagrams.receive() == b"from a"
            assert await c.datagrams.receive() == b"from a"
        stream = await b.create_unidirectional_stream()
        await stream.write(b"x" * 100_000 + b"from b", end_stream=True)
        for other in (a, c):
            assert await next_stream_data(other) == b"x" * 100_000 + b"from b"
        with pytest.raises(TimeoutError):  # nothing comes back to the sender
            await next_stream_data(b, timeout=0.3)
        assert a.datagrams.queued == 0


class CountingSerializer(MsgPackSerializer):
    """Counts encoder calls, to check one publish is encoded once, not once per member."""

    calls = 0

    def encoder(self) -> Callable[[Any], bytes]:
        encode = super().encoder()

        def counted(obj: Any) -> bytes:
            CountingSerializer.calls += 1
            return encode(obj)

        return counted


class Cursor(msgspec.Struct):
    x: int
    y: int


async def test_typed_messages_are_encoded_once_and_framed_per_delivery_kind() -> None:
    serializer: Serializer = CountingSerializer()
    schema = Schema[Cursor]({7: Cursor}, serializer=serializer)
    hub = Broadcast()
    async with room_server(hub) as (base, sha256, _), members(base, sha256, "typed", 3) as group:
        await wait_for(lambda: _count(hub, "typed", 3))
        before = CountingSerializer.calls
        # Published from the test itself: no session handler involved.
        assert await hub.publish("typed", Cursor(1, 2), schema=schema) == 3
        await hub.publish("typed", Cursor(3, 4), schema=schema, delivery=Delivery.STREAM)
        await hub.publish("typed", Cursor(5, 6), schema=schema, delivery=Delivery.STREAM)
        assert CountingSerializer.calls - before == 3
        payload = msgspec.msgpack.encode(Cursor(1, 2))
        for session in group:
            async with asyncio.timeout(5):
                assert await session.datagrams.receive() == DATAGRAM_HEADER.pack(7) + payload
                async for stream in session.incoming_streams():
                    assert isinstance(stream, WebTransportReceiveStream)
                    frames = await stream.readexactly(2 * (HEADER.size + len(payload)))
                    break
            decoded = []
            for offset in (0, len(frames) // 2):
                type_id, size = HEADER.unpack_from(frames, offset)
                body = frames[offset + HEADER.size : offset + HEADER.size + size]
                decoded.append(schema.decode(type_id, memoryview(body)))
            assert decoded == [Cursor(3, 4), Cursor(5, 6)]


async def _count(hub: Broadcast, group: str, n: int) -> bool:
    return len(await hub.members(group)) == n


async def test_presence_events_and_leave_when_the_session_ends() -> None:
    hub = Broadcast()
    async with room_server(hub) as (base, sha256, _):
        async with hub.watch("p") as events:
            async with members(base, sha256, "p", 2) as (first, _second):
                await wait_for(lambda: _count(hub, "p", 2))
                infos = await hub.members("p")
                assert sorted(info.data["n"] for info in infos) == [1, 2]
                await first.close()
                await wait_for(lambda: _count(hub, "p", 1))
            await wait_for(lambda: _count(hub, "p", 0))
            seen = []
            async with asyncio.timeout(5):
                async for event in events:
                    seen.append(event.kind)
                    if len(seen) == 4:
                        break
        join, leave = PresenceKind.JOIN, PresenceKind.LEAVE
        assert seen == [join, join, leave, leave]
        assert hub.local_members("p") == []


async def test_a_member_that_stops_reading_does_not_slow_the_others() -> None:
    """Per-member stream delivery with the CLOSE policy, in rounds of 800 messages to
    three reading members; then one stops reading. The other two get each round as fast
    as when all three read (the stalled one costs no more than a reader while its window
    and queue fill), and it is then closed with SLOW_CONSUMER_CODE."""
    policies = {Delivery.STREAM: DeliveryPolicy(1024, SlowConsumer.CLOSE)}
    hub = Broadcast(policies=policies)
    burst, size = 800, 1000
    async with room_server(hub) as (base, sha256, app), members(base, sha256, "s", 3) as group:
        counters = [_Counter(session) for session in group]
        await wait_for(lambda: _count(hub, "s", 3))

        async def round_trip() -> float:
            started = time.monotonic()
            for _ in range(burst):
                await hub.publish("s", b"m" * size, delivery=Delivery.STREAM)
            for counter in counters:
                counter.target += burst * size
                await counter.reached(30)
            return time.monotonic() - started

        baseline = min([await round_trip() for _ in range(2)])
        stalled = counters.pop()
        stalled.task.cancel()
        beside = [await round_trip() for _ in range(5)]  # 4 MB: more than it can hold
        print(f"round of {burst}: {baseline:.2f} s, then {beside} s beside a stalled member")
        for took in beside:
            # Equal when unloaded; the margin absorbs a shared machine. A stall would be
            # a round that never ends: the naive fan-out waited forever here.
            assert took < 2.5 * baseline + 0.5, (baseline, beside)
        closed = app.sessions[2]
        assert closed.is_closed
        assert closed.close_code == SLOW_CONSUMER_CODE
        await wait_for(lambda: _count(hub, "s", 2))
        # The close capsule waits behind the unread data (connection flow control): the
        # stalled member learns the code once it reads again.
        async with asyncio.timeout(10):
            assert stalled.stream is not None
            with contextlib.suppress(SessionClosedError, StreamError):
                while await stalled.stream.read(65536):
                    pass
            await stalled.session.wait_closed()
        assert stalled.session.close_code == SLOW_CONSUMER_CODE
        for counter in counters:
            counter.task.cancel()


class _Counter:
    """Reads a member's broadcast stream as fast as it comes, counting bytes."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.received = 0
        self.target = 0
        self.changed = asyncio.Event()
        self.stream: WebTransportReceiveStream | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for stream in self.session.incoming_streams():
            assert isinstance(stream, WebTransportReceiveStream)
            self.stream = stream
            with contextlib.suppress(SessionClosedError):  # the test ends, the session closes
                while chunk := await stream.read(65536):
                    self.received += len(chunk)
                    self.changed.set()

    async def reached(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self.received < self.target:
                self.changed.clear()
                await self.changed.wait()
