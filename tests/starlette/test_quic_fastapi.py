"""A FastAPI app with WebTransport endpoints, over real QUIC against our hypercorn."""

# No "from __future__ import annotations": FastAPI resolves the dependencies named in
# the annotations of these local endpoints where they are defined.

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
import websockets
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, WebSocket

from starlette_webtransport.session import SessionRejectedError, WebTransportSession
from starlette_webtransport.starlette import (
    OriginMiddleware,
    WebTransportEndpoint,
    enable_webtransport,
)
from starlette_webtransport.starlette.fastapi import (
    webtransport_route,
    webtransport_session,
)

TIMEOUT = 10.0


def build_app(events: "asyncio.Queue[str]") -> FastAPI:
    async def database() -> AsyncIterator[str]:
        yield "db"
        events.put_nowait("db closed")

    async def current_user(
        session: Annotated[WebTransportSession, Depends(webtransport_session)],
        x_user: Annotated[str | None, Header()] = None,
    ) -> str:
        if x_user is None:
            raise HTTPException(401)
        return x_user

    app = FastAPI()
    router = APIRouter(prefix="/chat")

    @webtransport_route(router, "/rooms/{room}", name="room")
    async def room(
        session: WebTransportSession,
        org: str,
        room: str,
        user: Annotated[str, Depends(current_user)],
        db: Annotated[str, Depends(database)],
        limit: Annotated[int, Query()] = 10,
    ) -> None:
        await session.accept()
        async for stream in session.incoming_streams():
            await stream.read()
            answer = f"{org}/{room} {user} {db} {limit}"
            await stream.write(answer.encode(), end_stream=True)  # type: ignore[union-attr]
            await session.wait_closed()

    @webtransport_route(router, "/echo")
    class Echo(WebTransportEndpoint):
        async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
            await session.datagrams.send(data.upper())

    @app.get("/")
    async def home() -> dict[str, str]:
        return {"hello": "fastapi"}

    @app.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text((await websocket.receive_text()) + "!")
        await websocket.close()

    app.include_router(router, prefix="/orgs/{org}")
    app.add_middleware(OriginMiddleware)
    enable_webtransport(app)
    return app


async def test_fastapi_depends_over_quic(
    webtransport_server: Any, webtransport_client: Any
) -> None:
    events: asyncio.Queue[str] = asyncio.Queue()
    app = build_app(events)
    async with webtransport_server(app) as server:
        path = app.url_path_for("room", org="acme", room="hall")
        async with (
            asyncio.timeout(TIMEOUT),
            webtransport_client(server, f"{path}?limit=3", headers={"x-user": "ann"}) as session,
        ):
            stream = await session.create_bidirectional_stream()
            await stream.write(b"?", end_stream=True)
            assert await stream.read() == b"acme/hall ann db 3"
        async with asyncio.timeout(TIMEOUT):
            assert await events.get() == "db closed"

        async with asyncio.timeout(TIMEOUT), webtransport_client(server, "/orgs/a/chat/echo") as s:
            await s.datagrams.send(b"quic")
            assert await s.datagrams.receive() == b"QUIC"

        cases: list[tuple[str, dict[str, Any], int]] = [
            (path, {}, 401),
            (f"{path}?limit=many", {"headers": {"x-user": "ann"}}, 400),
            (path, {"headers": {"x-user": "ann"}, "origin": "https://evil.test"}, 403),
            ("/orgs/acme/elsewhere", {}, 404),
        ]
        for target, options, status in cases:
            with pytest.raises(SessionRejectedError) as caught:
                async with asyncio.timeout(TIMEOUT), webtransport_client(server, target, **options):
                    pass
            assert caught.value.status == status


async def test_fastapi_http_and_websocket_on_the_same_server(webtransport_server: Any) -> None:
    app = build_app(asyncio.Queue())
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a fresh development certificate, over loopback
    async with webtransport_server(app) as server:
        async with httpx.AsyncClient(verify=context, timeout=TIMEOUT) as client:
            assert (await client.get(server.url + "/")).json() == {"hello": "fastapi"}
        url = f"wss://{server.host}:{server.port}/ws"
        async with asyncio.timeout(TIMEOUT), websockets.connect(url, ssl=context) as websocket:
            await websocket.send("hi")
            assert await websocket.recv() == "hi!"
