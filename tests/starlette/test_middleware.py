"""Origin, trusted-host and authentication middleware, driven in memory."""

from __future__ import annotations

from typing import Any

import pytest
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
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.starlette import (
    AuthenticationMiddleware,
    OriginMiddleware,
    TrustedHostMiddleware,
    WebTransportRoute,
    enable_webtransport,
)

from .helpers import call


async def accept(session: WebTransportSession) -> None:
    await session.accept()


async def whoami(request: Request) -> PlainTextResponse:
    user = request.scope.get("user")
    return PlainTextResponse(user.display_name if user is not None else "-")


def app_with(*middleware: Middleware, endpoint: Any = accept) -> Starlette:
    app = Starlette(
        routes=[Route("/", whoami), WebTransportRoute("/wt", endpoint)],
        middleware=list(middleware),
    )
    enable_webtransport(app)
    return app


async def status_of(app: Starlette, *, host: str = "example.test", **options: Any) -> int:
    """200 if the session was accepted, else the rejection status."""
    channel = await call(app, "/wt", host=host, **options)
    return 200 if channel.of("accept") else int(channel.sent[0]["status"])


def origin(value: str) -> dict[str, Any]:
    return {"headers": [(b"origin", value.encode())]}


async def test_origin_default_allows_same_origin_and_non_browser_clients() -> None:
    app = app_with(Middleware(OriginMiddleware))
    assert await status_of(app) == 200  # no Origin: not a browser
    assert await status_of(app, **origin("https://example.test")) == 200
    assert await status_of(app, **origin("https://EXAMPLE.test:443")) == 200
    assert (
        await status_of(app, host="example.test:4433", **origin("https://example.test:4433")) == 200
    )
    assert await status_of(app, **origin("https://evil.test")) == 403
    assert await status_of(app, host="example.test:4433", **origin("https://example.test")) == 403
    assert await status_of(app, **origin("http://example.test")) == 403
    assert await status_of(app, **origin("null")) == 403


async def test_origin_allow_list_and_wildcard() -> None:
    app = app_with(Middleware(OriginMiddleware, allow_origins=["https://app.example.com"]))
    assert await status_of(app, **origin("https://app.example.com")) == 200
    assert await status_of(app, **origin("https://app.example.com:443")) == 200
    assert await status_of(app, **origin("https://other.example.com")) == 403
    assert await status_of(app, **origin("https://example.test")) == 200  # same origin
    app = app_with(Middleware(OriginMiddleware, allow_origins=["*"]))
    assert await status_of(app, **origin("https://anything.test")) == 200


def test_origin_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        OriginMiddleware(accept, allow_origins=["app.example.com"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an origin"):
        OriginMiddleware(accept, allow_origins=["https://x.test/path"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a str"):
        OriginMiddleware(accept, allow_origins="https://x.test")  # type: ignore[arg-type]


async def test_trusted_host() -> None:
    app = app_with(
        Middleware(TrustedHostMiddleware, allowed_hosts=["example.test", "*.example.org"])
    )
    assert await status_of(app) == 200
    assert await status_of(app, host="example.test:4433") == 200
    assert await status_of(app, host="api.example.org") == 200
    assert await status_of(app, host="evil.test") == 400
    assert await status_of(app, host="evil.test/.example.org") == 400
    with TestClient(app, base_url="https://evil.test") as client:
        assert client.get("/").status_code == 400
    with TestClient(app, base_url="https://example.test") as client:
        assert client.get("/").status_code == 200


class TokenBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        token = conn.query_params.get("token") or conn.headers.get("x-token")
        if token is None:
            return None
        if token != "secret":
            raise AuthenticationError("bad token")
        return AuthCredentials(["chat"]), SimpleUser("ann")


async def test_authentication_sets_user_and_rejects_bad_credentials() -> None:
    users: list[tuple[str, list[str]]] = []

    async def endpoint(session: WebTransportSession, conn: HTTPConnection) -> None:
        users.append((conn.user.display_name, conn.auth.scopes))
        if not conn.user.is_authenticated:
            await session.reject(403)
            return
        await session.accept()

    def on_error(conn: HTTPConnection, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), 401, headers={"WWW-Authenticate": "Token"})

    app = app_with(Middleware(AuthenticationMiddleware, backend=TokenBackend()), endpoint=endpoint)
    assert await status_of(app, query_string=b"token=secret") == 200
    assert await status_of(app) == 403
    assert await status_of(app, query_string=b"token=wrong") == 400  # Starlette's default
    assert users == [("ann", ["chat"]), ("", [])]

    app = app_with(
        Middleware(AuthenticationMiddleware, backend=TokenBackend(), on_error=on_error),
        endpoint=endpoint,
    )
    channel = await call(app, "/wt", query_string=b"token=wrong")
    assert channel.sent == [
        {
            "type": "webtransport.reject",
            "status": 401,
            "headers": [(b"www-authenticate", b"Token")],
        }
    ]
    with TestClient(app) as client:
        assert client.get("/", headers={"x-token": "secret"}).text == "ann"
        assert client.get("/", headers={"x-token": "wrong"}).status_code == 401
