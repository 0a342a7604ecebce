"""A plain Starlette app served by our hypercorn adapter, used by the real QUIC client.

One app carries every feature (routes in Mount and Host, decorators, class endpoints,
dependencies, middleware, lifespan state, HTTP and WebSocket routes), and each test
starts one server for it, to keep the number of servers small.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from starlette_webtransport.session import (
    SessionRejectedError,
    StreamType,
    WebTransportSession,
    WebTransportStream,
)
from starlette_webtransport.starlette import (
    AuthenticationMiddleware,
    Depends,
    OriginMiddleware,
    WebTransportEndpoint,
    WebTransportRoute,
    enable_webtransport,
    webtransport_route,
)

TIMEOUT = 10.0


class Recorder:
    """Pure ASGI middleware noting which scopes reach it, in order."""

    def __init__(self, app: ASGIApp, name: str, visits: list[str]) -> None:
        self.app = app
        self.name = name
        self.visits = visits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "webtransport":
            self.visits.append(self.name)
        await self.app(scope, receive, send)


class TokenBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        token = conn.headers.get("x-token")
        if token is None:
            return None
        if token != "secret":
            raise AuthenticationError("bad token")
        return AuthCredentials(["chat"]), SimpleUser("ann")


class Echo(WebTransportEndpoint):
    """Upper-cases each stream, reverses each datagram, reports how the session ended."""

    async def on_stream(self, session: WebTransportSession, stream: StreamType) -> None:
        data = await stream.read()
        if isinstance(stream, WebTransportStream):
            await stream.write(data.upper(), end_stream=True)

    async def on_datagram(self, session: WebTransportSession, data: bytes) -> None:
        await session.datagrams.send(data[::-1])

    async def on_disconnect(self, session: WebTransportSession, code: int, reason: str) -> None:
        session.scope["app"].state.disconnects.put_nowait((code, reason))


async def reply(session: WebTransportSession, text: str) -> None:
    """Accept, answer the client's first stream with ``text``, and wait for the client
    to close: returning would close the session, resetting the answer in flight."""
    await session.accept()
    async for stream in session.incoming_streams():
        assert isinstance(stream, WebTransportStream)
        await stream.read()
        await stream.write(text.encode(), end_stream=True)
        await session.wait_closed()


async def room(session: WebTransportSession, team: str, room: str, seat: int) -> None:
    await reply(session, f"{team}/{room}/{seat + 1}")


async def live(session: WebTransportSession, conn: HTTPConnection) -> None:
    await reply(session, f"live {conn.url_for('decorated', word='x')}")


async def whoami(session: WebTransportSession, conn: HTTPConnection) -> None:
    if not conn.user.is_authenticated:
        await session.reject(403)
        return
    visits = conn.app.state.visits
    await reply(session, f"{conn.user.display_name} {conn.auth.scopes} {visits}")


async def resource(conn: HTTPConnection) -> AsyncIterator[str]:
    # The lifespan's state reaches sessions as request state; app.state is shared too.
    yield f"{conn.state.greeting} and {conn.app.state.name}"
    conn.app.state.cleanups.put_nowait(conn.url.path)


async def with_resource(session: WebTransportSession, value: str = Depends(resource)) -> None:
    await reply(session, value)


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse("home")


async def websocket_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text((await websocket.receive_text()).upper())
    await websocket.close()


def build_app() -> Starlette:
    visits: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        app.state.name = "app.state"
        yield {"greeting": "lifespan state"}

    app = Starlette(
        routes=[
            Route("/", homepage),
            WebSocketRoute("/echo", websocket_echo),
            WebTransportRoute("/echo", Echo),
            Mount(
                "/teams/{team}",
                routes=[WebTransportRoute("/rooms/{room}/{seat:int}", room, name="room")],
                name="teams",
            ),
            Host("{sub}.example.test", app=Router([WebTransportRoute("/live", reply)])),
            Host("127.0.0.1", app=Router([WebTransportRoute("/live", live, name="live")])),
            WebTransportRoute("/whoami", whoami),
            WebTransportRoute("/resource", with_resource),
        ],
        middleware=[
            Middleware(Recorder, name="outer", visits=visits),
            Middleware(OriginMiddleware, allow_origins=["https://app.example.com"]),
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),
            Middleware(Recorder, name="inner", visits=visits),
        ],
        lifespan=lifespan,
    )
    app.state.visits = visits
    app.state.cleanups = asyncio.Queue()
    app.state.disconnects = asyncio.Queue()

    @webtransport_route(app, "/decorated/{word}", name="decorated")
    async def decorated(session: WebTransportSession, word: str) -> None:
        await reply(session, word[::-1])

    enable_webtransport(app)
    return app


async def ask(client: Any, server: Any, path: str, **options: Any) -> bytes:
    """Open a session at ``path``, send one stream, return the answer."""
    async with asyncio.timeout(TIMEOUT), client(server, path, **options) as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"?", end_stream=True)
        return bytes(await stream.read())


async def rejection(client: Any, server: Any, path: str, **options: Any) -> int:
    with pytest.raises(SessionRejectedError) as caught:
        async with asyncio.timeout(TIMEOUT), client(server, path, **options):
            pass
    return caught.value.status


async def test_routes_mount_host_url_path_for_and_decorators(
    webtransport_server: Any, webtransport_client: Any
) -> None:
    app = build_app()
    async with webtransport_server(app) as server:
        path = app.url_path_for("teams:room", team="red", room="hall", seat=4)
        assert path == "/teams/red/rooms/hall/4"
        assert await ask(webtransport_client, server, path) == b"red/hall/5"
        expected = f"live {server.url}/decorated/x".encode()
        assert await ask(webtransport_client, server, "/live") == expected
        path = app.url_path_for("decorated", word="stressed")
        assert await ask(webtransport_client, server, path) == b"desserts"
        assert await rejection(webtransport_client, server, "/teams/red/rooms/hall/x") == 404
        assert await rejection(webtransport_client, server, "/nowhere") == 404


async def test_class_endpoint_streams_datagrams_and_disconnect(
    webtransport_server: Any, webtransport_client: Any
) -> None:
    app = build_app()
    async with webtransport_server(app) as server:
        async with asyncio.timeout(TIMEOUT), webtransport_client(server, "/echo") as session:
            streams = [await session.create_bidirectional_stream() for _ in range(3)]
            for index, stream in enumerate(reversed(streams)):
                await stream.write(f"stream {index}".encode(), end_stream=True)
            answers = [await stream.read() for stream in streams]
            assert answers == [b"STREAM 2", b"STREAM 1", b"STREAM 0"]
            await session.datagrams.send(b"abc")
            assert await session.datagrams.receive() == b"cba"
            await session.close(code=4321, reason="done")
        async with asyncio.timeout(TIMEOUT):
            assert await app.state.disconnects.get() == (4321, "done")


async def test_dependency_cleanup_after_session_and_lifespan_state(
    webtransport_server: Any, webtransport_client: Any
) -> None:
    app = build_app()
    async with webtransport_server(app) as server:
        answer = await ask(webtransport_client, server, "/resource")
        assert answer == b"lifespan state and app.state"
        async with asyncio.timeout(TIMEOUT):
            assert await app.state.cleanups.get() == "/resource"


async def test_origin_authentication_and_middleware_order(
    webtransport_server: Any, webtransport_client: Any
) -> None:
    app = build_app()
    allowed = "https://app.example.com"
    async with webtransport_server(app) as server:
        answer = await ask(
            webtransport_client, server, "/whoami", origin=allowed, headers={"x-token": "secret"}
        )
        assert answer == b"ann ['chat'] ['outer', 'inner']"
        options: dict[str, Any] = {"origin": "https://evil.test", "headers": {"x-token": "secret"}}
        assert await rejection(webtransport_client, server, "/whoami", **options) == 403
        options = {"origin": allowed, "headers": {"x-token": "wrong"}}
        assert await rejection(webtransport_client, server, "/whoami", **options) == 400
        assert await rejection(webtransport_client, server, "/whoami", origin=allowed) == 403
        # Each middleware saw each session, outermost first, until one refused it.
        assert app.state.visits == ["outer", "inner", "outer", "outer", "outer", "inner"]


async def test_http_and_websocket_routes_on_the_same_server(webtransport_server: Any) -> None:
    app = build_app()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a fresh development certificate, over loopback
    async with webtransport_server(app) as server:
        async with httpx.AsyncClient(verify=context, timeout=TIMEOUT) as client:
            response = await client.get(server.url + "/")
            assert response.text == "home"
            assert (await client.get(server.url + "/nowhere")).status_code == 404
        url = f"wss://{server.host}:{server.port}/echo"
        async with asyncio.timeout(TIMEOUT), websockets.connect(url, ssl=context) as websocket:
            await websocket.send("over tcp")
            assert await websocket.recv() == "OVER TCP"
