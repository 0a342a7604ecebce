"""A raw ASGI app whose WebTransport handler each test supplies.

The adapter tests speak the contract directly (no session layer), so they check exactly
the messages of ``docs/asgi-webtransport.md`` against real QUIC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from starlette_webtransport.server.serve import ServerState
from starlette_webtransport.testing.server import running_server

Handler = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class ScriptedApp:
    """Routes WebTransport scopes by path to per-test handlers; answers HTTP with 'ok'."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.http_versions: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            self.http_versions.append(scope["http_version"])
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        assert scope["type"] == "webtransport"
        handler = self.handlers.get(scope["path"])
        if handler is None:
            await receive()
            await send({"type": "webtransport.reject", "status": 404})
            return
        await handler(scope, receive, send)


@pytest.fixture
def app() -> ScriptedApp:
    return ScriptedApp()


@pytest.fixture
async def server(app: ScriptedApp) -> AsyncIterator[ServerState]:
    async with running_server(app) as state:
        yield state
