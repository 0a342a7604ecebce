"""The in-process test client behaves like the real server and client.

Each scenario script runs twice against the same app: through ``webtransport_test_client``
(in memory, no network) and through ``webtransport_server`` + ``webtransport_client`` (our
hypercorn adapter and our aioquic client, over QUIC on loopback). A script records what a
client and the app can observe (data, stream kinds and id patterns, close codes and reasons,
rejection statuses, reset and stop codes, typed messages, statistics) and the two records
must be equal, and equal to what the docs promise. Apps: ``example_app.app:app`` and a small
app below for the paths the example does not have (reject, close, signals).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from starlette.applications import Starlette

from example_app.app import SCHEMA, Error, Hello, Reply
from example_app.app import app as example_app
from starlette_webtransport.asgi import SessionGone
from starlette_webtransport.session import (
    DatagramTooLargeError,
    Event,
    SessionClosedError,
    SessionRejectedError,
    StreamResetError,
    StreamStoppedError,
    StreamType,
    WebTransportReceiveStream,
    WebTransportSession,
    WebTransportStream,
)
from starlette_webtransport.starlette import WebTransportRoute, enable_webtransport
from starlette_webtransport.structured import StructuredStream
from starlette_webtransport.testing import WebTransportTestClient
from starlette_webtransport.testing.plugin import ClientFactory, ServerFactory

TIMEOUT = 10.0
GRACE = 0.05
"""The server's graceful_timeout: each script ends its sessions before the server stops."""

Open = Callable[..., AbstractAsyncContextManager[WebTransportSession]]
"""``open(path, *, protocols=None, headers=None, origin=None)``: one session, either way."""
Script = Callable[[Open], Awaitable[dict[str, Any]]]

STAT_KEYS = (
    "streams_created",
    "streams_closed",
    "active_streams",
    "bidirectional_streams",
    "unidirectional_streams",
    "stream_errors",
    "datagrams_sent",
    "datagrams_received",
    "protocol_errors",
    "bytes_sent",
    "bytes_received",
    "datagram_bytes_sent",
    "datagram_bytes_received",
    "streams_refused",
)


