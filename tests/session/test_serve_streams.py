"""``serve_streams``, ``stream.abort()`` and session-end exception groups, in memory.

The in-process test client plays the peer; the same behaviours over real QUIC are in
``tests/starlette/test_quic_stream_error_domains.py``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from starlette_webtransport.asgi import Receive, Scope, Send, is_session_end
from starlette_webtransport.session import (
    SessionClosedError,
    StreamResetError,
    StreamStoppedError,
    StreamType,
    WebTransportSession,
    WebTransportStream,
    serve_streams,
)
from starlette_webtransport.session.constants import INTERNAL_ERROR_CODE
from starlette_webtransport.testing import WebTransportTestClient

TIMEOUT = 5.0


def test_only_session_ends_are_a_normal_end() -> None:
    closed = SessionClosedError("gone")
    assert is_session_end(closed)
    assert is_session_end(ExceptionGroup("tasks", [closed, SessionClosedError("also")]))
    assert is_session_end(ExceptionGroup("outer", [ExceptionGroup("inner", [closed]), closed]))
    assert not is_session_end(ExceptionGroup("tasks", [closed, ValueError("bug")]))
    assert not is_session_end(ExceptionGroup("tasks", [StreamResetError(1, stream_id=0)]))
    assert not is_session_end(ValueError("bug"))


async def echo_stream(stream: StreamType) -> None:
    assert isinstance(stream, WebTransportStream)
    async for chunk in stream:
        if chunk == b"fail":
            raise ValueError("a bug in the handler")
        await stream.write(chunk)
    await stream.close()


async def test_a_failing_handler_aborts_only_its_stream(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await serve_streams(session, echo_stream)

    async with WebTransportTestClient(app).connect("/chat") as session:
        async with asyncio.timeout(TIMEOUT):
            failing = await session.create_bidirectional_stream()
            other = await session.create_bidirectional_stream()
            await other.write(b"before")
            assert await other.readexactly(6) == b"before"
            await failing.write(b"fail")
            with pytest.raises(StreamResetError) as reset:
                await failing.read()
            assert reset.value.code == INTERNAL_ERROR_CODE
            await other.write(b"after", end_stream=True)
            assert await other.read() == b"after"
    (record,) = caplog.records
    assert record.name == "starlette_webtransport.session.tasks"
    assert record.levelno == logging.ERROR
    assert "/chat" in record.getMessage()
    assert f"stream {failing.stream_id}" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


async def test_peer_resets_and_stops_end_handlers_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended: list[str] = []

    async def handler(stream: StreamType) -> None:
        try:
            await echo_stream(stream)
        except (StreamResetError, StreamStoppedError) as exc:
            ended.append(type(exc).__name__)
            raise

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await serve_streams(session, handler)

    async with WebTransportTestClient(app).connect("/") as session:
        async with asyncio.timeout(TIMEOUT):
            reset = await session.create_bidirectional_stream()
            stopped = await session.create_bidirectional_stream()
            await reset.write(b"x")
            await stopped.write(b"y")
            assert await reset.readexactly(1) == b"x"
            assert await stopped.readexactly(1) == b"y"
            await reset.reset(3)
            with pytest.raises(StreamResetError) as reply:  # the rest of it is given up
                await reset.read()
            assert reply.value.code == 0
            await stopped.stop_sending(4)
            with pytest.raises(StreamStoppedError) as stop:
                while True:
                    await stopped.write(b"more")
                    await asyncio.sleep(0)
            assert stop.value.code == 0
            assert not session.is_closed
    assert sorted(ended) == ["StreamResetError", "StreamStoppedError"]
    assert not caplog.records


async def test_datagram_errors_are_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[bytes] = []

    def on_datagram(data: bytes) -> None:  # a plain function works as well as a coroutine
        if data.startswith(b"bad"):
            raise ValueError(data)
        if data.startswith(b"worse"):
            raise KeyError(data)
        seen.append(data)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await serve_streams(session, echo_stream, on_datagram=on_datagram)

    async with WebTransportTestClient(app).connect("/") as session:
        for data in (b"bad1", b"one", b"bad2", b"worse1", b"worse2", b"two"):
            await session.datagrams.send(data)
        async with asyncio.timeout(TIMEOUT):
            while seen != [b"one", b"two"]:
                await asyncio.sleep(0.01)
    logged = [r.exc_info[0] for r in caplog.records if r.exc_info]
    assert len(caplog.records) == 2 and set(logged) == {KeyError, ValueError}


async def test_the_session_end_cancels_handlers_and_returns() -> None:
    events: list[str] = []
    returned = asyncio.Event()

    async def handler(stream: StreamType) -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()  # busy with something other than the stream
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await serve_streams(session, handler)
        returned.set()

    async with WebTransportTestClient(app).connect("/") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"hello")
        async with asyncio.timeout(TIMEOUT):
            while not events:
                await asyncio.sleep(0.01)
    await asyncio.wait_for(returned.wait(), TIMEOUT)
    assert events == ["started", "cancelled"]


async def test_a_handler_ends_the_session_with_close() -> None:
    async def handler(stream: StreamType) -> None:
        await stream.read()
        await session_of[0].close(code=4001, reason="enough")

    session_of: list[WebTransportSession] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        session_of.append(session)
        await session.accept()
        await serve_streams(session, handler)

    async with WebTransportTestClient(app).connect("/") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"bye", end_stream=True)
        await asyncio.wait_for(session.wait_closed(), TIMEOUT)
        assert (session.close_code, session.close_reason) == (4001, "enough")


async def test_serve_streams_needs_an_accepted_session() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        with pytest.raises(RuntimeError, match="accept"):
            await serve_streams(session, echo_stream)
        await session.accept()
        await session.wait_closed()

    async with WebTransportTestClient(app).connect("/"):
        pass


async def test_abort_ends_each_kind_of_stream() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        uni_out = await session.create_unidirectional_stream()
        await uni_out.write(b"partial")
        await uni_out.abort(5)  # send-only: RESET_STREAM
        uni_in = await session.accept_unidirectional_stream()
        await uni_in.abort(6)  # receive-only: STOP_SENDING
        bidi = await session.accept_bidirectional_stream()
        await bidi.abort(7)  # both
        await session.wait_closed()

    async with WebTransportTestClient(app).connect("/") as session:
        async with asyncio.timeout(TIMEOUT):
            incoming = await session.accept_unidirectional_stream()
            with pytest.raises(StreamResetError) as reset:
                await incoming.read()
            assert reset.value.code == 5
            for stream, code in (
                (await session.create_unidirectional_stream(), 6),
                (await session.create_bidirectional_stream(), 7),
            ):
                with pytest.raises(StreamStoppedError) as stop:
                    while True:
                        await stream.write(b"x")
                        await asyncio.sleep(0)
                assert stop.value.code == code
                if isinstance(stream, WebTransportStream):
                    with pytest.raises(StreamResetError) as reset:
                        await stream.read()
                    assert reset.value.code == code


async def test_the_test_client_treats_a_group_of_session_ends_as_a_return() -> None:
    """The TaskGroup pattern's ExceptionGroup of SessionClosedError is not re-raised."""

    reading: list[int] = []

    async def handler(stream: StreamType) -> None:
        reading.append(stream.stream_id)
        await stream.read()  # SessionClosedError when the client closes

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        async with asyncio.TaskGroup() as tasks:
            async for stream in session.incoming_streams():
                tasks.create_task(handler(stream))

    async with WebTransportTestClient(app).connect("/") as session:
        for _ in range(2):
            stream = await session.create_bidirectional_stream()
            await stream.write(b"waiting")
        async with asyncio.timeout(TIMEOUT):
            while len(reading) < 2:
                await asyncio.sleep(0.01)


