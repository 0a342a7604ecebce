"""Datagrams: both directions, size limit, bounded queue with drop-oldest."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _session_helpers import RawServer, make_scope, settle

from starlette_webtransport.session import (
    DatagramTooLargeError,
    SessionClosedError,
    SessionConfig,
    WebTransportSession,
)
from starlette_webtransport.testing import WebTransportTestClient


async def test_datagrams_both_ways_and_the_size_limit() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        assert session.datagrams.max_datagram_size == 100
        async for datagram in session.datagrams:
            await session.datagrams.send(datagram[::-1])

    async with WebTransportTestClient(app, max_datagram_size=100).connect("/") as session:
        assert session.datagrams is session.datagrams
        await session.datagrams.send(b"abc")
        await session.datagrams.send(bytearray(b"x" * 100))
        assert await session.datagrams.receive() == b"cba"
        assert await session.datagrams.receive() == b"x" * 100
        with pytest.raises(DatagramTooLargeError) as info:
            await session.datagrams.send(b"y" * 101)
        assert (info.value.size, info.value.limit) == (101, 100)
        assert "101 bytes" in str(info.value) and "100 bytes" in str(info.value)
        assert isinstance(info.value, ValueError)
        with pytest.raises(TypeError):
            await session.datagrams.send("text")  # type: ignore[arg-type]
        stats = await session.get_session_stats()
        assert (stats["datagrams_sent"], stats["datagrams_received"]) == (2, 2)
        assert stats["datagram_bytes_sent"] == 103


async def test_oversized_datagram_sends_nothing() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(max_datagram_size=10), server.receive, server.send)
    server.push({"type": "webtransport.connect"})
    await session.accept()
    with pytest.raises(DatagramTooLargeError):
        await session.datagrams.send(b"0123456789a")
    assert server.sent_of("datagram.send") == []
    assert (await session.get_session_stats())["datagrams_sent"] == 0
    await session.close()


async def test_full_queue_drops_the_oldest_and_counts() -> None:
    server = RawServer()
    session = WebTransportSession(
        make_scope(), server.receive, server.send, config=SessionConfig(datagram_queue_size=3)
    )
    dropped_sizes: list[int] = []
    session.on("datagram.dropped", lambda event: dropped_sizes.append(event.data["size"]))
    server.push({"type": "webtransport.connect"})
    await session.accept()
    for index in range(7):
        server.push({"type": "webtransport.datagram.receive", "data": bytes([index]) * (index + 1)})
    await settle()
    assert session.datagrams.dropped == 4
    assert session.datagrams.queued == 3
    assert dropped_sizes == [1, 2, 3, 4]
    assert [await session.datagrams.receive() for _ in range(3)] == [
        b"\x04" * 5,
        b"\x05" * 6,
        b"\x06" * 7,
    ]
    stats = await session.get_session_stats()
    assert (stats["datagrams_received"], stats["datagrams_dropped"]) == (7, 4)
    assert any("4 received datagrams were dropped" in i for i in await session.diagnose_issues())
    await session.close()


async def test_receive_after_close() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    server.push({"type": "webtransport.connect"})
    await session.accept()
    server.push({"type": "webtransport.datagram.receive", "data": b"last"})
    waiter = asyncio.create_task(_collect(session))
    await settle()
    server.push({"type": "webtransport.disconnect", "code": 0, "reason": ""})
    assert await asyncio.wait_for(waiter, 1) == [b"last"]
    with pytest.raises(SessionClosedError):
        await session.datagrams.receive()
    with pytest.raises(SessionClosedError):
        await session.datagrams.send(b"x")


async def _collect(session: WebTransportSession) -> list[bytes]:
    return [datagram async for datagram in session.datagrams]
