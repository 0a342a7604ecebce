"""Fixtures that run the structured tests over any transport that provides streams.

Every stream and datagram test takes the ``connection`` fixture, an object with
``reset_error`` (the exception class the streams raise on a peer's reset),
``open_stream_pair()`` (a new bidirectional stream: ``near`` opened by one peer, ``far``
the same stream as the other peer accepts it; ``near`` writes first, so a real server
has announced the stream before ``far`` reads), ``datagram_pair()`` and
``wait_stopped(near)`` (the code of the STOP_SENDING ``near``'s sending side received).
A factory in ``CONNECTION_FACTORIES`` makes such an object from the test's fixture request:
``memory`` (in-memory pipes) and ``quic`` (a session over real QUIC on loopback, between our
hypercorn server and our client, through the pytest plugin's fixtures).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from starlette_webtransport.asgi import Receive, Scope, Send
from starlette_webtransport.session import (
    Event,
    StreamResetError,
    WebTransportDatagramTransport,
    WebTransportSession,
    WebTransportStream,
)
from starlette_webtransport.testing.plugin import ClientFactory, ServerFactory

from .memory import memory_connection

GRACE = 0.05
"""The server's graceful_timeout: the client closes the session before the server stops."""
TIMEOUT = 10.0


class _AcceptedStream:
    """The accepting peer's end of a stream the other peer opened.

    A real peer learns of a stream from its first bytes, and ``open_stream_pair()`` returns
    before the opener wrote any, so this end finds its stream on first use and then
    delegates to it.
    """

    def __init__(self, found: asyncio.Future[WebTransportStream]) -> None:
        self._found = found

    async def _stream(self) -> WebTransportStream:
        # Shielded: a caller's timeout must not cancel the lookup other calls share.
        return await asyncio.shield(self._found)

    async def read(self, n: int = -1) -> bytes:
        return await (await self._stream()).read(n)

    async def readexactly(self, n: int) -> bytes:
        return await (await self._stream()).readexactly(n)

    async def write(self, data: bytes, *, end_stream: bool = False) -> None:
        await (await self._stream()).write(data, end_stream=end_stream)

    async def close(self) -> None:
        await (await self._stream()).close()

    async def reset(self, code: int = 0) -> None:
        await (await self._stream()).reset(code)

    async def stop_sending(self, code: int = 0) -> None:
        await (await self._stream()).stop_sending(code)


class _Peer:
    """One end of the session: routes the streams the other end opens by id, and
    records the STOP_SENDING codes its own streams receive."""

    def __init__(self, session: WebTransportSession) -> None:
        self.session = session
        self._incoming: dict[int, asyncio.Future[WebTransportStream]] = {}
        self._stops: dict[int, int | None] = {}
        self._stopped = asyncio.Event()
        session.on("stream.stop_sending", self._on_stop)

    def found(self, stream_id: int) -> asyncio.Future[WebTransportStream]:
        if stream_id not in self._incoming:
            self._incoming[stream_id] = asyncio.get_running_loop().create_future()
        return self._incoming[stream_id]

    async def route(self) -> None:
        async for stream in self.session.incoming_streams():
            assert isinstance(stream, WebTransportStream), "only bidirectional streams here"
            self.found(stream.stream_id).set_result(stream)

    def _on_stop(self, event: Event) -> None:
        self._stops[event.data["stream"].stream_id] = event.data["code"]
        self._stopped.set()

    async def wait_stopped(self, stream_id: int) -> int | None:
        while stream_id not in self._stops:
            self._stopped.clear()
            await self._stopped.wait()
        return self._stops[stream_id]


class QuicConnection:
    """A session between our client (``client``) and our server (``server``) over QUIC."""

    reset_error = StreamResetError

    def __init__(self, client: WebTransportSession, server: WebTransportSession) -> None:
        self.client = _Peer(client)
        self.server = _Peer(server)

    async def open_stream_pair(
        self, *, opener: str = "client"
    ) -> tuple[WebTransportStream, _AcceptedStream]:
        near, far = (self.client, self.server) if opener == "client" else (self.server, self.client)
        stream = await near.session.create_bidirectional_stream()
        return stream, _AcceptedStream(far.found(stream.stream_id))

    async def accepted(self, near: WebTransportStream) -> WebTransportStream:
        """The other end's stream object for ``near``, once that end has seen it."""
        far = self.server if near.stream_id & 1 == 0 else self.client
        return await asyncio.shield(far.found(near.stream_id))

    async def datagram_pair(
        self, *, sender: str = "client"
    ) -> tuple[WebTransportDatagramTransport, WebTransportDatagramTransport]:
        near, far = (self.client, self.server) if sender == "client" else (self.server, self.client)
        return near.session.datagrams, far.session.datagrams

    async def wait_stopped(self, near: WebTransportStream) -> int | None:
        end = self.client if near.stream_id & 1 == 0 else self.server
        return await end.wait_stopped(near.stream_id)


class _ServeOne:
    """The server app: accepts every session, hands it to the test and keeps the app call
    alive until the session is closed."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[WebTransportSession] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await self.sessions.put(session)
        await session.wait_closed()


@asynccontextmanager
async def quic_connection(request: pytest.FixtureRequest) -> AsyncIterator[QuicConnection]:
    serve: ServerFactory = request.getfixturevalue("webtransport_server")
    connect: ClientFactory = request.getfixturevalue("webtransport_client")
    app = _ServeOne()
    async with serve(app, graceful_timeout=GRACE) as server, connect(server, "/") as client:
        server_session = await asyncio.wait_for(app.sessions.get(), TIMEOUT)
        connection = QuicConnection(client, server_session)
        # Plain tasks, not a TaskGroup: fixture setup and teardown may run in different tasks.
        routes = [
            asyncio.create_task(connection.client.route()),
            asyncio.create_task(connection.server.route()),
        ]
        try:
            yield connection
        finally:
            await client.close()
            await asyncio.wait_for(asyncio.gather(*routes), TIMEOUT)


CONNECTION_FACTORIES: dict[
    str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Any]]
] = {
    "memory": lambda request: memory_connection(),
    "quic": quic_connection,
}


@pytest.fixture(params=sorted(CONNECTION_FACTORIES))
async def connection(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async with CONNECTION_FACTORIES[request.param](request) as conn:
        yield conn


@pytest.fixture
async def quic(request: pytest.FixtureRequest) -> AsyncIterator[QuicConnection]:
    """Only the real-QUIC connection, for the tests that need both sessions."""
    async with quic_connection(request) as conn:
        yield conn
