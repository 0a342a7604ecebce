"""The session API at both ends of real QUIC over loopback.

The server end runs in our hypercorn adapter and the client end in our aioquic client, both
in the test's event loop, so each test drives the two ``WebTransportSession`` objects of one
session directly and checks what each end sees of the other: accept and reject, close codes,
streams opened by either side in both directions, FIN, RESET_STREAM and STOP_SENDING codes
through the HTTP/3 code mapping, datagram sizes, statistics and diagnostics, and a
``SessionManager`` over many real sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from starlette_webtransport.asgi import Receive, Scope, Send
from starlette_webtransport.client import WebTransportRejectedError
from starlette_webtransport.session import (
    DatagramTooLargeError,
    Event,
    SessionClosedError,
    SessionConfig,
    SessionManager,
    SessionRejectedError,
    SessionState,
    StreamClosedError,
    StreamDirection,
    StreamResetError,
    StreamState,
    StreamStoppedError,
    StreamType,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportSession,
    WebTransportStream,
    WebTransportTimeoutError,
)
from starlette_webtransport.session.constants import STREAM_REFUSED_CODE
from starlette_webtransport.testing.plugin import ClientFactory, LiveServer, ServerFactory

TIMEOUT = 10.0
GRACE = 0.05
"""The server's graceful_timeout: every test ends its sessions itself, so stopping the
server need not wait for them."""

CODES = [0, 1, 0x1D, 0x1E, 0x1F, 0x3C, 0x53540001, 2**32 - 2, 2**32 - 1]
"""Application error codes around the reserved HTTP/3 codepoints the mapping skips
(every 0x1e codes) and at both ends of the u32 range."""


class Harness:
    """An ASGI app that hands each server-end session to the test and keeps the app call
    alive until the session is closed, so the test decides accept, reject and everything
    after."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config
        self.sessions: asyncio.Queue[WebTransportSession] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        session = WebTransportSession(scope, receive, send, config=self.config)
        await self.sessions.put(session)
        await session.wait_closed()


@dataclass
class Live:
    harness: Harness
    server: LiveServer
    client: ClientFactory

    @contextlib.asynccontextmanager
    async def pair(
        self,
        path: str = "/",
        *,
        protocol: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        **connect_options: Any,
    ) -> AsyncIterator[tuple[WebTransportSession, WebTransportSession]]:
        """``(client end, server end)`` of one accepted session."""
        async with contextlib.AsyncExitStack() as stack:
            entering = asyncio.create_task(
                stack.enter_async_context(self.client(self.server, path, **connect_options))
            )
            far = await self.harness.sessions.get()
            await far.accept(protocol, headers)
            near = await entering
            yield near, far


async def next_stream(session: WebTransportSession) -> StreamType:
    async for stream in session.incoming_streams():
        return stream
    raise AssertionError("the session closed without a new stream")


@dataclass
class StopWatch:
    """Collects the session's ``stream.stop_sending`` and ``stream.reset`` events, so a
    test can wait for a peer's signal to arrive instead of sleeping."""

    session: WebTransportSession
    stops: dict[int, int | None] = field(default_factory=dict)
    resets: dict[int, int | None] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.session.on("stream.stop_sending", self._stopped)
        self.session.on("stream.reset", self._reset)

    def _stopped(self, event: Event) -> None:
        self.stops[event.data["stream"].stream_id] = event.data["code"]
        self.changed.set()

    def _reset(self, event: Event) -> None:
        self.resets[event.data["stream"].stream_id] = event.data["code"]
        self.changed.set()

    async def stopped(self, stream_id: int) -> int | None:
        while stream_id not in self.stops:
            self.changed.clear()
            await self.changed.wait()
        return self.stops[stream_id]


# --- accept, reject, close ----------------------------------------------------------------