@pytest.mark.parametrize("suspend_first", [False, True])
async def test_serve_streams_reads_in_its_task_or_beside_a_started_reader(
    suspend_first: bool,
) -> None:
    """Called right after ``accept()``, ``serve_streams`` is the session's reader (no
    reader task); called after the reader task started, it leaves reading to it. Either
    way streams are served, and a handler's ``close()`` makes ``serve_streams`` return."""
    sessions: list[WebTransportSession] = []
    returned = asyncio.Event()

    async def handler(stream: StreamType) -> None:
        assert isinstance(stream, WebTransportStream)
        data = await stream.read()
        if data == b"bye":
            await sessions[0].close(code=4002, reason="done")
            return
        await stream.write(data, end_stream=True)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        sessions.append(session)
        await session.accept()
        if suspend_first:
            await asyncio.sleep(0.05)  # the reader task starts meanwhile
        await serve_streams(session, handler)
        returned.set()

    async with WebTransportTestClient(app).connect("/") as session:
        async with asyncio.timeout(TIMEOUT):
            for payload in (b"one", b"two"):
                stream = await session.create_bidirectional_stream()
                await stream.write(payload, end_stream=True)
                assert await stream.read() == payload
            assert (sessions[0]._reader is not None) is suspend_first
            assert sessions[0]._reader_running()
            stream = await session.create_bidirectional_stream()
            await stream.write(b"bye", end_stream=True)
            await session.wait_closed()
            await returned.wait()
    assert (session.close_code, session.close_reason) == (4002, "done")


async def test_a_cancelled_serve_streams_ends_its_handlers_before_it_raises() -> None:
    """As a task group would: cancelling the caller cancels the handlers, and the call
    raises ``CancelledError`` only once they have ended."""
    events: list[str] = []
    serving: list[asyncio.Task[None]] = []

    async def handler(stream: StreamType) -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a handler that takes a moment to wind down
            events.append("handler ended")
            raise

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        task = asyncio.create_task(serve_streams(session, handler))
        serving.append(task)
        try:
            await task
        except asyncio.CancelledError:
            events.append("serve_streams raised")
        await session.close()

    async with WebTransportTestClient(app).connect("/") as session:
        async with asyncio.timeout(TIMEOUT):
            stream = await session.create_bidirectional_stream()
            await stream.write(b"hello")
            while not events:
                await asyncio.sleep(0.01)
            serving[0].cancel()
            await session.wait_closed()
    assert events == ["started", "handler ended", "serve_streams raised"]


async def test_a_session_outlives_a_cancelled_serve_streams() -> None:
    """``serve_streams`` reads the session in its caller's task; cancelled (here by a
    timeout around it) while the session is open, it leaves the session a reader task, so
    the app can go on using the session."""
    served: list[bytes] = []

    async def handler(stream: StreamType) -> None:
        served.append(await stream.read())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await serve_streams(session, handler)
        stream = await session.accept_bidirectional_stream(timeout=TIMEOUT)
        await stream.write(await stream.read(), end_stream=True)
        await session.wait_closed()

    async with WebTransportTestClient(app).connect("/") as session:
        async with asyncio.timeout(TIMEOUT):
            first = await session.create_bidirectional_stream()
            await first.write(b"served", end_stream=True)
            while not served:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # serve_streams has timed out by now
            second = await session.create_bidirectional_stream()
            await second.write(b"after", end_stream=True)
            assert await second.read() == b"after"
    assert served == [b"served"]
