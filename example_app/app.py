"""The example app: WebTransport echo and typed messages, with a browser page.

Run it with ``scripts/example`` (or ``starlette-webtransport serve example_app.app:app
--http-port 8000``) and open http://127.0.0.1:8000/.

``/echo`` is the contract that outside checks rely on: every client bidirectional stream
is echoed on the same stream and finished when the client finishes it; every client
unidirectional stream, once it ends, is sent back on a new server unidirectional stream;
every datagram is echoed as a datagram.

``/structured`` answers typed messages (msgspec Structs in the structured wire format) and
answers an invalid message with an ``Error`` message instead of dropping the stream.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from starlette_webtransport.session import (
    StreamType,
    WebTransportSession,
    WebTransportStream,
)
from starlette_webtransport.starlette import (
    WebTransportRoute,
    enable_webtransport,
    javascript_mount,
)
from starlette_webtransport.structured import (
    EndOfStream,
    JSONSerializer,
    MessageDecodeError,
    Schema,
    StructuredStream,
    UnknownMessageTypeError,
)

HERE = Path(__file__).parent


async def echo(session: WebTransportSession) -> None:
    await session.accept()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_echo_datagrams(session))
        async for stream in session.incoming_streams():
            tasks.create_task(_echo_stream(session, stream))


async def _echo_datagrams(session: WebTransportSession) -> None:
    async for data in session.datagrams:
        await session.datagrams.send(data)


async def _echo_stream(session: WebTransportSession, stream: StreamType) -> None:
    if not isinstance(stream, WebTransportStream):  # a unidirectional stream
        data = await stream.read()
        reply = await session.create_unidirectional_stream()
        await reply.write(data, end_stream=True)
        return
    async for chunk in stream:
        await stream.write(chunk)
    await stream.close()


class Hello(msgspec.Struct):
    seq: int
    text: str


class Reply(msgspec.Struct):
    seq: int
    text: str


class Error(msgspec.Struct):
    detail: str


SCHEMA: Schema[Hello | Reply | Error] = Schema(
    {1: Hello, 2: Reply, 3: Error}, serializer=JSONSerializer()
)


async def structured(session: WebTransportSession) -> None:
    await session.accept()
    async with asyncio.TaskGroup() as tasks:
        async for stream in session.incoming_streams():
            if isinstance(stream, WebTransportStream):
                tasks.create_task(_answer(StructuredStream(stream, schema=SCHEMA)))


async def _answer(stream: StructuredStream[Hello | Reply | Error]) -> None:
    while True:
        try:
            message = await stream.receive_obj()
        except (MessageDecodeError, UnknownMessageTypeError) as exc:
            await stream.send_obj(Error(detail=str(exc)))
            continue
        except EndOfStream:
            break
        if isinstance(message, Hello):
            await stream.send_obj(Reply(seq=message.seq, text=message.text.upper()))
        else:
            await stream.send_obj(Error(detail=f"expected Hello, got {type(message).__name__}"))
    await stream.close()


async def homepage(request: object) -> FileResponse:
    return FileResponse(HERE / "static" / "index.html")


app = Starlette(
    routes=[
        Route("/", homepage),
        Mount(
            "/static",
            StaticFiles(directory=HERE / "static", packages=[("starlette_webtransport", "static")]),
        ),
        javascript_mount(),  # /_webtransport/js/webtransport.js: connect() for the page
        WebTransportRoute("/echo", echo),
        WebTransportRoute("/structured", structured),
    ]
)
enable_webtransport(app)
