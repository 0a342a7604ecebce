"""WebTransport endpoints in FastAPI apps with FastAPI's Depends, driven in memory."""

# No "from __future__ import annotations": FastAPI resolves the local dependencies
# named in these endpoints' annotations where they are defined.

from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, WebSocket
from starlette.requests import HTTPConnection
from starlette.testclient import TestClient

from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.starlette import OriginMiddleware, enable_webtransport
from starlette_webtransport.starlette.fastapi import (
    APIWebTransportRoute,
    webtransport_route,
    webtransport_session,
)

from .helpers import Channel, call, make_scope, run

Events = list[str]


def build_app(events: Events) -> FastAPI:
    async def database() -> AsyncIterator[str]:
        events.append("db open")
        yield "db"
        events.append("db closed")

    def audit(conn: HTTPConnection) -> None:
        events.append(f"audit {conn.url.path}")

    async def current_user(
        session: Annotated[WebTransportSession, Depends(webtransport_session)],
        x_user: Annotated[str | None, Header()] = None,
    ) -> str:
        if x_user is None:
            raise HTTPException(401, headers={"WWW-Authenticate": "User"})
        return f"{x_user} via {session.path}"

    app = FastAPI()
    app.state.current_user = current_user
    router = APIRouter(prefix="/chat", dependencies=[Depends(audit)])

    @webtransport_route(router, "/rooms/{room}", name="room")
    async def room(
        session: WebTransportSession,
        org: str,
        room: str,
        user: Annotated[str, Depends(current_user)],
        db: Annotated[str, Depends(database)],
        limit: Annotated[int, Query()] = 10,
    ) -> None:
        events.append(f"room {org}/{room} user={user} db={db} limit={limit}")
        await session.accept()

    @webtransport_route(app, "/direct")
    async def direct(session: WebTransportSession, db: Annotated[str, Depends(database)]) -> None:
        events.append(f"direct {db}")
        await session.accept()

    @app.get("/")
    async def home() -> dict[str, str]:
        return {"hello": "world"}

    @app.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    app.include_router(router, prefix="/orgs/{org}")
    app.add_middleware(OriginMiddleware)
    enable_webtransport(app)
    return app


async def test_depends_path_query_header_and_router_dependencies() -> None:
    events: Events = []
    app = build_app(events)
    channel = await call(
        app, "/orgs/acme/chat/rooms/hall", headers=[(b"x-user", b"ann")], query_string=b"limit=3"
    )
    assert channel.of("accept") and channel.of("close")
    assert events == [
        "audit /orgs/acme/chat/rooms/hall",
        "db open",
        "room acme/hall user=ann via /orgs/acme/chat/rooms/hall db=db limit=3",
        "db closed",
    ]


async def test_generator_dependency_is_cleaned_up_after_the_session() -> None:
    events: Events = []
    channel = Channel()
    scope = make_scope("/direct")
    original_send = channel.send

    async def send(message: Any) -> None:
        events.append(f"sent {message['type']}")
        await original_send(message)

    await run(build_app(events), scope, _with_send(channel, send))
    assert events == [
        "db open",
        "direct db",
        "sent webtransport.accept",
        "sent webtransport.close",
        "db closed",
    ]


def _with_send(channel: Channel, send: Any) -> Channel:
    channel.send = send  # type: ignore[method-assign]
    return channel


async def test_validation_and_http_exceptions_reject_before_accept() -> None:
    events: Events = []
    app = build_app(events)
    channel = await call(app, "/orgs/acme/chat/rooms/hall")
    assert channel.sent == [
        {"type": "webtransport.reject", "status": 401, "headers": [(b"www-authenticate", b"User")]}
    ]
    channel = await call(
        app, "/orgs/acme/chat/rooms/hall", headers=[(b"x-user", b"ann")], query_string=b"limit=x"
    )
    assert channel.sent == [{"type": "webtransport.reject", "status": 400, "headers": []}]
    assert (await call(app, "/orgs/acme/chat/nowhere")).sent[0]["status"] == 404


async def test_dependency_overrides_apply() -> None:
    events: Events = []
    app = build_app(events)

    async def fake_user() -> str:
        return "tester"

    current_user = app.state.current_user
    app.dependency_overrides[current_user] = fake_user
    channel = await call(app, "/orgs/acme/chat/rooms/hall")
    assert channel.of("accept")
    assert "room acme/hall user=tester db=db limit=10" in events


def test_url_path_for_http_websocket_and_openapi() -> None:
    app = build_app([])
    assert app.url_path_for("room", org="acme", room="hall") == "/orgs/acme/chat/rooms/hall"
    assert app.url_path_for("direct") == "/direct"
    with TestClient(app) as client:
        assert client.get("/").json() == {"hello": "world"}
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("ping")
            assert websocket.receive_text() == "ping"
        schema = client.get("/openapi.json").json()
    assert list(schema["paths"]) == ["/"]


async def test_middleware_added_with_add_middleware_sees_sessions() -> None:
    app = build_app([])
    channel = await call(app, "/direct", headers=[(b"origin", b"https://evil.test")])
    assert channel.sent[0]["status"] == 403


def test_bad_endpoints_fail_when_declared() -> None:
    router = APIRouter()

    def sync_endpoint(session: WebTransportSession) -> None:
        pass

    with pytest.raises(TypeError, match="must be async"):
        webtransport_route(router, "/x")(sync_endpoint)
    with pytest.raises(ValueError, match="must start with '/'"):
        APIWebTransportRoute("x", sync_endpoint)
