"""Dependency injection and error handling of function endpoints, driven in memory."""

# No "from __future__ import annotations": the endpoints below are local functions
# whose Annotated[..., Depends(local)] annotations must be evaluated where defined.

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Mount
from starlette.websockets import WebSocket

from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.starlette import (
    INTERNAL_ERROR_CODE,
    Depends,
    WebTransportException,
    WebTransportRoute,
    enable_webtransport,
)

from .helpers import Channel, call, make_scope, run


def app_for(path: str, endpoint: object) -> Starlette:
    app = Starlette(routes=[WebTransportRoute(path, endpoint)])  # type: ignore[arg-type]
    enable_webtransport(app)
    return app


async def test_session_connection_path_parameters_and_dependencies() -> None:
    events: list[str] = []
    received: dict[str, object] = {}

    async def database() -> AsyncIterator[str]:
        events.append("db open")
        yield "db"
        events.append("db closed")

    def settings() -> dict[str, str]:
        events.append("settings")
        return {"greeting": "hi"}

    def lock() -> Iterator[str]:
        events.append("lock taken")
        yield "lock"
        events.append("lock released")

    async def user(conn: HTTPConnection, db: str = Depends(database)) -> str:
        return f"{conn.headers['x-user']}@{db}"

    async def endpoint(
        session: WebTransportSession,
        room: str,
        conn: HTTPConnection,
        name: Annotated[str, Depends(user)],
        again: Annotated[str, Depends(user)],
        config: dict[str, str] = Depends(settings),
        held: str = Depends(lock),
        limit: int = 10,
    ) -> None:
        received.update(room=room, name=name, again=again, config=config, held=held, limit=limit)
        received["url"] = str(conn.url)
        await session.accept()
        events.append("endpoint done")

    app = app_for("/rooms/{room}", endpoint)
    channel = await call(app, "/rooms/blue", headers=[(b"x-user", b"ann")])
    assert received == {
        "room": "blue",
        "name": "ann@db",
        "again": "ann@db",
        "config": {"greeting": "hi"},
        "held": "lock",
        "limit": 10,
        "url": "https://example.test/rooms/blue",
    }
    # Cached: one database for both uses; cleanup after the session ended.
    assert events.count("db open") == 1
    assert events[-2:] in (["lock released", "db closed"], ["db closed", "lock released"])
    assert events.index("endpoint done") < events.index("db closed")
    assert channel.of("accept") and channel.of("close")


async def test_cleanup_runs_after_the_session_has_ended() -> None:
    order: list[str] = []
    channel = Channel()

    async def resource() -> AsyncIterator[None]:
        yield
        order.append(f"cleanup; closed={bool(channel.of('close'))}")

    async def endpoint(session: WebTransportSession, _: None = Depends(resource)) -> None:
        await session.accept()

    await run(app_for("/", endpoint), make_scope("/"), channel)
    assert order == ["cleanup; closed=True"]


async def test_use_cache_false_calls_the_dependency_each_time() -> None:
    calls: list[int] = []

    async def counter() -> int:
        calls.append(1)
        return len(calls)

    async def endpoint(
        session: WebTransportSession,
        a: int = Depends(counter, use_cache=False),
        b: int = Depends(counter, use_cache=False),
    ) -> None:
        assert (a, b) == (1, 2)
        await session.accept()

    assert (await call(app_for("/", endpoint), "/")).of("accept")


async def test_generator_dependency_sees_the_endpoint_exception() -> None:
    seen: list[BaseException] = []

    async def watcher() -> AsyncIterator[None]:
        try:
            yield
        except Exception as exc:
            seen.append(exc)
            raise

    async def endpoint(session: WebTransportSession, _: None = Depends(watcher)) -> None:
        await session.accept()
        raise WebTransportException(4000, "bye")

    channel = await call(app_for("/", endpoint), "/")
    assert channel.of("close") == [{"type": "webtransport.close", "code": 4000, "reason": "bye"}]
    assert isinstance(seen[0], WebTransportException)


async def test_dependency_raising_http_exception_rejects_with_its_status() -> None:
    async def require_token(conn: HTTPConnection) -> str:
        if "authorization" not in conn.headers:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        return conn.headers["authorization"]

    async def endpoint(session: WebTransportSession, token: str = Depends(require_token)) -> None:
        await session.accept()

    app = app_for("/", endpoint)
    channel = await call(app, "/")
    assert channel.sent == [
        {
            "type": "webtransport.reject",
            "status": 401,
            "headers": [(b"www-authenticate", b"Bearer")],
        }
    ]
    assert (await call(app, "/", headers=[(b"authorization", b"t")])).of("accept")


