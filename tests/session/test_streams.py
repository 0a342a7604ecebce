"""Streams in both directions and roles: ids, reading, FIN, reset and stop codes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _session_helpers import RawServer, accepted, settle

from starlette_webtransport.session import (
    StreamClosedError,
    StreamDirection,
    StreamLimitError,
    StreamResetError,
    StreamState,
    StreamStoppedError,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportSession,
    WebTransportStream,
    WebTransportTimeoutError,
    constants,
)
from starlette_webtransport.testing import WebTransportTestClient


async def next_incoming(session: WebTransportSession) -> Any:
    async for stream in session.incoming_streams():
        return stream
    raise AssertionError("session closed without a stream")


async def test_ids_and_classes_follow_quic_numbering_in_both_roles() -> None:
    got: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        for name in ("server_bidi", "server_uni", "server_bidi2"):
            got[name] = stream = await (
                session.create_unidirectional_stream()
                if name == "server_uni"
                else session.create_bidirectional_stream()
            )
            await stream.write(b"s")  # the peer sees a stream with its first byte
        got["from_client"] = [await next_incoming(session), await next_incoming(session)]
        await session.wait_closed()

    async with WebTransportTestClient(app).connect("/") as session:
        client_bidi = await session.create_bidirectional_stream()
        client_uni = await session.create_unidirectional_stream()
        await client_bidi.write(b"c")
        await client_uni.write(b"c")
        from_server = [await next_incoming(session) for _ in range(3)]
        await settle()
    assert (client_bidi.stream_id, client_uni.stream_id) == (4, 6)
    assert type(client_bidi) is WebTransportStream
    assert type(client_uni) is WebTransportSendStream
    assert client_bidi.direction is StreamDirection.BIDIRECTIONAL
    assert client_uni.direction is StreamDirection.SEND_ONLY
    assert [s.stream_id for s in from_server] == [5, 7, 9]
    assert [type(s) for s in from_server] == [
        WebTransportStream,
        WebTransportReceiveStream,
        WebTransportStream,
    ]
    assert from_server[1].direction is StreamDirection.RECEIVE_ONLY
    server_ids = [got[k].stream_id for k in ("server_bidi", "server_uni", "server_bidi2")]
    assert server_ids == [5, 7, 9]
    assert [s.stream_id for s in got["from_client"]] == [4, 6]
    assert [type(s) for s in got["from_client"]] == [WebTransportStream, WebTransportReceiveStream]


async def test_bidirectional_echo_with_fin_both_ways() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        async for stream in session.incoming_streams():
            assert isinstance(stream, WebTransportStream)
            async for chunk in stream:
                await stream.write(chunk.upper())
            assert stream.at_eof() and stream.state is StreamState.HALF_CLOSED_REMOTE
            await stream.close()
            assert stream.state is StreamState.CLOSED

    async with WebTransportTestClient(app).connect("/") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"hello ")
        await stream.write(bytearray(b"world"))
        await stream.close()
        assert stream.state is StreamState.HALF_CLOSED_LOCAL
        assert await stream.readexactly(11) == b"HELLO WORLD"
        assert await stream.read() == b""
        assert stream.at_eof() and stream.state is StreamState.CLOSED


async def test_unidirectional_both_ways() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        incoming = await next_incoming(session)
        data = await incoming.read()
        assert incoming.state is StreamState.CLOSED
        out = await session.create_unidirectional_stream()
        await out.write(data * 2, end_stream=True)
        with pytest.raises(StreamClosedError, match="after close"):
            await out.write(b"more")
        await session.wait_closed()

    async with WebTransportTestClient(app).connect("/") as session:
        out = await session.create_unidirectional_stream()
        await out.write(b"ab", end_stream=True)
        back = await next_incoming(session)
        assert isinstance(back, WebTransportReceiveStream)
        assert not hasattr(back, "write")
        assert not hasattr(out, "read")
        assert await back.read() == b"abab"


async def test_read_variants() -> None:
    server = RawServer()
    session = await accepted(server)

    def data(payload: bytes, end: bool = False) -> None:
        server.push(
            {"type": "webtransport.stream.receive", "stream": 0, "data": payload, "end_stream": end}
        )

    data(b"line one\nline two\nrest")
    stream = await next_incoming(session)
    assert await stream.read(0) == b""
    assert await stream.readuntil() == b"line one\n"
    assert await stream.read(4) == b"line"
    assert await stream.readuntil(b"two\n") == b" two\n"
    assert await stream.readexactly(2) == b"re"
    pending = asyncio.create_task(stream.readexactly(5))
    await settle()
    assert not pending.done()
    data(b"st--")
    data(b"tail", end=True)
    assert await pending == b"stst-"
    with pytest.raises(asyncio.IncompleteReadError) as info:
        await stream.readexactly(10)
    assert info.value.partial == b"-tail" and info.value.expected == 10
    assert stream.at_eof()
    assert await stream.read(5) == b"" and await stream.read() == b""
    with pytest.raises(ValueError):
        await stream.readexactly(-1)
    with pytest.raises(ValueError):
        await stream.readuntil(b"")
    await session.close()


async def test_readuntil_without_separator_at_eof_and_over_limit() -> None:
    server = RawServer()
    session = await accepted(server, stream_buffer_size=8)
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"abc", "end_stream": True}
    )
    server.push(
        {"type": "webtransport.stream.receive", "stream": 4, "data": b"x" * 9, "end_stream": False}
    )
    first = await next_incoming(session)
    with pytest.raises(asyncio.IncompleteReadError) as info:
        await first.readuntil()
    assert info.value.partial == b"abc"
    second = await next_incoming(session)
    with pytest.raises(asyncio.LimitOverrunError):
        await second.readuntil()
    assert await second.read(100) == b"x" * 9  # the data stayed buffered
    await session.close()


async def test_concurrent_readers_are_refused() -> None:
    server = RawServer()
    session = await accepted(server)
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"", "end_stream": False}
    )
    stream = await next_incoming(session)
    first = asyncio.create_task(stream.read(1))
    await settle()
    with pytest.raises(RuntimeError, match="already waiting"):
        await stream.read(1)
    first.cancel()
    await session.close()


@pytest.mark.parametrize("code", [0, 1, 0xFFFF_FFFF, None])
async def test_peer_reset_raises_after_buffered_data(code: int | None) -> None:
    server = RawServer()
    session = await accepted(server)
    events: list[Any] = []
    session.on("stream.reset", events.append)
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"kept", "end_stream": False}
    )
    server.push({"type": "webtransport.stream.reset", "stream": 0, "code": code})
    stream = await next_incoming(session)
    await settle()
    assert stream.state is StreamState.HALF_CLOSED_REMOTE
    with pytest.raises(StreamResetError) as info:
        await stream.read()  # read-all: the partial data goes back to the buffer
    assert info.value.code == code and info.value.stream_id == 0
    assert await stream.read(100) == b"kept"
    with pytest.raises(StreamResetError):
        await stream.readexactly(1)
    assert [e.data["code"] for e in events] == [code]
    await stream.write(b"the other side still works")
    await session.close()


async def test_readexactly_keeps_partial_data_on_reset() -> None:
    server = RawServer()
    session = await accepted(server)
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"12", "end_stream": False}
    )
    stream = await next_incoming(session)
    task = asyncio.create_task(stream.readexactly(4))
    await settle()
    server.push({"type": "webtransport.stream.reset", "stream": 0, "code": 5})
    with pytest.raises(StreamResetError):
        await task
    assert await stream.read(10) == b"12"
    await session.close()


async def test_reset_and_stop_codes_travel_both_ways() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        first = await next_incoming(session)  # the client will reset it
        with pytest.raises(StreamResetError) as reset:
            await first.read()
        seen["reset_seen_by_server"] = reset.value.code
        second = await next_incoming(session)  # the server stops it
        await second.stop_sending(77)
        with pytest.raises(StreamClosedError, match="stop_sending"):
            await second.read(1)
        mine = await session.create_bidirectional_stream()
        await mine.write(b"x")
        await mine.reset(123)
        await mine.reset(124)  # no-op
        with pytest.raises(StreamClosedError, match="reset"):
            await mine.write(b"y")
        await session.wait_closed()

    async with WebTransportTestClient(app).connect("/") as session:
        first = await session.create_bidirectional_stream()
        await first.write(b"abc")
        await first.reset(4242)
        second = await session.create_unidirectional_stream()
        with pytest.raises(StreamStoppedError) as stopped:
            for _ in range(100):
                await second.write(b"more")
                await settle(2)
        assert stopped.value.code == 77
        with pytest.raises(StreamStoppedError):
            await second.drain()
        assert second.state is StreamState.CLOSED
        from_server = await next_incoming(session)
        assert await from_server.read(1) == b"x"
        with pytest.raises(StreamResetError) as reset:
            await from_server.read(1)
        assert reset.value.code == 123
        await from_server.close()  # FIN on our side
        assert from_server.state is StreamState.CLOSED
    assert seen["reset_seen_by_server"] == 4242


async def test_stop_sending_discards_and_ignores_late_data() -> None:
    server = RawServer()
    session = await accepted(server)
    server.push(
        {"type": "webtransport.stream.receive", "stream": 2, "data": b"abc", "end_stream": False}
    )
    stream = await next_incoming(session)
    await stream.stop_sending(3)
    assert server.sent_of("stream.stop_sending") == [
        {"type": "webtransport.stream.stop_sending", "stream": 2, "code": 3}
    ]
    assert stream.state is StreamState.CLOSED
    server.push(
        {"type": "webtransport.stream.receive", "stream": 2, "data": b"late", "end_stream": True}
    )
    server.push({"type": "webtransport.stream.reset", "stream": 2, "code": 3})
    await settle()
    stats = await session.get_session_stats()
    assert stats["streams_created"] == 1 and stats["protocol_errors"] == 0
    assert (await session.debug_state())["incoming_queue"]["queued"] == []
    await session.close()


async def test_codes_are_validated() -> None:
    server = RawServer()
    session = await accepted(server)
    stream = await session.create_bidirectional_stream()
    for bad in (-1, 2**32, "1"):
        with pytest.raises(ValueError):
            await stream.reset(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await stream.stop_sending(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        await stream.write("text")  # type: ignore[arg-type]
    await session.close()


async def test_stream_state_transitions_and_session_end() -> None:
    server = RawServer()
    session = await accepted(server)
    stream = await session.create_bidirectional_stream()
    assert stream.state is StreamState.OPEN
    server.push(
        {"type": "webtransport.stream.receive", "stream": 1, "data": b"x", "end_stream": True}
    )
    await settle()
    assert stream.state is StreamState.HALF_CLOSED_REMOTE
    other = await session.create_unidirectional_stream()
    await session.close()
    assert stream.state is StreamState.CLOSED and other.state is StreamState.CLOSED
    assert await stream.read() == b"x"  # buffered data survives the session's end
    stats = await session.get_session_stats()
    assert stats["streams_closed"] == 2 and stats["active_streams"] == 0


async def test_drain_waits_for_writes_in_flight() -> None:
    release = asyncio.Event()

    class SlowServer(RawServer):
        async def send(self, message: Any) -> None:
            if message["type"] == "webtransport.stream.send":
                await release.wait()
            await super().send(message)

    server = SlowServer()
    session = await accepted(server)
    stream = await session.create_unidirectional_stream()
    write = asyncio.create_task(stream.write(b"big"))
    await settle()
    drain = asyncio.create_task(stream.drain())
    await settle()
    assert not drain.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(write, drain), 1)
    await session.close()


async def test_open_timeout_and_late_reply_is_reset() -> None:
    server = RawServer(auto_open=False)
    session = await accepted(server)
    with pytest.raises(WebTransportTimeoutError, match=r"0\.01 s"):
        await session.create_bidirectional_stream(timeout=0.01)
    cancelled = asyncio.create_task(session.create_unidirectional_stream(timeout=5))
    await settle()
    cancelled.cancel()
    await settle()
    server.push(server.opened_reply(True))
    server.push(server.opened_reply(False))
    await settle()
    code = constants.STREAM_ABANDONED_CODE
    assert server.sent_of("stream.reset") == [
        {"type": "webtransport.stream.reset", "stream": 1, "code": code},
        {"type": "webtransport.stream.reset", "stream": 3, "code": code},
    ]
    assert server.sent_of("stream.stop_sending") == [
        {"type": "webtransport.stream.stop_sending", "stream": 1, "code": code}
    ]
    stats = await session.get_session_stats()
    assert stats["streams_abandoned"] == 2 and stats["streams_created"] == 0
    # A later open still pairs with its own reply.
    server.auto_open = True
    stream = await session.create_bidirectional_stream(timeout=1)
    assert stream.stream_id == 5
    await session.close()


async def test_config_open_timeout_applies_when_timeout_is_none() -> None:
    server = RawServer(auto_open=False)
    session = await accepted(server, stream_open_timeout=0.01)
    with pytest.raises(WebTransportTimeoutError):
        await session.create_unidirectional_stream()
    await session.close()


async def test_max_streams_limits_local_opens() -> None:
    server = RawServer()
    session = await accepted(server, max_streams=2)
    await session.create_bidirectional_stream()
    done = await session.create_unidirectional_stream()
    with pytest.raises(StreamLimitError, match="max_streams is 2"):
        await session.create_bidirectional_stream()
    await done.close()
    await session.create_bidirectional_stream()  # a closed stream frees its slot
    await session.close()


async def test_peer_streams_beyond_the_limits_are_refused() -> None:
    server = RawServer()
    session = await accepted(server, max_incoming_streams=2, max_streams=3)
    refused: list[Any] = []
    session.on("stream.refused", lambda event: refused.append(event.data["stream_id"]))
    for stream_id in (0, 2, 4, 6):
        server.push(
            {
                "type": "webtransport.stream.receive",
                "stream": stream_id,
                "data": b"d",
                "end_stream": False,
            }
        )
    await settle()
    code = constants.STREAM_REFUSED_CODE
    assert server.sent_of("stream.stop_sending") == [
        {"type": "webtransport.stream.stop_sending", "stream": 4, "code": code},
        {"type": "webtransport.stream.stop_sending", "stream": 6, "code": code},
    ]
    # Only the bidirectional one can be reset; data for refused streams is ignored.
    assert server.sent_of("stream.reset") == [
        {"type": "webtransport.stream.reset", "stream": 4, "code": code}
    ]
    assert refused == [4, 6]
    server.push(
        {"type": "webtransport.stream.receive", "stream": 4, "data": b"late", "end_stream": True}
    )
    taken = await next_incoming(session)
    assert taken.stream_id == 0
    server.push(
        {"type": "webtransport.stream.receive", "stream": 8, "data": b"", "end_stream": False}
    )
    await settle()  # 0, 2 and 8 are live: max_streams is reached
    with pytest.raises(StreamLimitError):
        await session.create_unidirectional_stream()
    server.push(
        {"type": "webtransport.stream.receive", "stream": 12, "data": b"", "end_stream": False}
    )
    await settle()
    stats = await session.get_session_stats()
    assert refused == [4, 6, 12]
    assert stats["streams_refused"] == 3
    assert (await session.debug_state())["incoming_queue"]["queued"] == [2, 8]
    await session.close()