async def test_accept_negotiates_protocol_and_headers_ready_and_initialize(live: Live) -> None:
    async with asyncio.timeout(TIMEOUT), contextlib.AsyncExitStack() as stack:
        entering = asyncio.create_task(
            stack.enter_async_context(
                live.client(
                    live.server,
                    "/room/%C3%A9?user=ann&x=1",
                    protocols=["chat.v1", "chat.v2"],
                    headers={"x-token": "t0k"},
                    origin="https://app.example",
                )
            )
        )
        far = await live.harness.sessions.get()
        # Before accept: not ready, initialize() belongs to the client role.
        assert far.state is SessionState.CONNECTING and not far.is_ready
        assert far.role == "server"
        with pytest.raises(RuntimeError, match="accept"):
            await far.initialize()
        with pytest.raises(WebTransportTimeoutError):
            await far.ready(timeout=0.01)
        waiting = asyncio.create_task(far.ready())
        with pytest.raises(ValueError, match="not offered"):
            await far.accept("chat.v3")
        assert far.subprotocols == ["chat.v1", "chat.v2"]
        assert far.path == "/room/é" and far.query_params["user"] == "ann"
        assert far.headers["x-token"] == "t0k"
        assert far.headers["origin"] == "https://app.example"
        assert far.headers["host"] == f"127.0.0.1:{live.server.port}"
        await far.accept("chat.v2", [(b"x-welcome", b"ann")])
        await waiting
        near = await entering

        assert (near.role, far.role) == ("client", "server")
        assert near.protocol == far.protocol == "chat.v2"
        assert near.headers["x-welcome"] == "ann"
        for session in (near, far):
            assert session.state is SessionState.CONNECTED and session.is_ready
            await session.ready(timeout=0.01)
            await session.initialize()  # started already: nothing to do
            assert session.state is SessionState.CONNECTED
            assert session.datagrams.max_datagram_size > 1000
        assert far.client is not None and far.client.host == "127.0.0.1"
        assert far.connection is not None and near.connection is not None
        assert far.connection.alpn == near.connection.alpn == "h3"
        assert far.connection.local == ("127.0.0.1", live.server.port)
        assert near.connection.remote == ("127.0.0.1", live.server.port)
        assert far.connection.remote is not None and near.connection.local is not None
        assert far.connection.remote[1] == near.connection.local[1]
        assert far.protocol_handler.spec_version == "1.1"
        assert far.protocol_handler.draft == near.protocol_handler.draft == "draft15"
        await near.close()
        await far.wait_closed()


async def test_reject_status_and_headers_reach_the_client(live: Live) -> None:
    async def connect_and_answer(
        answer: Callable[[WebTransportSession], Awaitable[None]],
    ) -> tuple[SessionRejectedError, WebTransportSession]:
        attempt = asyncio.create_task(
            live.client(live.server, "/private").__aenter__()  # raises before yielding
        )
        far = await live.harness.sessions.get()
        await answer(far)
        with pytest.raises(SessionRejectedError) as caught:
            await attempt
        assert far.state is SessionState.CLOSED
        return caught.value, far

    async with asyncio.timeout(TIMEOUT):
        rejected, far = await connect_and_answer(
            lambda far: far.reject(429, [(b"retry-after", b"7")])
        )
        assert isinstance(rejected, WebTransportRejectedError)
        assert rejected.status == 429
        assert (b"retry-after", b"7") in rejected.headers
        assert (far.close_code, far.close_reason) == (None, "")

        # close() before accept is a 403 rejection, as in the contract.
        rejected, far = await connect_and_answer(lambda far: far.close(code=5, reason="no"))
        assert rejected.status == 403

        # The server stays usable for the next session.
        async with live.pair() as (near, far):
            assert near.is_ready and far.is_ready


