"""A user's module, fully typed: ``mypy --strict`` must accept it wherever the package is
installed (the checkout's editable install, a wheel in a fresh venv). It touches the names a
first app touches: routes, endpoints, dependencies, sessions, streams and typed messages."""

from __future__ import annotations

import msgspec
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from starlette_webtransport import (
    WebTransportRoute,
    WebTransportSession,
    enable_webtransport,
    serve_streams,
)
from starlette_webtransport.session import StreamType, WebTransportStream
from starlette_webtransport.starlette import Depends
from starlette_webtransport.structured import MsgPackSerializer, Schema, StructuredStream


class Ping(msgspec.Struct):
    n: int


SCHEMA = Schema({1: Ping}, serializer=MsgPackSerializer())


def user_name(conn: HTTPConnection) -> str:
    return conn.query_params.get("name", "guest")


async def echo(session: WebTransportSession, name: str = Depends(user_name)) -> None:
    await session.accept()

    async def on_stream(stream: StreamType) -> None:
        if isinstance(stream, WebTransportStream):
            data: bytes = await stream.read()
            await stream.write(name.encode() + b": " + data, end_stream=True)

    await serve_streams(session, on_stream, on_datagram=session.datagrams.send)


class Pong(msgspec.Struct):
    n: int


PONGS = Schema({1: Pong}, serializer=MsgPackSerializer())


async def ping(session: WebTransportSession) -> None:
    await session.accept()
    typed = await session.create_structured_stream(schema=SCHEMA)
    await typed.send_obj(Ping(1))
    reply: Ping = await typed.receive_obj()
    request = await session.accept_bidirectional_stream(timeout=5)
    answering: StructuredStream[Pong, Ping] = StructuredStream(
        request, send_schema=PONGS, receive_schema=SCHEMA
    )
    await answering.send_obj(Pong((await answering.receive_obj()).n + reply.n))
    await session.close(reason=f"got {reply.n}")


app = Starlette(routes=[WebTransportRoute("/echo", echo), WebTransportRoute("/ping", ping)])
enable_webtransport(app)