async def run_both_ways(
    app: Any,
    script: Script,
    server_factory: ServerFactory,
    client_factory: ClientFactory,
    test_client_factory: Callable[..., WebTransportTestClient],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(real, in_process)`` records of ``script``. The in-process client gets the real
    client's ``max_datagram_size``, so that sizes and messages can be compared too."""
    async with asyncio.timeout(TIMEOUT), server_factory(app, graceful_timeout=GRACE) as server:

        def open_real(path: str, *, protocols: list[str] | None = None, **options: Any) -> Any:
            return client_factory(server, path, protocols=protocols, **options)

        real = await script(open_real)

    client = test_client_factory(app, max_datagram_size=real["max_datagram_size"])

    def open_in_process(path: str, *, protocols: list[str] | None = None, **options: Any) -> Any:
        return client.connect(path, subprotocols=protocols, **options)

    async with asyncio.timeout(TIMEOUT):
        in_process = await script(open_in_process)
    return real, in_process


async def next_stream(session: WebTransportSession) -> StreamType:
    async for stream in session.incoming_streams():
        return stream
    raise AssertionError("the session closed without a new stream")


class Stops:
    """The STOP_SENDING codes a session received, to wait for one without sleeping."""

    def __init__(self, session: WebTransportSession) -> None:
        self.codes: dict[int, int | None] = {}
        self.changed = asyncio.Event()
        session.on("stream.stop_sending", self._on_stop)

    def _on_stop(self, event: Event) -> None:
        self.codes[event.data["stream"].stream_id] = event.data["code"]
        self.changed.set()

    async def wait(self, stream_id: int) -> int | None:
        while stream_id not in self.codes:
            self.changed.clear()
            await self.changed.wait()
        return self.codes[stream_id]


def frame(type_id: int, payload: bytes) -> bytes:
    return struct.pack(">HI", type_id, len(payload)) + payload


def id_pattern(stream: StreamType, first: int) -> tuple[int, int]:
    """What any QUIC stack agrees on: the kind bits, and the step from the first id of the
    kind (absolute ids depend on the streams HTTP/3 itself opened)."""
    return stream.stream_id & 0b11, stream.stream_id - first


# --- the example app ------------------------------------------------------------------------


async def example_script(open_session: Open) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with open_session("/echo") as session:
        limit = seen["max_datagram_size"] = session.datagrams.max_datagram_size
        seen["protocol"] = session.protocol

        # Bidirectional echo: three streams written in reverse order, one of them empty.
        streams = [await session.create_bidirectional_stream() for _ in range(3)]
        seen["bidi ids"] = [id_pattern(s, streams[0].stream_id) for s in streams]
        payloads = [b"hello", bytes(range(256)) * 400, b""]
        for stream, payload in reversed(list(zip(streams, payloads, strict=True))):
            half = len(payload) // 2
            if payload:
                await stream.write(payload[:half])
            await stream.write(payload[half:], end_stream=True)
        echoed = [await stream.read() for stream in streams]
        seen["bidi echo"] = [
            echo == payload for echo, payload in zip(echoed, payloads, strict=True)
        ]
        seen["bidi states"] = [stream.state.value for stream in streams]

        # Unidirectional echo: the answer comes on a new server stream.
        up = await session.create_unidirectional_stream()
        await up.write(b"one ")
        await up.write(b"way", end_stream=True)
        back = await next_stream(session)
        seen["uni"] = (
            up.stream_id & 0b11,
            back.stream_id & 0b11,
            type(back).__name__,
            await back.read(),
            back.state.value,
        )

        # Datagram echo up to the limit, and one byte over it.
        seen["datagrams"] = []
        for data in (b"ping", b"", b"m" * limit):
            await session.datagrams.send(data)
            seen["datagrams"].append(await session.datagrams.receive() == data)
        with pytest.raises(DatagramTooLargeError) as oversized:
            await session.datagrams.send(b"m" * (limit + 1))
        seen["oversized"] = (oversized.value.size, oversized.value.limit, str(oversized.value))

        stats = await session.get_session_stats()
        seen["stats"] = {key: stats[key] for key in STAT_KEYS}
    seen["closed"] = (session.close_code, session.close_reason, session.is_closed)

    # A typed exchange on /structured, with an unknown type, an invalid payload and a
    # message of the wrong type, which the app answers with Error messages.
    async with open_session("/structured") as session:
        raw = await session.create_bidirectional_stream()
        typed = StructuredStream(raw, schema=SCHEMA)
        await typed.send_obj(Hello(seq=1, text="hi"))
        await raw.write(frame(9, b"{}"))
        await raw.write(frame(1, b'{"seq": "one", "text": "x"}'))
        await typed.send_obj(Reply(seq=2, text="not a question"))
        await typed.send_obj(Hello(seq=3, text="bye"))
        await typed.close()
        seen["structured"] = [message async for message in typed]

    with pytest.raises(SessionRejectedError) as rejected:
        async with open_session("/nowhere"):
            pass
    seen["unknown path"] = rejected.value.status
    return seen


async def test_example_app_same_behaviour(
    webtransport_server: ServerFactory,
    webtransport_client: ClientFactory,
    webtransport_test_client: Callable[..., WebTransportTestClient],
) -> None:
    real, in_process = await run_both_ways(
        example_app,
        example_script,
        webtransport_server,
        webtransport_client,
        webtransport_test_client,
    )
    assert in_process == real
    # And both are what the example app documents.
    limit = real["max_datagram_size"]
    assert real["bidi ids"] == [(0, 0), (0, 4), (0, 8)]
    assert real["bidi echo"] == [True, True, True]
    assert real["bidi states"] == ["closed"] * 3
    assert real["uni"] == (2, 3, "WebTransportReceiveStream", b"one way", "closed")
    assert real["datagrams"] == [True, True, True]
    assert real["oversized"][:2] == (limit + 1, limit)
    assert real["stats"] == {
        "streams_created": 5,
        "streams_closed": 5,
        "active_streams": 0,
        "bidirectional_streams": 3,
        "unidirectional_streams": 2,
        "stream_errors": 0,
        "datagrams_sent": 3,
        "datagrams_received": 3,
        "protocol_errors": 0,
        "bytes_sent": 5 + 256 * 400 + 7,
        "bytes_received": 5 + 256 * 400 + 7,
        "datagram_bytes_sent": 4 + limit,
        "datagram_bytes_received": 4 + limit,
        "streams_refused": 0,
    }
    assert real["closed"] == (0, "", True)
    structured = real["structured"]
    assert structured[0] == Reply(seq=1, text="HI")
    assert isinstance(structured[1], Error) and "9" in structured[1].detail
    assert isinstance(structured[2], Error) and "$.seq" in structured[2].detail
    assert structured[3] == Error(detail="expected Hello, got Reply")
    assert structured[4] == Reply(seq=3, text="BYE")
    assert len(structured) == 5
    assert real["unknown path"] == 404


# --- an app for rejection, close and stream signals ----------------------------------------


def build_app() -> Starlette:
    async def negotiate(session: WebTransportSession) -> None:
        protocol = "v2" if "v2" in session.subprotocols else None
        await session.accept(protocol, [(b"x-app", b"accepted")])
        stream = await next_stream(session)
        assert isinstance(stream, WebTransportStream)
        await stream.read()
        seen = {
            "path": session.path,
            "room": session.query_params.get("room"),
            "token": session.headers.get("x-token"),
            "origin": session.headers.get("origin"),
            "offered": session.subprotocols,
            "protocol": session.protocol,
        }
        await stream.write(json.dumps(seen).encode(), end_stream=True)
        await session.wait_closed()

    async def reject(session: WebTransportSession, status: int) -> None:
        await session.reject(status, [(b"x-why", b"because")])

    async def close_first(session: WebTransportSession) -> None:
        await session.close(code=5, reason="not you")

    async def return_first(session: WebTransportSession) -> None:
        return None

    async def close_after(session: WebTransportSession) -> None:
        await session.accept()
        assert await (await next_stream(session)).read() == b"please close"
        await session.close(code=4000, reason="bye now ✓")

    async def return_after(session: WebTransportSession) -> None:
        await session.accept()
        assert await (await next_stream(session)).read() == b"return"

    async def record(session: WebTransportSession) -> None:
        await session.accept()
        await session.wait_closed()
        state = await session.debug_state()
        app.state.closes.put_nowait(
            (session.close_code, session.close_reason, state["session"]["closed_by"])
        )

    async def signals(session: WebTransportSession) -> None:
        await session.accept()
        stops = Stops(session)
        async with asyncio.TaskGroup() as tasks:
            async for stream in session.incoming_streams():
                assert isinstance(stream, WebTransportStream)
                tasks.create_task(signal(session, stops, stream))

    async def signal(
        session: WebTransportSession, stops: Stops, stream: WebTransportStream
    ) -> None:
        command = await stream.readexactly(4)
        if command == b"rset":  # the client resets its side: report the code
            await stream.write(b"ready")
            try:
                await stream.read()
            except StreamResetError as exc:
                await stream.write(f"reset {exc.code}".encode(), end_stream=True)
        elif command == b"stop":  # the app stops the client's side
            await stream.stop_sending(1234)
            await stream.write(b"stopped", end_stream=True)
        elif command == b"srst":  # the app resets its side after the client read some
            await stream.write(b"partial")
            assert await stream.readexactly(2) == b"ok"
            await stream.reset(99)
        elif command == b"sstp":  # the client stops the app's side: report the code
            await stream.write(b"go")
            code = await stops.wait(stream.stream_id)
            try:
                await stream.write(b"more")
            except StreamStoppedError as exc:
                report = await session.create_unidirectional_stream()
                await report.write(f"stopped {code} {exc.code}".encode(), end_stream=True)

    async def send_after_close(session: WebTransportSession) -> None:
        """Spec section 4: after close, ``send`` raises the one OSError of every server."""
        await session.accept()
        await session.close(code=1, reason="done")
        send = session.protocol_handler.send
        refused: list[type[BaseException]] = []
        for message in (
            {"type": "webtransport.datagram.send", "data": b"late"},
            {"type": "webtransport.accept"},
        ):
            try:
                await send(message)  # type: ignore[arg-type]
            except OSError as exc:
                refused.append(type(exc))
        app.state.after_close.put_nowait(refused)

    async def silent(session: WebTransportSession) -> None:
        await session.accept()

        # The client opens a silent stream, then one with data: in which order do they
        # appear here? Each is read to its end; the one with data is answered.
        async def read(stream: StreamType) -> str:
            assert isinstance(stream, WebTransportStream)
            data = await stream.read()
            if data == b"second":
                await stream.write(b"seen", end_stream=True)
            return data.decode()

        async with asyncio.TaskGroup() as tasks:
            readers = []
            async for stream in session.incoming_streams():
                readers.append(tasks.create_task(read(stream)))
                if len(readers) == 2:
                    break
        report = await session.create_unidirectional_stream()
        await report.write(
            json.dumps([reader.result() for reader in readers]).encode(), end_stream=True
        )
        # The same the other way round; the client says when to finish the silent one.
        quiet = await session.create_bidirectional_stream()
        loud = await session.create_bidirectional_stream()
        await loud.write(b"second", end_stream=True)
        assert await (await next_stream(session)).read() == b"finish"
        await quiet.close()
        await session.wait_closed()

    app = Starlette(
        routes=[
            WebTransportRoute("/silent", silent),
            WebTransportRoute("/accept", negotiate),
            WebTransportRoute("/reject/{status:int}", reject),
            WebTransportRoute("/close-first", close_first),
            WebTransportRoute("/return-first", return_first),
            WebTransportRoute("/close", close_after),
            WebTransportRoute("/return", return_after),
            WebTransportRoute("/record", record),
            WebTransportRoute("/send-after-close", send_after_close),
            WebTransportRoute("/signals", signals),
        ]
    )
    app.state.closes = asyncio.Queue()
    app.state.after_close = asyncio.Queue()
    enable_webtransport(app)
    return app


async def own_script(app: Starlette, open_session: Open) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    options: dict[str, Any] = {
        "protocols": ["v1", "v2"],
        "headers": {"x-token": "abc"},
        "origin": "https://app.example",
    }
    async with open_session("/accept?room=5", **options) as session:
        seen["max_datagram_size"] = session.datagrams.max_datagram_size
        seen["accept"] = (session.protocol, session.headers.get("x-app"))
        stream = await session.create_bidirectional_stream()
        await stream.write(b"?", end_stream=True)
        seen["app saw"] = json.loads(await stream.read())

    rejections = []
    for path in ("/reject/404", "/reject/429", "/reject/503", "/close-first", "/return-first"):
        with pytest.raises(SessionRejectedError) as rejected:
            async with open_session(path):
                pass
        why = [value for name, value in rejected.value.headers if name == b"x-why"]
        rejections.append((path, rejected.value.status, why))
    seen["rejections"] = rejections

    async with open_session("/close") as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"please close", end_stream=True)
        with pytest.raises(SessionClosedError) as closed:
            await stream.read()
        await session.wait_closed()
        state = (await session.debug_state())["session"]
        seen["closed by the app"] = (
            (closed.value.code, closed.value.reason),
            (session.close_code, session.close_reason, state["closed_by"]),
        )

    async with open_session("/return") as session:
        one_way = await session.create_unidirectional_stream()
        await one_way.write(b"return", end_stream=True)
        await session.wait_closed()
        seen["app returned"] = (session.close_code, session.close_reason)

    async with open_session("/record") as session:
        await session.close(code=7, reason="client done")
    seen["closed by the client"] = await app.state.closes.get()

    async with open_session("/send-after-close") as session:
        await session.wait_closed()
    seen["send after close"] = await app.state.after_close.get()

    async with open_session("/signals") as session:
        stops = Stops(session)
        signals: dict[str, Any] = {}

        stream = await session.create_bidirectional_stream()
        await stream.write(b"rset")
        assert await stream.readexactly(5) == b"ready"
        await stream.reset(77)
        signals["client reset"] = await stream.read()

        stream = await session.create_bidirectional_stream()
        await stream.write(b"stop")
        answer = await stream.read()
        code = await stops.wait(stream.stream_id)
        with pytest.raises(StreamStoppedError) as stopped:
            await stream.write(b"x")
        signals["app stop"] = (answer, code, stopped.value.code)

        stream = await session.create_bidirectional_stream()
        await stream.write(b"srst")
        partial = await stream.readexactly(7)
        await stream.write(b"ok")
        with pytest.raises(StreamResetError) as reset:
            await stream.read()
        signals["app reset"] = (partial, reset.value.code, stream.state.value)

        stream = await session.create_bidirectional_stream()
        await stream.write(b"sstp")
        assert await stream.readexactly(2) == b"go"
        await stream.stop_sending(55)
        report = await next_stream(session)
        assert isinstance(report, WebTransportReceiveStream)
        signals["client stop"] = await report.read()
        await stream.close()

        stats = await session.get_session_stats()
        signals["stats"] = {key: stats[key] for key in STAT_KEYS}
        seen["signals"] = signals
    return seen