@pytest.mark.parametrize("closer", ["client", "server"])
async def test_close_code_and_reason_reach_the_other_end(live: Live, closer: str) -> None:
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        local, peer = (near, far) if closer == "client" else (far, near)
        closed: list[dict[str, Any]] = []
        peer.on("session.closed", lambda event: closed.append(dict(event.data)))
        reason = "é" * 512  # the largest reason: 1024 bytes of UTF-8
        with pytest.raises(ValueError, match="1026 UTF-8 bytes"):
            await local.close(code=1, reason=reason + "é")
        with pytest.raises(ValueError):
            await local.close(code=2**32)
        assert local.is_ready and peer.is_ready  # nothing was sent

        peer_stream = await peer.create_bidirectional_stream()
        reading = asyncio.create_task(peer.datagrams.receive())
        await local.close(code=2**32 - 1, reason=reason, close_connection=False)
        await peer.wait_closed()

        for session, by in ((local, "local"), (peer, "peer")):
            assert session.is_closed and session.state is SessionState.CLOSED
            assert (session.close_code, session.close_reason) == (2**32 - 1, reason)
            summary = await session.get_summary()
            assert (summary["close_code"], summary["close_reason"]) == (2**32 - 1, reason)
            assert summary["closed_by"] == by and summary["state"] == "closed"
            issues = await session.diagnose_issues()
            assert len(issues) == 1 and f"closed by the {by} with code {2**32 - 1}" in issues[0]
        assert closed == [{"code": 2**32 - 1, "reason": reason, "by": "peer"}]
        # Everything waiting at the peer learns the code and reason.
        with pytest.raises(SessionClosedError) as caught:
            await reading
        assert (caught.value.code, caught.value.reason) == (2**32 - 1, reason)
        with pytest.raises(SessionClosedError):
            await peer_stream.write(b"late")
        with pytest.raises(SessionClosedError):
            await peer.create_unidirectional_stream()
        assert [s async for s in peer.incoming_streams()] == []
        assert [d async for d in peer.datagrams] == []
        await local.close(code=3)  # a second close does nothing
        assert local.close_code == 2**32 - 1


# --- streams --------------------------------------------------------------------------------


async def test_streams_opened_by_each_side_in_both_directions(live: Live) -> None:
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        # Client-opened bidirectional: ids have bit 0 clear, bit 1 clear, on both ends.
        out = await near.create_bidirectional_stream()
        assert isinstance(out, WebTransportStream)
        assert out.stream_id & 0b11 == 0 and out.direction is StreamDirection.BIDIRECTIONAL
        await out.write(b"line one\nline two\nrest")
        back = await next_stream(far)
        assert isinstance(back, WebTransportStream) and back.stream_id == out.stream_id
        assert await back.readuntil() == b"line one\n"
        assert await back.readuntil(b"two\n") == b"line two\n"
        assert await back.readexactly(2) == b"re"
        await out.write(b"st", end_stream=True)
        assert out.state.value == "half_closed_local"  # (not `is`: mypy would narrow .state)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await back.readexactly(5)
        assert (info.value.partial, info.value.expected) == (b"stst", 5)
        assert back.at_eof() and back.state.value == "half_closed_remote"
        await back.write(b"answer ")
        await back.write(b"x" * 200_000, end_stream=True)
        assert back.state is StreamState.CLOSED
        assert await out.readexactly(7) == b"answer "
        assert b"".join([chunk async for chunk in out]) == b"x" * 200_000
        assert out.at_eof() and out.state is StreamState.CLOSED
        with pytest.raises(StreamClosedError, match="after close"):
            await out.write(b"more")

        # Server-opened bidirectional: the client sees it with its first byte.
        served = await far.create_bidirectional_stream()
        assert served.stream_id & 0b11 == 1
        await served.write(b"ping\n")
        seen = await next_stream(near)
        assert isinstance(seen, WebTransportStream) and seen.stream_id == served.stream_id
        assert await seen.readuntil() == b"ping\n"
        await seen.write(b"pong", end_stream=True)
        assert await served.read() == b"pong"
        await served.close()
        assert await seen.read() == b""
        assert served.state is seen.state is StreamState.CLOSED

        # Client-opened unidirectional.
        up = await near.create_unidirectional_stream()
        assert isinstance(up, WebTransportSendStream) and not isinstance(up, WebTransportStream)
        assert up.stream_id & 0b11 == 2 and up.direction is StreamDirection.SEND_ONLY
        await up.write(b"up", end_stream=True)
        assert up.state is StreamState.CLOSED
        received = await next_stream(far)
        assert isinstance(received, WebTransportReceiveStream)
        assert received.direction is StreamDirection.RECEIVE_ONLY
        assert received.stream_id == up.stream_id and await received.read() == b"up"
        with pytest.raises(asyncio.IncompleteReadError) as until:
            await received.readuntil()
        assert until.value.partial == b""

        # Server-opened unidirectional, finished without payload: visible by its FIN.
        down = await far.create_unidirectional_stream()
        assert down.stream_id & 0b11 == 3
        await down.close()
        empty = await next_stream(near)
        assert isinstance(empty, WebTransportReceiveStream)
        assert empty.stream_id == down.stream_id
        assert await empty.read() == b"" and empty.at_eof()
        assert empty.state is StreamState.CLOSED

        # Ids grow by 4 per kind, and no stream takes the session's CONNECT stream id.
        again = await near.create_bidirectional_stream()
        assert again.stream_id == out.stream_id + 4
        connect_id = near.scope["extensions"]["webtransport"]["stream_id"]
        assert connect_id == far.scope["extensions"]["webtransport"]["stream_id"]
        ids = {out.stream_id, served.stream_id, up.stream_id, down.stream_id, again.stream_id}
        assert connect_id not in ids
        await again.close()
        await near.close()


