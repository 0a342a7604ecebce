"""The session's memory bound and backpressure.

With a server of spec 1.0 (``make_scope()`` here offers no ``consumed``), credit follows
the session's reader, so the reader pauses on a full stream; with 1.1 the reader never
pauses and the stream's credit follows the app's reads (``test_consumed_credit.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from _session_helpers import RawServer, make_scope, settle

from starlette_webtransport.session import SessionConfig, WebTransportSession, constants
from starlette_webtransport.testing import WebTransportTestClient


async def test_reader_pauses_on_a_full_stream_until_it_is_read() -> None:
    server = RawServer()
    session = WebTransportSession(
        make_scope(), server.receive, server.send, config=SessionConfig(stream_buffer_size=10)
    )
    server.push({"type": "webtransport.connect"})
    await session.accept()
    for _ in range(5):
        server.push(
            {
                "type": "webtransport.stream.receive",
                "stream": 0,
                "data": b"x" * 6,
                "end_stream": False,
            }
        )
    server.push({"type": "webtransport.datagram.receive", "data": b"behind the full stream"})
    await settle()
    # 12 bytes buffered (over the limit of 10): nothing more is pulled from receive().
    state = await session.debug_state()
    assert state["reader"]["paused_on_stream"] == 0
    assert state["streams"][0]["buffered"] == 12
    assert server.events.qsize() == 4
    assert session.datagrams.queued == 0
    stream = await session.accept_bidirectional_stream(timeout=1)
    assert await stream.read(3) == b"xxx"  # 9 left: under the limit, the reader resumes
    await settle()
    assert (await session.debug_state())["streams"][0]["buffered"] == 15
    assert await stream.read(100) == b"x" * 15
    await settle()
    assert (await session.debug_state())["streams"][0]["buffered"] == 12
    assert server.events.qsize() == 1 and session.datagrams.queued == 0
    assert await stream.read(100) == b"x" * 12
    await settle()
    assert server.events.qsize() == 0
    assert await session.datagrams.receive() == b"behind the full stream"
    assert (await session.debug_state())["reader"]["paused_on_stream"] is None
    await session.close()


async def test_stop_sending_releases_a_paused_reader() -> None:
    server = RawServer()
    session = WebTransportSession(
        make_scope(), server.receive, server.send, config=SessionConfig(stream_buffer_size=4)
    )
    server.push({"type": "webtransport.connect"})
    await session.accept()
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"12345", "end_stream": False}
    )
    server.push({"type": "webtransport.datagram.receive", "data": b"d"})
    await settle()
    assert session.datagrams.queued == 0
    await (await session.accept_bidirectional_stream(timeout=1)).stop_sending(1)
    await settle()
    assert session.datagrams.queued == 1
    await session.close()


async def test_close_releases_a_paused_reader() -> None:
    server = RawServer()
    session = WebTransportSession(
        make_scope(), server.receive, server.send, config=SessionConfig(stream_buffer_size=1)
    )
    server.push({"type": "webtransport.connect"})
    await session.accept()
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"12", "end_stream": False}
    )
    await settle()
    await asyncio.wait_for(session.close(), 1)
    assert not (await session.debug_state())["reader"]["running"]


async def test_writes_wait_for_the_peer_to_read(monkeypatch: Any) -> None:
    """With the in-memory server's flow control, a fast writer is held back until the
    app reads, and the wait is reported by diagnostics. The app's session reports what
    it consumes (spec 1.1), so data its reader took but the app has not read still
    fills the stream's window."""
    monkeypatch.setattr(constants, "SLOW_WRITE_SECONDS", 0.05)
    go = asyncio.Event()
    received: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        config = SessionConfig(stream_buffer_size=100)
        session = WebTransportSession(scope, receive, send, config=config)
        await session.accept()
        async for stream in session.incoming_streams():
            await go.wait()
            while chunk := await stream.read(65536):
                received.append(len(chunk))

    client = WebTransportTestClient(app, stream_window=1000)
    async with client.connect("/") as session:
        stream = await session.create_unidirectional_stream()
        await stream.write(b"a" * 1000)  # taken by the app's reader, not read: window full
        blocked = asyncio.create_task(stream.write(b"b" * 10))
        await asyncio.sleep(0.1)
        assert not blocked.done()
        go.set()
        await asyncio.wait_for(blocked, 1)
        await stream.close()
        await asyncio.sleep(0.01)
        stats = await session.get_session_stats()
        assert stats["slow_writes"] == 1 and stats["max_write_wait"] >= 0.05
        issues = await session.diagnose_issues()
        assert any("1 stream writes waited" in issue for issue in issues)
    assert sum(received) == 1010
