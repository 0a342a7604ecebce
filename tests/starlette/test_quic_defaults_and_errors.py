"""What a developer sees when a session is refused, over real QUIC: the origin check's
defaults accept the server's own pages, every rejection is logged with its status and
what refused it, and a forgotten ``enable_webtransport(app)`` is named in words."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from starlette_webtransport.server.serve import free_port
from starlette_webtransport.session import SessionRejectedError, WebTransportSession
from starlette_webtransport.starlette import (
    Depends,
    OriginMiddleware,
    WebTransportRoute,
    enable_webtransport,
)
from starlette_webtransport.testing import WebTransportTestClient

TIMEOUT = 10.0


async def accept(session: WebTransportSession) -> None:
    await session.accept()
    await session.close()


def need_token(session: WebTransportSession) -> str:
    token = session.query_params.get("token")
    if token != "secret":
        raise HTTPException(403, "no token")
    return token


async def guarded(session: WebTransportSession, token: str = Depends(need_token)) -> None:
    await accept(session)


async def status_of(client: Any, server: Any, path: str, **options: Any) -> int:
    """200 if the session was accepted, else the rejection status."""
    try:
        async with asyncio.timeout(TIMEOUT), client(server, path, **options) as session:
            await session.wait_closed()
    except SessionRejectedError as exc:
        return exc.status
    return 200


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


async def test_the_servers_own_pages_pass_the_default_origin_check(
    webtransport_server: Any, webtransport_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="starlette_webtransport")
    app = Starlette(
        routes=[WebTransportRoute("/wt", accept)], middleware=[Middleware(OriginMiddleware)]
    )
    enable_webtransport(app)
    http_port = free_port()
    async with webtransport_server(app, http_port=http_port) as server:
        page = f"http://127.0.0.1:{http_port}"  # the getting-started page (--http-port)
        assert await status_of(webtransport_client, server, "/wt", origin=page) == 200
        itself = f"https://127.0.0.1:{server.port}"
        assert await status_of(webtransport_client, server, "/wt", origin=itself) == 200
        other = f"http://127.0.0.1:{free_port()}"
        assert await status_of(webtransport_client, server, "/wt", origin=other) == 403
        assert (
            await status_of(webtransport_client, server, "/wt", origin="https://evil.test") == 403
        )
    refused = [m for m in messages(caplog) if "rejected with 403" in m]
    assert len(refused) == 2, messages(caplog)
    assert f"OriginMiddleware: origin '{other}' is not allowed" in refused[0]
    assert "'https://evil.test'" in refused[1]


async def test_a_rejection_is_logged_with_its_status_and_cause(
    webtransport_server: Any, webtransport_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Rejections are INFO; an accepted session's close is DEBUG (per-session lines cost a
    # busy server time, docs/performance.md): DEBUG shows both, so the test tells them apart.
    caplog.set_level(logging.DEBUG, logger="starlette_webtransport")
    app = Starlette(routes=[WebTransportRoute("/guarded", guarded)])
    enable_webtransport(app)
    async with webtransport_server(app) as server:
        assert await status_of(webtransport_client, server, "/guarded") == 403
        assert await status_of(webtransport_client, server, "/nowhere") == 404
        assert await status_of(webtransport_client, server, "/guarded?token=secret") == 200
        await asyncio.sleep(0.2)  # the server logs a session's end once its stream is done
    lines = messages(caplog)
    assert any(
        "/guarded rejected with 403: HTTPException(403, 'no token') raised in need_token" in m
        for m in lines
    ), lines
    assert any("/nowhere rejected with 404: no WebTransportRoute matches" in m for m in lines)
    server_lines = [m for m in lines if m.startswith("session ") and " opened" not in m]
    rejected = [
        r for r in caplog.records if r.getMessage().endswith("rejected: /guarded status=403")
    ]
    assert rejected and all(r.levelno == logging.INFO for r in rejected), server_lines
    assert any(m.endswith("rejected: /nowhere status=404") for m in server_lines), server_lines
    closed = [m for m in server_lines if "closed" in m]
    assert len(closed) == 1 and "/guarded?" not in closed[0], server_lines  # only the accepted


def forgetful_app() -> Starlette:
    return Starlette(routes=[WebTransportRoute("/wt", accept)])  # no enable_webtransport(app)


async def test_forgetting_enable_webtransport_is_said_in_words_by_the_server(
    webtransport_server: Any, webtransport_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="starlette_webtransport")
    async with webtransport_server(forgetful_app()) as server:
        assert await status_of(webtransport_client, server, "/wt") == 500
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("call starlette_webtransport.enable_webtransport(app)" in m for m in errors), errors
    assert not [r for r in caplog.records if r.exc_info], "a bare traceback instead of words"


async def test_forgetting_enable_webtransport_is_said_in_words_in_process() -> None:
    client = WebTransportTestClient(forgetful_app())
    with pytest.raises(RuntimeError, match=r"enable_webtransport\(app\)") as caught:
        async with client.connect("/wt"):
            pass
    assert isinstance(caught.value.__cause__, AssertionError)
