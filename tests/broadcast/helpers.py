"""A room server over a given hub, and clients, for the broadcast tests (real QUIC)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette_webtransport.asgi import Receive, Scope, Send
from starlette_webtransport.broadcast import Broadcast, Delivery
from starlette_webtransport.client import connect
from starlette_webtransport.session import WebTransportReceiveStream, WebTransportSession
from starlette_webtransport.testing.server import running_server


class RoomApp:
    """``/<group>``: join the group; relay datagrams and unidirectional streams to the
    others, as the example app's rooms do, over the hub the test chose."""

    def __init__(self, hub: Broadcast) -> None:
        self.hub = hub
        self.sessions: list[WebTransportSession] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert scope["type"] == "webtransport"
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        self.sessions.append(session)
        group = scope["path"].strip("/")
        await self.hub.join(group, session, data={"n": len(self.sessions)})
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._datagrams(session, group))
            async for stream in session.incoming_streams():
                assert isinstance(stream, WebTransportReceiveStream)
                tasks.create_task(self._stream(session, group, stream))

    async def _datagrams(self, session: WebTransportSession, group: str) -> None:
        async for data in session.datagrams:
            await self.hub.publish(group, data, exclude=session)

    async def _stream(
        self, session: WebTransportSession, group: str, stream: WebTransportReceiveStream
    ) -> None:
        data = await stream.read()
        await self.hub.publish(group, data, delivery=Delivery.UNI_STREAM, exclude=session)


@contextlib.asynccontextmanager
async def room_server(hub: Broadcast) -> AsyncIterator[tuple[str, bytes, RoomApp]]:
    app = RoomApp(hub)
    async with hub, running_server(app) as state:
        yield f"https://127.0.0.1:{state.port}", state.certificate_sha256, app


@contextlib.asynccontextmanager
async def members(
    base: str, sha256: bytes, group: str, count: int, **options: Any
) -> AsyncIterator[list[WebTransportSession]]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                connect(f"{base}/{group}", certificate_hashes=[sha256], **options)
            )
            for _ in range(count)
        ]
        yield sessions


async def next_stream_data(session: WebTransportSession, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        async for stream in session.incoming_streams():
            assert isinstance(stream, WebTransportReceiveStream)
            return await stream.read()
    raise AssertionError("the session closed before a stream arrived")


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)
