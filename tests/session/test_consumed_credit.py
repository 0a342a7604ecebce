"""The session's side of spec 1.1: it reports what the app read, stream by stream.

The batching arithmetic is tested without I/O (``ConsumedCounts``); the session is then
driven by a hand-played server that offers ``consumed``, to check which
``webtransport.stream.consumed`` messages it sends and when; and the in-memory test
client shows the same independence of streams as the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _session_helpers import RawServer, make_scope, settle

from starlette_webtransport.session import SessionConfig, WebTransportSession, constants
from starlette_webtransport.session.credit import ConsumedCounts
from starlette_webtransport.testing import WebTransportTestClient

BATCH = constants.CONSUMED_REPORT_BYTES


def test_reports_are_due_per_batch_and_count_as_sent() -> None:
    counts = ConsumedCounts(100)
    assert not counts.taken(4, 60)
    assert counts.due() == []  # under the batch: nothing due
    assert counts.taken(4, 50)  # 110: due once
    assert not counts.taken(4, 200)  # already due: no second wake-up
    assert not counts.taken(8, 10)
    assert counts.due() == [(4, 310)]
    assert counts.pending(4) == 0 and counts.pending(8) == 10
    assert counts.due() == []


def test_flush_reports_any_positive_count() -> None:
    counts = ConsumedCounts(100)
    assert not counts.flush(4)  # nothing read: nothing to report
    counts.taken(4, 1)
    assert counts.flush(4)
    assert not counts.flush(4)  # already due
    assert counts.due() == [(4, 1)]


def test_restored_bytes_are_not_reported_twice() -> None:
    """A read cancelled half-way puts back what it took; if that was already reported,
    the count goes negative and absorbs the same bytes when they are read again."""
    counts = ConsumedCounts(100)
    counts.taken(4, 150)
    assert counts.due() == [(4, 150)]
    counts.restored(4, 40)  # 40 of the reported bytes went back to the buffer
    assert counts.pending(4) == -40
    assert not counts.flush(4)
    counts.taken(4, 40)  # read again: nothing new to report
    assert counts.pending(4) == 0 and not counts.flush(4)
    counts.taken(4, 5)
    assert counts.flush(4) and counts.due() == [(4, 5)]
    counts.taken(8, 3)
    counts.clear()
    assert counts.pending(8) == 0 and counts.due() == []
    with pytest.raises(ValueError):
        ConsumedCounts(0)


def data(stream: int, payload: bytes, end: bool = False) -> dict[str, Any]:
    return {
        "type": "webtransport.stream.receive",
        "stream": stream,
        "data": payload,
        "end_stream": end,
    }


def consumed(server: RawServer) -> list[tuple[int, int]]:
    return [(m["stream"], m["bytes"]) for m in server.sent_of("stream.consumed")]


async def consuming_session(server: RawServer, **config: Any) -> WebTransportSession:
    scope = make_scope()
    scope["extensions"]["webtransport"]["consumed"] = True
    session = WebTransportSession(
        scope, server.receive, server.send, config=SessionConfig(**config)
    )
    server.push({"type": "webtransport.connect"})
    await session.accept()
    return session


async def test_the_session_asks_for_consumed_credit_and_reports_reads() -> None:
    server = RawServer()
    session = await consuming_session(server)
    assert [m["type"] for m in server.sent] == ["webtransport.accept", "webtransport.credit"]
    assert server.sent[1]["returned_on"] == "consumed"
    server.push(data(0, bytes(BATCH + 10)))
    stream = await session.accept_bidirectional_stream(timeout=1)
    assert await stream.read(BATCH - 1) == bytes(BATCH - 1)
    await settle()
    assert consumed(server) == []  # under a batch, and the app did not wait
    assert len(await stream.read(5)) == 5  # the batch is reached: one report
    await settle()
    assert consumed(server) == [(0, BATCH + 4)]
    reading = asyncio.create_task(stream.readexactly(7))  # 6 buffered, then it waits
    await settle()
    assert consumed(server) == [(0, BATCH + 4), (0, 6)]  # about to wait: all reported
    reading.cancel()  # the 6 bytes go back to the buffer
    await asyncio.gather(reading, return_exceptions=True)
    assert await stream.read(6) == bytes(6)
    await settle()
    server.push(data(0, b"", end=True))
    assert await stream.read() == b""
    await settle()
    assert sum(size for _, size in consumed(server)) == BATCH + 10  # each byte once
    await session.close()


async def test_a_full_stream_does_not_stop_the_reader() -> None:
    """The 1.0 pause (``test_memory_bound.py``) is gone with a 1.1 server: the window
    bounds the stream, so the reader goes on to other streams and datagrams."""
    server = RawServer()
    session = await consuming_session(server, stream_buffer_size=10)
    server.push(data(0, bytes(100)))
    server.push(data(4, b"second"))
    server.push({"type": "webtransport.datagram.receive", "data": b"behind"})
    await settle()
    assert (await session.debug_state())["reader"]["paused_on_stream"] is None
    full = await session.accept_bidirectional_stream(timeout=1)
    second = await session.accept_bidirectional_stream(timeout=1)
    assert await second.read(100) == b"second"
    assert await session.datagrams.receive() == b"behind"
    await full.stop_sending(3)  # dropped unread: reported consumed with the stop
    await settle()
    assert (0, 100) in consumed(server)
    await session.close()


async def test_streams_of_the_test_client_have_windows_of_their_own() -> None:
    """In memory too: a stream the app does not read fills its window, and the next
    stream still echoes."""
    go = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        stuck = await session.accept_bidirectional_stream()
        fresh = await session.accept_bidirectional_stream()
        await fresh.write(await fresh.read(), end_stream=True)
        await go.wait()
        await stuck.write(b"%d" % len(await stuck.read()), end_stream=True)

    client = WebTransportTestClient(app, stream_window=1000)
    async with client.connect("/") as session:
        stuck = await session.create_bidirectional_stream()
        await stuck.write(b"x" * 1000)  # fills the stream's window
        writing = asyncio.create_task(stuck.write(b"y" * 1000, end_stream=True))
        fresh = await session.create_bidirectional_stream()
        await fresh.write(b"ping", end_stream=True)
        assert await asyncio.wait_for(fresh.read(), 1) == b"ping"
        assert not writing.done()
        go.set()
        await asyncio.wait_for(writing, 1)
        assert await asyncio.wait_for(stuck.read(), 1) == b"2000"
