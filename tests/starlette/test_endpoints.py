"""Class-based endpoints, driven in memory."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from starlette.applications import Starlette

from starlette_webtransport.session import StreamType, WebTransportSession, WebTransportStream
from starlette_webtransport.starlette import (
    INTERNAL_ERROR_CODE,
    StructuredEndpoint,
    WebTransportEndpoint,
    WebTransportException,
    WebTransportRoute,
    enable_webtransport,
)
from starlette_webtransport.structured import (
    HEADER,
    MsgPackSerializer,
    Schema,
    StructuredReceiveStream,
    StructuredStream,
)

from .helpers import Channel, make_scope, run


def app_for(endpoint: type[WebTransportEndpoint]) -> Starlette:
    app = Starlette(routes=[WebTransportRoute("/", endpoint)])
    enable_webtransport(app)
    return app


def start(endpoint: type[WebTransportEndpoint]) -> tuple[Channel, asyncio.Task[None]]:
    channel = Channel()
    return channel, asyncio.create_task(run(app_for(endpoint), make_scope("/"), channel))


class Echo(WebTransportEndpoint):
    log: list[str]

    async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
        data = await stream.read()
        self.log.append(f"stream {stream.stream_id}: {data!r}")
        if isinstance(stream, WebTransportStream):
            await stream.write(data.upper(), end_stream=True)

    async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
        self.log.append(f"datagram {data!r}")
        await session.datagrams.send(data[::-1])

    async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
        self.log.append(f"disconnect {code} {reason}")


async def test_streams_are_served_concurrently_and_cancelled_on_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    class Endpoint(Echo):
        async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
            self.log = log
            if stream.stream_id == 0:
                try:
                    await asyncio.Event().wait()  # busy with something else than the stream
                except asyncio.CancelledError:
                    log.append("stream 0 cancelled")
                    raise
            if stream.stream_id == 8:
                await stream.read()  # the client never finishes stream 8
                log.append("stream 8 read returned")
            await super().on_stream(session, stream)

        async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
            self.log = log
            await super().on_datagram(session, data)

        async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
            self.log = log
            await super().on_disconnect(session, code, reason)

    channel, task = start(Endpoint)
    await channel.wait_for("accept")
    channel.push_stream(0, b"waiting")
    channel.push_stream(8, b"unfinished")
    channel.push_stream(4, b"hello", end_stream=True)
    channel.push_stream(2, b"one-way", end_stream=True)
    channel.push({"type": "webtransport.datagram.receive", "data": b"abc"})
    assert await channel.stream_data(4) == b"HELLO"
    assert (await channel.wait_for("datagram.send"))["data"] == b"cba"
    channel.disconnect(7, "bye")
    await task
    assert "stream 4: b'hello'" in log
    assert "stream 2: b'one-way'" in log
    assert "datagram b'abc'" in log
    assert log[-2:] == ["stream 0 cancelled", "disconnect 7 bye"]
    assert "stream 8 read returned" not in log  # it saw SessionClosedError
    assert not caplog.records
    assert not channel.of("close")  # the peer closed; nothing more to send


async def test_peer_reset_ends_only_that_stream_handler() -> None:
    log: list[str] = []

    class Endpoint(Echo):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            self.log = log

    channel, task = start(Endpoint)
    await channel.wait_for("accept")
    channel.push_stream(0, b"partial")
    channel.push({"type": "webtransport.stream.reset", "stream": 0, "code": 3})
    channel.push_stream(4, b"next", end_stream=True)
    assert await channel.stream_data(4) == b"NEXT"
    channel.disconnect()
    await task
    assert not channel.of("close")
    assert log[-1] == "disconnect 0 "


async def test_web_transport_exception_from_a_hook_closes_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disconnects: list[tuple[int, str]] = []

    class Endpoint(WebTransportEndpoint):
        async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
            if await stream.read() == b"quit":
                raise WebTransportException(4004, "asked to quit")

        async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
            raise WebTransportException(4005, "datagram quit")

        async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
            disconnects.append((code, reason))

    channel, task = start(Endpoint)
    await channel.wait_for("accept")
    channel.push_stream(0, b"quit", end_stream=True)
    await task
    assert channel.of("close") == [
        {"type": "webtransport.close", "code": 4004, "reason": "asked to quit"}
    ]
    assert disconnects == [(4004, "asked to quit")]

    channel, task = start(Endpoint)
    await channel.wait_for("accept")
    channel.push({"type": "webtransport.datagram.receive", "data": b"x"})
    await task
    assert channel.of("close")[0]["code"] == 4005
    assert not caplog.records


async def test_a_failing_stream_hook_aborts_only_its_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disconnects: list[tuple[int, str]] = []

    class Endpoint(Echo):
        async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
            self.log = []
            if stream.stream_id == 0:
                await stream.read()
                raise ValueError("unexpected")
            await super().on_stream(session, stream)

        async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
            raise KeyError(data)

        async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
            disconnects.append((code, reason))

    channel, task = start(Endpoint)
    await channel.wait_for("accept")
    channel.push_stream(0, b"other", end_stream=True)
    channel.push({"type": "webtransport.datagram.receive", "data": b"1"})
    channel.push({"type": "webtransport.datagram.receive", "data": b"2"})
    await channel.wait_for("stream.reset", stream=0, code=INTERNAL_ERROR_CODE)
    channel.push_stream(4, b"next", end_stream=True)
    assert await channel.stream_data(4) == b"NEXT"  # the session goes on
    channel.disconnect()
    await task
    assert not channel.of("close")
    assert disconnects == [(0, "")]
    # One line for the stream's failure, one for the first KeyError of on_datagram.
    logged = {r.exc_info[0] for r in caplog.records if r.exc_info}
    assert logged == {ValueError, KeyError} and len(caplog.records) == 2


async def test_on_connect_can_reject() -> None:
    class Endpoint(WebTransportEndpoint):
        async def on_connect(self, session: WebTransportSession) -> None:
            if "token" not in session.query_params:
                await session.reject(401)
                return
            await session.accept()

        async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
            raise AssertionError("a rejected session was never connected")

    channel, task = start(Endpoint)
    await task
    assert channel.sent == [{"type": "webtransport.reject", "status": 401, "headers": []}]


def test_endpoint_refuses_other_scope_types() -> None:
    async def receive() -> dict[str, object]:
        raise AssertionError

    async def send(message: object) -> None:
        raise AssertionError

    with pytest.raises(ValueError, match="webtransport"):
        WebTransportEndpoint({"type": "websocket"}, receive, send)


class Ping(msgspec.Struct, tag=True):
    n: int


class Note(msgspec.Struct, tag=True):
    text: str


SCHEMA: Schema[Ping | Note] = Schema({1: Ping, 2: Note}, serializer=MsgPackSerializer())


def frame(message: Ping | Note) -> bytes:
    type_id, payload = SCHEMA.encode(message)
    return HEADER.pack(type_id, len(payload)) + payload


async def test_structured_endpoint_receives_typed_messages() -> None:
    notes: list[str] = []

    class Endpoint(StructuredEndpoint[Ping | Note]):
        schema = SCHEMA

        async def on_message(
            self,
            session: WebTransportSession,
            stream: StructuredStream[Ping | Note] | StructuredReceiveStream[Ping | Note],
            message: Ping | Note,
        ) -> None:
            if isinstance(message, Ping):
                assert isinstance(stream, StructuredStream)
                await stream.send_obj(Ping(message.n + 1))
                if message.n == 2:
                    await stream.close()
            else:
                notes.append(message.text)

    channel, task = start(Endpoint)
    await channel.wait_for("accept")
    channel.push_stream(0, frame(Ping(1)) + frame(Ping(2)), end_stream=True)
    channel.push_stream(2, frame(Note("hi")), end_stream=True)
    data = await channel.stream_data(0)
    channel.disconnect()
    await task
    assert data == frame(Ping(2)) + frame(Ping(3))
    assert notes == ["hi"]