async def test_own_app_same_behaviour(
    webtransport_server: ServerFactory,
    webtransport_client: ClientFactory,
    webtransport_test_client: Callable[..., WebTransportTestClient],
) -> None:
    app = build_app()

    async def script(open_session: Open) -> dict[str, Any]:
        return await own_script(app, open_session)

    real, in_process = await run_both_ways(
        app, script, webtransport_server, webtransport_client, webtransport_test_client
    )
    assert in_process == real
    assert real["accept"] == ("v2", "accepted")
    assert real["app saw"] == {
        "path": "/accept",
        "room": "5",
        "token": "abc",
        "origin": "https://app.example",
        "offered": ["v1", "v2"],
        "protocol": "v2",
    }
    assert real["rejections"] == [
        ("/reject/404", 404, [b"because"]),
        ("/reject/429", 429, [b"because"]),
        ("/reject/503", 503, [b"because"]),
        ("/close-first", 403, []),
        ("/return-first", 403, []),
    ]
    assert real["closed by the app"] == ((4000, "bye now ✓"), (4000, "bye now ✓", "peer"))
    assert real["app returned"] == (0, "")
    assert real["closed by the client"] == (7, "client done", "peer")
    assert real["send after close"] == [SessionGone, SessionGone]
    signals = real["signals"]
    assert signals["client reset"] == b"reset 77"
    assert signals["app stop"] == (b"stopped", 1234, 1234)
    assert signals["app reset"] == (b"partial", 99, "half_closed_remote")
    assert signals["client stop"] == b"stopped 55 55"
    assert signals["stats"]["stream_errors"] == 4
    assert signals["stats"]["streams_created"] == 5