@pytest.mark.parametrize("signal_from", ["client", "server"])
async def test_reset_and_stop_sending_codes_reach_the_peer(live: Live, signal_from: str) -> None:
    """Every code in CODES as RESET_STREAM and as STOP_SENDING, on bidirectional and
    unidirectional streams, sent by one end and seen by the other."""
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        actor, peer = (near, far) if signal_from == "client" else (far, near)
        peer_watch = StopWatch(peer)
        for code in CODES:
            # RESET_STREAM on a bidirectional stream: buffered data first, then the code.
            stream = await actor.create_bidirectional_stream()
            await stream.write(b"partial")
            seen = await next_stream(peer)
            assert isinstance(seen, WebTransportStream)
            assert await seen.readexactly(3) == b"par"
            await stream.reset(code)
            assert await seen.read(100) == b"tial"
            with pytest.raises(StreamResetError) as reset:
                await seen.read()
            assert (reset.value.code, reset.value.stream_id) == (code, stream.stream_id)
            assert peer_watch.resets[stream.stream_id] == code
            assert seen.state is StreamState.HALF_CLOSED_REMOTE
            with pytest.raises(StreamClosedError, match="after reset"):
                await stream.write(b"x")

            # STOP_SENDING on the same stream's other direction: the peer's writes fail.
            await stream.stop_sending(code)
            assert await peer_watch.stopped(stream.stream_id) == code
            with pytest.raises(StreamStoppedError) as stopped:
                await seen.write(b"too late")
            assert (stopped.value.code, stopped.value.stream_id) == (code, stream.stream_id)
            with pytest.raises(StreamStoppedError):
                await seen.drain()
            assert seen.state is stream.state is StreamState.CLOSED

            # RESET_STREAM on a unidirectional stream.
            one_way = await actor.create_unidirectional_stream()
            await one_way.write(b"u")
            seen_one_way = await next_stream(peer)
            assert await seen_one_way.read(1) == b"u"
            await one_way.reset(code)
            with pytest.raises(StreamResetError) as reset:
                await seen_one_way.read(1)
            assert reset.value.code == code
            assert one_way.state is seen_one_way.state is StreamState.CLOSED

            # STOP_SENDING on a unidirectional stream the peer opened.
            incoming = await peer.create_unidirectional_stream()
            await incoming.write(b"v")
            readable = await next_stream(actor)
            assert isinstance(readable, WebTransportReceiveStream)
            await readable.stop_sending(code)
            assert await peer_watch.stopped(incoming.stream_id) == code
            with pytest.raises(StreamStoppedError) as stopped:
                await incoming.write(b"w")
            assert stopped.value.code == code
            with pytest.raises(StreamClosedError, match="stop_sending"):
                await readable.read()

        stats = await peer.get_session_stats()
        assert stats["stream_errors"] == 4 * len(CODES)
        assert stats["streams_created"] == stats["streams_closed"] == 3 * len(CODES)
        await near.close()


