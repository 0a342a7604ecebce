"""Routing of WebTransport sessions through Starlette apps, driven in memory."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, NoMatchFound, Route, Router, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.starlette import (
    WebTransportRoute,
    enable_webtransport,
    webtransport_route,
)
from starlette_webtransport.starlette.routing import WebTransportDispatcher

from .helpers import call

Seen = list[dict[str, Any]]


def recording(seen: Seen, label: str) -> Any:
    """An endpoint that records what routing gave it, then accepts."""

    async def endpoint(session: WebTransportSession) -> None:
        scope = session.scope
        seen.append(
            {
                "label": label,
                "path_params": dict(session.path_params),
                "root_path": scope["root_path"],
                "route": scope["route"],
                "router": scope["router"],
                "app": scope.get("app"),
            }
        )
        await session.accept()

    endpoint.__name__ = label
    return endpoint


def make_app(seen: Seen, **options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", lambda request: PlainTextResponse("home")),
            WebSocketRoute("/chat", websocket_echo),
            WebTransportRoute("/chat", recording(seen, "chat")),
            WebTransportRoute("/rooms/{room}/{seat:int}", recording(seen, "seat"), name="seat"),
            Mount(
                "/api/{version}",
                routes=[
                    Route("/items", lambda request: PlainTextResponse("items")),
                    WebTransportRoute("/rooms/{room}", recording(seen, "api-room"), name="room"),
                ],
                name="api",
            ),
            Mount("/static", routes=[Route("/x", lambda request: PlainTextResponse("x"))]),
            WebTransportRoute("/static/live", recording(seen, "static-live")),
            Host(
                "{team}.example.test",
                app=Router([WebTransportRoute("/live", recording(seen, "live"), name="live")]),
                name="teams",
            ),
        ],
        **options,
    )
    enable_webtransport(app)
    return app


async def websocket_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


async def test_path_parameters_are_converted() -> None:
    seen: Seen = []
    app = make_app(seen)
    channel = await call(app, "/rooms/lobby/7")
    assert channel.of("accept")
    assert seen[0]["label"] == "seat"
    assert seen[0]["path_params"] == {"room": "lobby", "seat": 7}
    assert seen[0]["router"] is app.router
    assert seen[0]["app"] is app
    assert isinstance(seen[0]["route"], WebTransportRoute)


async def test_unmatched_session_is_rejected_with_404_before_accept() -> None:
    seen: Seen = []
    app = make_app(seen)
    for path in ("/nowhere", "/rooms/lobby/not-an-int", "/"):
        channel = await call(app, path)
        assert channel.sent == [{"type": "webtransport.reject", "status": 404, "headers": []}]
    assert seen == []


async def test_route_inside_mount_sees_mount_parameters_and_root_path() -> None:
    seen: Seen = []
    channel = await call(make_app(seen), "/api/v2/rooms/blue")
    assert channel.of("accept")
    assert seen[0]["label"] == "api-room"
    assert seen[0]["path_params"] == {"version": "v2", "room": "blue"}
    assert seen[0]["root_path"] == "/api/v2"


async def test_mount_without_a_webtransport_match_does_not_end_the_search() -> None:
    seen: Seen = []
    channel = await call(make_app(seen), "/static/live")
    assert channel.of("accept")
    assert seen[0]["label"] == "static-live"


async def test_route_inside_host() -> None:
    seen: Seen = []
    app = make_app(seen)
    channel = await call(app, "/live", host="red.example.test:4433")
    assert channel.of("accept")
    assert seen[0]["label"] == "live"
    assert seen[0]["path_params"] == {"team": "red"}
    channel = await call(app, "/live", host="elsewhere.test")
    assert channel.of("reject")[0]["status"] == 404


async def test_route_inside_mounted_sub_application() -> None:
    seen: Seen = []
    sub_app = Starlette(routes=[WebTransportRoute("/echo/{word}", recording(seen, "sub"))])
    app = Starlette(routes=[Mount("/sub", app=sub_app)])
    enable_webtransport(app)
    channel = await call(app, "/sub/echo/hi")
    assert channel.of("accept")
    assert seen[0]["path_params"] == {"word": "hi"}
    assert seen[0]["root_path"] == "/sub"


def test_url_path_for() -> None:
    app = make_app([])
    assert app.url_path_for("seat", room="a", seat=3) == "/rooms/a/3"
    assert app.url_path_for("api:room", version="v1", room="b") == "/api/v1/rooms/b"
    url = app.url_path_for("teams:live", team="red")
    assert url == "/live"
    assert url.host == "red.example.test"
    assert url.make_absolute_url("https://example.test") == "https://red.example.test/live"
    with pytest.raises(NoMatchFound):
        app.url_path_for("seat", room="a")
    with pytest.raises(NoMatchFound):
        app.url_path_for("seat", room="a", seat=3, extra=1)


def test_http_and_websocket_routes_keep_working() -> None:
    with TestClient(make_app([])) as client:
        assert client.get("/").text == "home"
        assert client.get("/api/v1/items").text == "items"
        assert client.get("/nowhere").status_code == 404
        with client.websocket_connect("/chat") as websocket:
            websocket.send_text("hello")
            assert websocket.receive_text() == "hello"


async def test_middleware_sees_webtransport_scopes_in_order() -> None:
    visits: list[tuple[str, str]] = []

    class Recorder:
        def __init__(self, app: ASGIApp, name: str) -> None:
            self.app = app
            self.name = name

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "lifespan":
                visits.append((self.name, scope["type"]))
            await self.app(scope, receive, send)

    seen: Seen = []
    app = make_app(
        seen,
        middleware=[Middleware(Recorder, name="outer"), Middleware(Recorder, name="inner")],
    )
    channel = await call(app, "/chat")
    assert channel.of("accept")
    assert visits == [("outer", "webtransport"), ("inner", "webtransport")]
    assert seen[0]["label"] == "chat"


async def test_route_middleware_wraps_only_that_route() -> None:
    statuses: list[int] = []

    def deny(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            statuses.append(451)
            await send({"type": "webtransport.reject", "status": 451})

        return middleware

    seen: Seen = []
    app = Starlette(
        routes=[
            WebTransportRoute("/closed", recording(seen, "closed"), middleware=[Middleware(deny)]),
            WebTransportRoute("/open", recording(seen, "open")),
        ]
    )
    enable_webtransport(app)
    assert (await call(app, "/closed")).sent[0]["status"] == 451
    assert (await call(app, "/open")).of("accept")
    assert [entry["label"] for entry in seen] == ["open"]


async def test_asgi_class_endpoint() -> None:
    class Endpoint:
        def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
            self.send = send

        def __await__(self) -> Any:
            return self.send({"type": "webtransport.reject", "status": 418}).__await__()

    router = Router([WebTransportRoute("/teapot", Endpoint)])
    enable_webtransport(router)
    assert (await call(router, "/teapot")).sent[0]["status"] == 418


async def test_decorator_on_app_and_router() -> None:
    seen: Seen = []
    app = Starlette()
    router = Router()
    webtransport_route(app, "/a/{x}", name="a")(recording(seen, "a"))
    webtransport_route(router, "/b")(recording(seen, "b"))
    app.router.routes.append(Mount("/r", app=router))
    enable_webtransport(app)
    assert (await call(app, "/a/1")).of("accept")
    assert (await call(app, "/r/b")).of("accept")
    assert [entry["label"] for entry in seen] == ["a", "b"]
    assert app.url_path_for("a", x="1") == "/a/1"


def test_enable_webtransport_installs_one_dispatcher() -> None:
    app = Starlette()
    enable_webtransport(app)
    stack = app.router.middleware_stack
    enable_webtransport(app)
    assert app.router.middleware_stack is stack
    assert isinstance(stack, WebTransportDispatcher)


def test_invalid_routes_fail_at_construction() -> None:
    async def endpoint(session: WebTransportSession) -> None:
        pass

    def sync_endpoint(session: WebTransportSession) -> None:
        pass

    with pytest.raises(ValueError, match="must start with '/'"):
        WebTransportRoute("rooms", endpoint)
    with pytest.raises(TypeError, match="must be async"):
        WebTransportRoute("/rooms", sync_endpoint)
