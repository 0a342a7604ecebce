"""The example app: WebTransport echo and typed messages, with a browser page.

Run it with ``scripts/example`` (or ``starlette-webtransport serve example_app.app:app
--http-port 8000``) and open http://127.0.0.1:8000/: the room page (chat, live cursors,
presence and live charts; ``example_app/live.py`` serves it). The echo checks page is at
http://127.0.0.1:8000/echo-checks.

``/echo`` is the contract that outside checks rely on: every client bidirectional stream
is echoed on the same stream and finished when the client finishes it; every client
unidirectional stream, once it ends, is sent back on a new server unidirectional stream;
every datagram is echoed as a datagram.

``/rooms/{room}`` is a room, with a contract other checks rely on too: every datagram a
member sends is delivered as a datagram to every *other* member of the room, in every
worker and every server that shares the broadcast URL (``--broadcast``); every
unidirectional stream a member opens is, once it ends, delivered to every other member
on a new server unidirectional stream with the same bytes; the sender gets neither back.
``GET /rooms/{room}/members`` lists the room's members on every node, as JSON.

``/structured`` answers typed messages (msgspec Structs in the structured wire format) and
answers an invalid message with an ``Error`` message instead of dropping the stream.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from example_app import live
from starlette_webtransport.broadcast import (
    BackendUnavailableError,
    Delivery,
    default_broadcast,
)
from starlette_webtransport.session import (
    StreamType,
    WebTransportReceiveStream,
    WebTransportSession,
    WebTransportStream,
    serve_streams,
)
from starlette_webtransport.session.constants import STREAM_REFUSED_CODE
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
    # Each stream is its own error domain: a peer's reset or a failing echo ends that
    # stream only, and a datagram that cannot be echoed is logged, not fatal.
    await serve_streams(session, partial(_echo_stream, session), on_datagram=session.datagrams.send)


async def _echo_stream(session: WebTransportSession, stream: StreamType) -> None:
    if not isinstance(stream, WebTransportStream):  # a unidirectional stream
        data = await stream.read()
        reply = await session.create_unidirectional_stream()
        await reply.write(data, end_stream=True)
        return
    async for chunk in stream:
        await stream.write(chunk)
    await stream.close()


ROOM_MESSAGE_LIMIT = 64 * 1024
"""Largest unidirectional stream a room relays; a longer one is stopped, not buffered."""
ROOM_MESSAGE_TOO_LARGE = 0x10D
"""STOP_SENDING code for a stream over :data:`ROOM_MESSAGE_LIMIT`."""


async def room(session: WebTransportSession) -> None:
    await session.accept()
    hub = default_broadcast()
    group = f"room:{session.path_params['room']}"
    await hub.join(group, session)  # and leaves when the session ends

    async def relay_datagram(data: bytes) -> None:
        await hub.publish(group, data, delivery=Delivery.DATAGRAM, exclude=session)

    async def on_stream(stream: StreamType) -> None:
        if isinstance(stream, WebTransportStream):  # not part of a room's contract
            await stream.abort(STREAM_REFUSED_CODE)
        else:
            await _relay_stream(session, group, stream)

    await serve_streams(session, on_stream, on_datagram=relay_datagram)


async def _relay_stream(
    session: WebTransportSession, group: str, stream: WebTransportReceiveStream
) -> None:
    # A reset by the sender raises StreamResetError here: nothing is relayed, and
    # serve_streams ends this handler quietly while the room goes on.
    message = bytearray()
    while chunk := await stream.read(ROOM_MESSAGE_LIMIT + 1 - len(message)):
        message += chunk
        if len(message) > ROOM_MESSAGE_LIMIT:
            await stream.stop_sending(ROOM_MESSAGE_TOO_LARGE)
            return
    await default_broadcast().publish(
        group, bytes(message), delivery=Delivery.UNI_STREAM, exclude=session
    )


async def room_members(request: Request) -> JSONResponse:
    try:
        members = await default_broadcast().members(f"room:{request.path_params['room']}")
    except BackendUnavailableError as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return JSONResponse([{"id": m.member_id, "node": m.node, "data": m.data} for m in members])


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

    async def on_stream(stream: StreamType) -> None:
        if isinstance(stream, WebTransportStream):
            await _answer(StructuredStream(stream, schema=SCHEMA))

    await serve_streams(session, on_stream)


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


async def room_page(request: object) -> FileResponse:
    return FileResponse(HERE / "static" / "room.html")


async def echo_checks_page(request: object) -> FileResponse:
    return FileResponse(HERE / "static" / "echo-checks.html")


app = Starlette(
    routes=[
        Route("/", room_page),
        Route("/echo-checks", echo_checks_page),
        Mount(
            "/static",
            StaticFiles(directory=HERE / "static", packages=[("starlette_webtransport", "static")]),
        ),
        javascript_mount(),  # /_webtransport/js/webtransport.js: connect() for the page
        WebTransportRoute("/echo", echo),
        WebTransportRoute("/structured", structured),
        WebTransportRoute("/rooms/{room}", room),
        Route("/rooms/{room}/members", room_members),
        *live.routes,  # /rooms/{room}/live and its token: the room page's protocol
    ]
)
enable_webtransport(app)