async def test_streams_beyond_the_limit_are_refused_with_a_code_the_peer_sees(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    harness = Harness(SessionConfig(max_incoming_streams=2))
    async with (
        asyncio.timeout(TIMEOUT),
        webtransport_server(harness, graceful_timeout=GRACE) as server,
        Live(harness, server, webtransport_client).pair() as (near, far),
    ):
        watch = StopWatch(near)
        streams = [await near.create_bidirectional_stream() for _ in range(4)]
        for stream in streams:
            await stream.write(b"hi")  # the app takes none of them yet
        for refused in streams[2:]:
            assert await watch.stopped(refused.stream_id) == STREAM_REFUSED_CODE
            with pytest.raises(StreamStoppedError) as stopped:
                await refused.write(b"again")
            assert stopped.value.code == STREAM_REFUSED_CODE
            with pytest.raises(StreamResetError) as reset:
                await refused.read()
            assert reset.value.code == STREAM_REFUSED_CODE
            assert refused.state is StreamState.CLOSED
        # The two the app had room for are intact.
        for stream in streams[:2]:
            taken = await next_stream(far)
            assert isinstance(taken, WebTransportStream)
            assert taken.stream_id == stream.stream_id and await taken.readexactly(2) == b"hi"
            await taken.write(b"ok", end_stream=True)
            assert await stream.read() == b"ok"

        far_stats, near_stats = await far.get_session_stats(), await near.get_session_stats()
        assert (far_stats["streams_refused"], far_stats["streams_created"]) == (2, 2)
        assert far_stats["stream_errors"] == 0  # refused streams never were the app's
        assert (near_stats["streams_created"], near_stats["stream_errors"]) == (4, 4)
        issues = await far.diagnose_issues()
        assert len(issues) == 1 and "2 peer streams were refused" in issues[0]
        assert "max_incoming_streams=2" in issues[0]
        await near.close()


# --- datagrams ------------------------------------------------------------------------------


async def test_datagrams_at_and_one_byte_over_the_limit_both_ways(live: Live) -> None:
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        for sender, receiver in ((near, far), (far, near)):
            limit = sender.datagrams.max_datagram_size
            assert limit == sender.scope["extensions"]["webtransport"]["max_datagram_size"]
            largest = bytes(range(256)) * (limit // 256) + b"\xee" * (limit % 256)
            assert len(largest) == limit
            await sender.datagrams.send(largest)
            assert await receiver.datagrams.receive() == largest

            before = await sender.get_session_stats()
            with pytest.raises(DatagramTooLargeError) as caught:
                await sender.datagrams.send(largest + b"!")
            assert (caught.value.size, caught.value.limit) == (limit + 1, limit)
            assert f"{limit + 1} bytes" in str(caught.value) and f"{limit} bytes" in str(
                caught.value
            )
            assert isinstance(caught.value, ValueError)
            # The contract's own check, below the session: ValueError naming both sizes.
            with pytest.raises(ValueError) as raw:
                await sender.protocol_handler.send(
                    {"type": "webtransport.datagram.send", "data": largest + b"!"}
                )
            assert str(limit + 1) in str(raw.value) and str(limit) in str(raw.value)
            after = await sender.get_session_stats()
            assert after["datagrams_sent"] == before["datagrams_sent"]
            assert after["datagram_bytes_sent"] == before["datagram_bytes_sent"]

            # Nothing oversized was sent: the next datagram is the next one received.
            await sender.datagrams.send(b"")
            await sender.datagrams.send(b"after")
            assert await receiver.datagrams.receive() == b""
            assert await receiver.datagrams.receive() == b"after"
            assert receiver.datagrams.queued == 0 and receiver.datagrams.dropped == 0
        await far.close()


# --- statistics and diagnostics -----------------------------------------------------------


async def test_stats_figures_after_known_traffic(live: Live) -> None:
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        near_watch, far_watch = StopWatch(near), StopWatch(far)

        # 1. client bidi: request and answer, FIN both ways.
        cb1 = await near.create_bidirectional_stream()
        await cb1.write(b"abc", end_stream=True)
        sb1 = await next_stream(far)
        assert isinstance(sb1, WebTransportStream) and await sb1.read() == b"abc"
        await sb1.write(b"xy", end_stream=True)
        assert await cb1.read() == b"xy"
        # 2. client uni, finished.
        cu1 = await near.create_unidirectional_stream()
        await cu1.write(b"1234", end_stream=True)
        su_in = await next_stream(far)
        assert await su_in.read() == b"1234"
        # 3. client bidi, reset by the client; the server finishes its side.
        cb2 = await near.create_bidirectional_stream()
        await cb2.write(b"z")
        sb2 = await next_stream(far)
        assert isinstance(sb2, WebTransportStream) and await sb2.read(1) == b"z"
        await cb2.reset(9)
        with pytest.raises(StreamResetError):
            await sb2.read()
        await sb2.close()
        assert await cb2.read() == b""
        # 4. server bidi, stopped by the client, which then finishes its side.
        ss1 = await far.create_bidirectional_stream()
        await ss1.write(b"hello")
        cs1 = await next_stream(near)
        assert isinstance(cs1, WebTransportStream) and await cs1.readexactly(5) == b"hello"
        await cs1.stop_sending(3)
        assert await far_watch.stopped(ss1.stream_id) == 3
        await cs1.close()
        assert await ss1.read() == b""
        # 5. server uni, finished.
        su1 = await far.create_unidirectional_stream()
        await su1.write(b"u", end_stream=True)
        assert await (await next_stream(near)).read() == b"u"
        # 6. server uni, reset by the server after the client read its byte.
        su2 = await far.create_unidirectional_stream()
        await su2.write(b"v")
        cu_in2 = await next_stream(near)
        assert await cu_in2.read(1) == b"v"
        await su2.reset(4)
        with pytest.raises(StreamResetError):
            await cu_in2.read()
        assert near_watch.resets == {cu_in2.stream_id: 4}
        assert far_watch.resets == {sb2.stream_id: 9}

        # Datagrams: 3 up, 2 down, each waited for.
        for data in (b"d1", b"d22", b"d333"):
            await near.datagrams.send(data)
        assert [await far.datagrams.receive() for _ in range(3)] == [b"d1", b"d22", b"d333"]
        for data in (b"e1", b"e22"):
            await far.datagrams.send(data)
        assert [await near.datagrams.receive() for _ in range(2)] == [b"e1", b"e22"]

        expected = {
            "streams_created": 6,
            "streams_closed": 6,
            "active_streams": 0,
            "bidirectional_streams": 3,
            "unidirectional_streams": 3,
            "stream_errors": 3,
            "protocol_errors": 0,
            "streams_refused": 0,
            "streams_abandoned": 0,
            "datagrams_dropped": 0,
            "pending_opens": 0,
            "incoming_queued": 0,
            "state": "connected",
        }
        near_stats, far_stats = await near.get_session_stats(), await far.get_session_stats()
        for stats in (near_stats, far_stats):
            assert {key: stats[key] for key in expected} == expected
            assert stats["ready_at"] is not None and stats["closed_at"] is None
        assert (near_stats["datagrams_sent"], near_stats["datagrams_received"]) == (3, 2)
        assert (far_stats["datagrams_sent"], far_stats["datagrams_received"]) == (2, 3)
        assert (near_stats["bytes_sent"], near_stats["bytes_received"]) == (8, 9)
        assert (far_stats["bytes_sent"], far_stats["bytes_received"]) == (9, 8)
        assert (near_stats["datagram_bytes_sent"], near_stats["datagram_bytes_received"]) == (
            9,
            5,
        )
        assert (far_stats["datagram_bytes_sent"], far_stats["datagram_bytes_received"]) == (5, 9)
        assert near_stats["session_id"] == near.session_id != far.session_id

        summary = await far.get_summary()
        assert {
            key: summary[key]
            for key in ("role", "state", "path", "active_streams", "streams_created", "issues")
        } == {
            "role": "server",
            "state": "connected",
            "path": "/",
            "active_streams": 0,
            "streams_created": 6,
            "issues": 0,
        }
        assert (summary["datagrams_sent"], summary["datagrams_received"]) == (2, 3)
        assert (summary["bytes_sent"], summary["bytes_received"]) == (9, 8)

        # Closing ends the streams still open and counts them as closed.
        open_one = await near.create_bidirectional_stream()
        await open_one.write(b"!")
        await next_stream(far)
        await near.close(code=0)
        await far.wait_closed()
        for session in (near, far):
            stats = await session.get_session_stats()
            assert (stats["streams_created"], stats["streams_closed"]) == (7, 7)
            assert stats["state"] == "closed" and stats["closed_at"] is not None


async def test_debug_state_diagnose_issues_and_monitor_health(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    config = SessionConfig(datagram_queue_size=2)
    async with asyncio.timeout(TIMEOUT), live.pair("/watch", config=config) as (near, far):
        stream = await near.create_bidirectional_stream()
        await stream.write(b"12345")
        seen = await next_stream(far)
        assert await seen.readexactly(2) == b"12"

        for session in (near, far):
            state = await session.debug_state()
            assert state["session"] | {"session_id": None} == {
                "session_id": None,
                "role": session.role,
                "state": "connected",
                "path": "/watch",
                "draft": "draft15",
                "subprotocols": [],
                "protocol": None,
                "max_datagram_size": session.datagrams.max_datagram_size,
                "close_code": None,
                "close_reason": None,
                "closed_by": None,
            }
            assert state["reader"] == {
                "running": True,
                "paused_on_stream": None,
                "paused_for": None,
            }
            assert state["pending_opens"] == [] and state["recent_protocol_errors"] == []
            assert state["stats"]["streams_created"] == 1
            assert await session.diagnose_issues() == []
        near_streams = (await near.debug_state())["streams"]
        far_streams = (await far.debug_state())["streams"]
        assert [(s["stream_id"], s["state"], s["bytes_sent"]) for s in near_streams] == [
            (stream.stream_id, "open", 5)
        ]
        assert [(s["stream_id"], s["buffered"], s["bytes_received"]) for s in far_streams] == [
            (stream.stream_id, 3, 5)
        ]
        assert (await near.debug_state())["config"]["datagram_queue_size"] == 2

        # Four datagrams to a queue of two that nobody reads: two are dropped.
        arrived = asyncio.Event()
        count = 0

        def received(event: Event) -> None:
            nonlocal count
            count += 1
            if count == 4:
                arrived.set()

        near.on("datagram.received", received)
        for index in range(4):
            await far.datagrams.send(b"d%d" % index)
        await arrived.wait()
        assert near.datagrams.dropped == 2 and near.datagrams.queued == 2
        assert (await near.debug_state())["datagrams"]["dropped"] == 2

        health: asyncio.Queue[list[str]] = asyncio.Queue()
        near.on("session.health", lambda event: health.put_nowait(event.data["issues"]))
        with caplog.at_level(logging.WARNING, logger="starlette_webtransport.session"):
            monitor = asyncio.create_task(near.monitor_health(check_interval=0.05))
            first, second = await health.get(), await health.get()  # it keeps checking
            assert first == second
            assert len(first) == 1 and "2 received datagrams were dropped" in first[0]
            assert (await near.get_summary())["issues"] == 1
            assert [d async for d in _take(near.datagrams, 2)] == [b"d2", b"d3"]
            await far.close(code=7, reason="done")
            await asyncio.wait_for(monitor, TIMEOUT)  # returns when the session closes
        assert "2 received datagrams were dropped" in caplog.text
        issues = await near.diagnose_issues()
        assert any("closed by the peer with code 7" in issue for issue in issues)
        with pytest.raises(ValueError):
            await near.monitor_health(check_interval=0)


async def _take(datagrams: Any, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield await datagrams.receive()


# --- many sessions --------------------------------------------------------------------------


async def test_session_manager_with_twenty_real_sessions(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    count, closing = 20, 5
    server_manager = SessionManager(max_sessions=count)
    harness = Harness()
    async with (
        asyncio.timeout(TIMEOUT * 2),
        webtransport_server(harness, graceful_timeout=GRACE) as server,
        server_manager,
        SessionManager(max_sessions=count) as client_manager,
        contextlib.AsyncExitStack() as clients,
    ):
        live = Live(harness, server, webtransport_client)
        pairs = [await clients.enter_async_context(live.pair(f"/s/{i}")) for i in range(count)]
        for near, far in pairs:
            await server_manager.add_session(session=far)
            await client_manager.add_session(session=near)
        assert server_manager.get_session_count() == client_manager.get_session_count() == count
        assert len({far.session_id for _, far in pairs}) == count  # unique per server
        with pytest.raises(ValueError, match="already managed"):
            await server_manager.add_session(session=pairs[0][1])

        # Every session works, on its own connection.
        for index, (near, _) in enumerate(pairs):
            await near.datagrams.send(b"%d" % index)
        for index, (_, far) in enumerate(pairs):
            assert far.path == f"/s/{index}"
            assert await far.datagrams.receive() == b"%d" % index
        connected = await server_manager.get_sessions_by_state(state=SessionState.CONNECTED)
        assert {s.session_id for s in connected} == {far.session_id for _, far in pairs}

        # Some clients leave; the server ends notice, and cleanup removes exactly them.
        for near, _ in pairs[:closing]:
            await near.close(code=10, reason="bye")
        for _, far in pairs[:closing]:
            await far.wait_closed()
            assert (far.close_code, far.close_reason) == (10, "bye")
        closed = await server_manager.get_sessions_by_state(state=SessionState.CLOSED)
        assert {s.session_id for s in closed} == {far.session_id for _, far in pairs[:closing]}
        stats = await server_manager.get_stats()
        assert stats["states"]["closed"] == closing
        assert stats["states"]["connected"] == count - closing
        assert await server_manager.cleanup_closed_sessions() == closing
        assert await client_manager.cleanup_closed_sessions() == closing
        stats = await server_manager.get_stats()
        assert {
            key: stats[key]
            for key in (
                "active_sessions",
                "max_sessions",
                "peak_sessions",
                "total_added",
                "total_removed",
                "total_cleaned_up",
                "total_closed_by_manager",
                "running",
            )
        } == {
            "active_sessions": count - closing,
            "max_sessions": count,
            "peak_sessions": count,
            "total_added": count,
            "total_removed": closing,
            "total_cleaned_up": closing,
            "total_closed_by_manager": 0,
            "running": True,
        }

        # Shutting the server's manager down closes the rest; every client sees it.
        await server_manager.shutdown()
        for near, far in pairs[closing:]:
            await near.wait_closed()
            assert far.is_closed and (await far.debug_state())["session"]["closed_by"] == "local"
            assert (near.close_code, near.close_reason) == (0, "")
            assert (await near.debug_state())["session"]["closed_by"] == "peer"
        stats = await server_manager.get_stats()
        assert stats["total_closed_by_manager"] == count - closing
        assert stats["active_sessions"] == 0 and not stats["running"]
        closed = await client_manager.get_sessions_by_state(state=SessionState.CLOSED)
        assert len(closed) == count - closing
        assert await client_manager.cleanup_closed_sessions() == count - closing