async def test_client_session_names_the_server_as_its_peer(
    webtransport_server: ServerFactory,
    webtransport_client: ClientFactory,
    webtransport_test_client: Callable[..., WebTransportTestClient],
) -> None:
    """In a client-role scope ``client`` is the peer (docs/asgi-webtransport.md, section 1),
    so ``session.client`` is the server, which ``session.connection.remote`` names too."""

    async def script(open_session: Open) -> dict[str, Any]:
        async with open_session("/echo") as session:
            assert session.client is not None and session.connection is not None
            return {
                "max_datagram_size": session.datagrams.max_datagram_size,
                "client is the peer": tuple(session.client) == session.connection.remote,
            }

    real, in_process = await run_both_ways(
        example_app, script, webtransport_server, webtransport_client, webtransport_test_client
    )
    assert in_process == real
    assert real["client is the peer"] is True


async def silent_script(open_session: Open) -> dict[str, Any]:
    async with open_session("/silent") as session:
        max_datagram_size = session.datagrams.max_datagram_size
        quiet = await session.create_bidirectional_stream()
        loud = await session.create_bidirectional_stream()
        await loud.write(b"second", end_stream=True)
        assert await loud.read() == b"seen"
        await quiet.close()
        seen_by_app = json.loads(await (await next_stream(session)).read())

        loud_arrived = asyncio.Event()

        async def read(stream: StreamType) -> str:
            data = await stream.read()
            if data == b"second":
                loud_arrived.set()
            return data.decode()

        async with asyncio.TaskGroup() as tasks:
            readers = []

            async def collect() -> None:
                async for stream in session.incoming_streams():
                    readers.append(tasks.create_task(read(stream)))
                    if len(readers) == 2:
                        return

            tasks.create_task(collect())
            await loud_arrived.wait()
            finish = await session.create_unidirectional_stream()
            await finish.write(b"finish", end_stream=True)
        seen_by_client = [reader.result() for reader in readers]
    return {
        "max_datagram_size": max_datagram_size,
        "order seen by the app": seen_by_app,
        "order seen by the client": seen_by_client,
    }


async def test_a_peer_stream_appears_with_its_first_byte_or_fin(
    webtransport_server: ServerFactory,
    webtransport_client: ClientFactory,
    webtransport_test_client: Callable[..., WebTransportTestClient],
) -> None:
    """docs/asgi-webtransport.md, section 3: "a peer stream becomes visible with its first
    payload byte or its FIN". A stream opened first but left silent therefore appears after
    a later one that carries data, at both ends. (An app that opens a stream and waits for
    the peer to speak first would wait forever on a real connection.)"""
    real, in_process = await run_both_ways(
        build_app(),
        silent_script,
        webtransport_server,
        webtransport_client,
        webtransport_test_client,
    )
    assert real["order seen by the app"] == real["order seen by the client"] == ["second", ""]
    assert in_process == real
