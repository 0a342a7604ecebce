"""Events, statistics after traffic, debug_state, diagnose_issues, monitor_health."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _session_helpers import RawServer, accepted, make_scope, settle

from starlette_webtransport.session import (
    Event,
    EventType,
    SessionStats,
    StreamResetError,
    WebTransportSession,
    WebTransportStream,
    constants,
)
from starlette_webtransport.testing import WebTransportTestClient


async def test_handlers_sync_and_async_on_and_off(caplog: pytest.LogCaptureFixture) -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    seen: list[tuple[str, Any]] = []

    def sync_handler(event: Event) -> None:
        seen.append(("sync", event.type))

    async def async_handler(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(("async", event.type))

    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    session.on("session.ready", broken)
    session.on("session.ready", sync_handler)
    session.on(EventType.SESSION_READY, async_handler)
    session.on("stream.opened", sync_handler)
    with pytest.raises(ValueError, match=r"unknown event 'session\.redy'"):
        session.on("session.redy", sync_handler)
    server.push({"type": "webtransport.connect"})
    with caplog.at_level(logging.ERROR, logger="starlette_webtransport.session"):
        await session.accept()
    assert "handler bug" in caplog.text
    assert seen == [("sync", EventType.SESSION_READY), ("async", EventType.SESSION_READY)]
    session.off("stream.opened", sync_handler)
    with pytest.raises(ValueError, match="not registered"):
        session.off("stream.opened", sync_handler)
    await session.create_bidirectional_stream()
    assert len(seen) == 2
    await session.close()


async def test_stream_events_in_order() -> None:
    server = RawServer()
    session = await accepted(server)
    log: list[tuple[str, Any]] = []
    for name in ("stream.opened", "stream.closed", "stream.reset", "stream.stop_sending"):
        session.on(name, lambda e: log.append((e.type.value, e.data["stream"].stream_id)))
    session.on("session.closed", lambda e: log.append((e.type.value, e.data["by"])))
    local = await session.create_bidirectional_stream()
    server.push(
        {"type": "webtransport.stream.receive", "stream": 2, "data": b"", "end_stream": False}
    )
    server.push({"type": "webtransport.stream.stop_sending", "stream": 1, "code": 4})
    server.push({"type": "webtransport.stream.reset", "stream": 1, "code": 5})
    server.push({"type": "webtransport.stream.reset", "stream": 2, "code": 6})
    await settle()
    assert local.state.value == "closed"
    await session.close()
    assert log == [
        ("stream.opened", 1),
        ("stream.opened", 2),
        ("stream.stop_sending", 1),
        ("stream.reset", 1),
        ("stream.closed", 1),
        ("stream.reset", 2),
        ("stream.closed", 2),
        ("session.closed", "local"),
    ]


async def test_stats_after_traffic() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        async for stream in session.incoming_streams():
            try:
                data = await stream.read()
                if isinstance(stream, WebTransportStream):
                    await stream.write(data, end_stream=True)
            except StreamResetError:
                pass
            await session.datagrams.send(b"ack")

    async with WebTransportTestClient(app).connect("/") as session:
        for _ in range(3):
            stream = await session.create_bidirectional_stream()
            await stream.write(b"12345", end_stream=True)
            assert await stream.read() == b"12345"
        uni = await session.create_unidirectional_stream()
        await uni.write(b"abc", end_stream=True)
        doomed = await session.create_bidirectional_stream()
        await doomed.write(b"x")  # the server sees a stream with its first byte, as over QUIC
        await doomed.reset(1)
        await doomed.stop_sending(2)
        await session.datagrams.send(b"d1")
        await session.datagrams.send(b"d2")
        for _ in range(5):
            await asyncio.wait_for(session.datagrams.receive(), 1)
        await settle()
        stats = await session.get_session_stats()
        summary = await session.get_summary()
    assert stats["streams_created"] == 5
    assert stats["bidirectional_streams"] == 4 and stats["unidirectional_streams"] == 1
    assert stats["streams_closed"] == 5 and stats["active_streams"] == 0
    assert stats["stream_errors"] == 2
    assert stats["bytes_sent"] == 19 and stats["bytes_received"] == 15
    assert stats["datagrams_sent"] == 2 and stats["datagrams_received"] == 5
    assert stats["datagram_bytes_received"] == 15
    assert stats["protocol_errors"] == 0 and stats["closed_at"] is None
    assert stats["uptime"] > 0 and stats["ready_at"] >= stats["created_at"]
    assert summary["streams_created"] == 5 and summary["state"] == "connected"
    assert summary["issues"] == 0
    final = await session.get_session_stats()
    assert final["closed_at"] is not None and final["state"] == "closed"


def test_session_stats_dataclass() -> None:
    stats = SessionStats(session_id="x", created_at=100.0)
    assert stats.uptime == 0.0 and stats.active_streams == 0
    stats.ready_at, stats.closed_at = 110.0, 125.5
    stats.streams_created, stats.streams_closed = 7, 3
    assert stats.uptime == 15.5 and stats.active_streams == 4
    as_dict = stats.to_dict()
    assert as_dict["active_streams"] == 4 and as_dict["uptime"] == 15.5
    assert as_dict["session_id"] == "x" and as_dict["protocol_errors"] == 0


async def test_debug_state_reports_streams_pending_opens_and_queues() -> None:
    server = RawServer(auto_open=False)
    session = await accepted(server, datagram_queue_size=2)
    opener = asyncio.create_task(session.create_unidirectional_stream())
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"abc", "end_stream": False}
    )
    server.push({"type": "webtransport.datagram.receive", "data": b"1"})
    await settle()
    state = await session.debug_state()
    assert state["session"]["role"] == "server" and state["session"]["state"] == "connected"
    assert state["reader"]["running"] and state["reader"]["paused_on_stream"] is None
    [stream] = state["streams"]
    assert stream["stream_id"] == 0 and stream["direction"] == "bidirectional"
    assert stream["buffered"] == 3 and stream["receive_side"] == "open"
    assert stream["send_side"] == "open" and stream["bytes_sent"] == 0
    assert state["incoming_queue"] == {
        "queued": [0],
        "limit": constants.DEFAULT_MAX_INCOMING_STREAMS,
    }
    assert len(state["pending_opens"]) == 1 and not state["pending_opens"][0]["bidirectional"]
    assert state["datagrams"]["queued"] == 1 and state["datagrams"]["queue_size"] == 2
    assert state["config"]["datagram_queue_size"] == 2
    opener.cancel()
    await session.close()


async def test_diagnose_issues_finds_stuck_things(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RawServer(auto_open=False)
    session = await accepted(server, stream_buffer_size=2, max_incoming_streams=1)
    assert await session.diagnose_issues() == []
    monkeypatch.setattr(constants, "STUCK_OPEN_SECONDS", 0.0)
    monkeypatch.setattr(constants, "STUCK_HALF_CLOSED_SECONDS", 0.0)
    monkeypatch.setattr(constants, "READER_PAUSED_SECONDS", 0.0)
    opener = asyncio.create_task(session.create_bidirectional_stream())
    await settle()
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"", "end_stream": True}
    )
    server.push(
        {"type": "webtransport.stream.receive", "stream": 4, "data": b"", "end_stream": False}
    )
    server.push({"type": "webtransport.stream.opened", "stream": 3, "bidirectional": False})
    server.push({"type": "webtransport.stream.opened", "stream": 1, "bidirectional": True})
    server.push({"type": "webtransport.bogus"})
    server.push(
        {"type": "webtransport.stream.receive", "stream": 8, "data": b"xyz", "end_stream": False}
    )
    await settle()
    issues = "\n".join(await session.diagnose_issues())
    assert "stream 0 has been half_closed_remote" in issues
    assert "2 peer streams were refused" in issues
    assert "3 events from the server broke the ASGI contract" in issues
    assert "unexpected ASGI message 'webtransport.bogus'" in issues
    assert opener.done() and "answered the stream open" in str(opener.exception())
    opener2 = asyncio.create_task(session.create_unidirectional_stream())
    await settle()
    assert "a unidirectional stream open has waited" in "\n".join(await session.diagnose_issues())
    opener2.cancel()
    await session.close(code=12, reason="done")
    issues = "\n".join(await session.diagnose_issues())
    assert "closed by the local with code 12" in issues


async def test_diagnose_reports_a_paused_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "READER_PAUSED_SECONDS", 0.0)
    server = RawServer()
    session = await accepted(server, stream_buffer_size=2)
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"xyz", "end_stream": False}
    )
    await settle()
    issues = await session.diagnose_issues()
    assert any("paused" in i and "stream 0" in i and "3 unread bytes" in i for i in issues)
    await session.close()


async def test_monitor_health_reports_and_ends_with_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RawServer()
    session = await accepted(server, datagram_queue_size=1)
    reports: list[list[str]] = []
    session.on("session.health", lambda event: reports.append(list(event.data["issues"])))
    server.push({"type": "webtransport.datagram.receive", "data": b"1"})
    server.push({"type": "webtransport.datagram.receive", "data": b"2"})
    await settle()
    with pytest.raises(ValueError):
        await session.monitor_health(check_interval=0)
    with caplog.at_level(logging.WARNING, logger="starlette_webtransport.session"):
        monitor = asyncio.create_task(session.monitor_health(check_interval=0.01))
        await asyncio.sleep(0.05)
        assert not monitor.done()
        await session.close()
        await asyncio.wait_for(monitor, 1)
    assert len(reports) >= 2 and "1 received datagrams were dropped" in reports[0][0]
    assert "datagrams were dropped" in caplog.text


async def test_protocol_violations_are_counted_not_fatal() -> None:
    server = RawServer()
    session = await accepted(server)
    server.push({"type": "webtransport.stream.opened", "stream": 1, "bidirectional": True})
    server.push(
        {"type": "webtransport.stream.receive", "stream": 1, "data": b"x", "end_stream": False}
    )
    server.push({"type": "webtransport.connect"})
    await settle()
    stream = await session.create_unidirectional_stream()
    server.push(
        {
            "type": "webtransport.stream.receive",
            "stream": stream.stream_id,
            "data": b"",
            "end_stream": False,
        }
    )
    server.push({"type": "webtransport.stream.reset", "stream": stream.stream_id, "code": 1})
    await settle()
    stats = await session.get_session_stats()
    assert stats["protocol_errors"] == 5
    assert len((await session.debug_state())["recent_protocol_errors"]) == 5
    assert session.is_ready
    await session.close()


async def test_a_failing_receive_channel_closes_the_session() -> None:
    class Failing(RawServer):
        async def receive(self) -> Any:
            message = await super().receive()
            if message["type"] == "webtransport.drain":
                raise ConnectionError("transport broke")
            return message

    server = Failing()
    session = await accepted(server)
    server.push({"type": "webtransport.drain"})
    await asyncio.wait_for(session.wait_closed(), 1)
    assert session.close_code is None
    issues = await session.diagnose_issues()
    assert any("ASGI channel failed" in i and "transport broke" in i for i in issues)