async def test_exceptions_end_the_session(caplog: pytest.LogCaptureFixture) -> None:
    async def before_accept(session: WebTransportSession) -> None:
        raise WebTransportException(4001)

    async def crash_before_accept(session: WebTransportSession) -> None:
        raise RuntimeError("boom before")

    async def crash_after_accept(session: WebTransportSession) -> None:
        await session.accept()
        raise RuntimeError("boom after")

    async def returns_unanswered(session: WebTransportSession) -> None:
        pass

    async def returns_open(session: WebTransportSession) -> None:
        await session.accept()

    caplog.set_level(logging.ERROR, "starlette_webtransport.starlette")
    assert (await call(app_for("/", before_accept), "/")).sent[0]["status"] == 403
    assert not caplog.records
    assert (await call(app_for("/", crash_before_accept), "/")).sent[0]["status"] == 500
    channel = await call(app_for("/", crash_after_accept), "/")
    assert channel.of("close")[0]["code"] == INTERNAL_ERROR_CODE
    assert channel.of("close")[0]["reason"] == "internal server error"
    assert [str(record.exc_info[1]) for record in caplog.records if record.exc_info] == [
        "boom before",
        "boom after",
    ]
    assert (await call(app_for("/", returns_unanswered), "/")).sent[0]["status"] == 403
    channel = await call(app_for("/", returns_open), "/")
    assert channel.of("close") == [{"type": "webtransport.close", "code": 0, "reason": ""}]


async def test_misplaced_http_exception_and_failing_cleanup_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def http_exception_after_accept(session: WebTransportSession) -> None:
        await session.accept()
        raise HTTPException(401)

    async def breaks_on_cleanup() -> AsyncIterator[None]:
        yield
        raise RuntimeError("cleanup failed")

    async def endpoint(session: WebTransportSession, _: None = Depends(breaks_on_cleanup)) -> None:
        await session.accept()

    channel = await call(app_for("/", http_exception_after_accept), "/")
    assert channel.of("close")[0]["code"] == INTERNAL_ERROR_CODE
    channel = await call(app_for("/", endpoint), "/")
    assert channel.of("close") == [{"type": "webtransport.close", "code": 0, "reason": ""}]
    assert [type(r.exc_info[1]) for r in caplog.records if r.exc_info] == [
        HTTPException,
        RuntimeError,
    ]
    assert "cleanup of the WebTransport session / raised" in caplog.text


async def test_peer_closing_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(session: WebTransportSession) -> None:
        await session.accept()
        await session.datagrams.send(b"x")
        await session.wait_closed()
        await session.datagrams.send(b"too late")  # raises SessionClosedError

    channel = Channel()
    task = asyncio.create_task(run(app_for("/", endpoint), make_scope("/"), channel))
    await channel.wait_for("datagram.send")
    channel.disconnect(7, "done")
    await task
    assert not channel.of("close")
    assert not [r for r in caplog.records if r.name.startswith("starlette_webtransport")]


async def test_path_parameter_of_enclosing_mount() -> None:
    got: list[str] = []

    async def endpoint(session: WebTransportSession, org: str, room: str) -> None:
        got.append(f"{org}/{room}")
        await session.accept()

    app = Starlette(routes=[Mount("/orgs/{org}", routes=[WebTransportRoute("/{room}", endpoint)])])
    enable_webtransport(app)
    assert (await call(app, "/orgs/acme/hall")).of("accept")
    assert got == ["acme/hall"]


async def test_unknown_parameter_rejects_with_500(caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(session: WebTransportSession, missing: str) -> None:
        await session.accept()

    channel = await call(app_for("/", endpoint), "/")
    assert channel.sent[0]["status"] == 500
    assert "'missing' is not a path parameter" in caplog.text


def test_unusable_signatures_fail_when_the_route_is_built() -> None:
    async def positional(session: WebTransportSession, /) -> None:
        pass

    async def variadic(session: WebTransportSession, **kwargs: object) -> None:
        pass

    async def websocket(ws: WebSocket) -> None:
        pass

    async def twice(x: Annotated[int, Depends(int)] = Depends(int)) -> None:
        pass

    with pytest.raises(TypeError, match="passed by keyword"):
        WebTransportRoute("/", positional)
    with pytest.raises(TypeError, match="passed by keyword"):
        WebTransportRoute("/", variadic)
    with pytest.raises(TypeError, match="asks for a WebSocket"):
        WebTransportRoute("/", websocket)
    with pytest.raises(TypeError, match="two Depends"):
        WebTransportRoute("/", twice)
    with pytest.raises(TypeError, match="needs a callable"):
        Depends("not callable")  # type: ignore[arg-type]


def test_webtransport_exception_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="u32"):
        WebTransportException(2**32)
    with pytest.raises(ValueError, match="1024"):
        WebTransportException(0, "x" * 1025)
    assert repr(WebTransportException(5, "r")) == "WebTransportException(code=5, reason='r')"
