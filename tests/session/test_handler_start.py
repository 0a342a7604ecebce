"""When a stream's handler starts under ``serve_streams``, over real QUIC.

A small request arrives in one packet: the stream, its data and its FIN. The handler is
handed the stream once that data is in it, and on Python 3.12+ its task starts eagerly
(``asyncio.eager_task_factory``), inside the turn in which the session read the request,
so it can answer without a loop turn of its own; before 3.12 it starts one turn later.
CI runs this file under both (``scripts/test``), each asserting its own behaviour.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from starlette_webtransport.asgi import Receive, Scope, Send
from starlette_webtransport.session import (
    Event,
    EventType,
    StreamType,
    WebTransportSession,
    WebTransportStream,
    serve_streams,
)
from starlette_webtransport.testing.plugin import ClientFactory, ServerFactory

TIMEOUT = 10.0
EAGER = sys.version_info >= (3, 12)


class TurnClock:
    """Counts event-loop turns: a callback that schedules itself runs once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._running = True

    def _tick(self) -> None:
        self.turn += 1
        if self._running:
            asyncio.get_running_loop().call_soon(self._tick)

    @contextmanager
    def running(self) -> Iterator[TurnClock]:
        asyncio.get_running_loop().call_soon(self._tick)
        try:
            yield self
        finally:
            self._running = False


async def test_a_handler_starts_with_its_request_in_the_turn_it_was_read(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    clock = TurnClock()
    opened: dict[int, int] = {}
    started: dict[int, tuple[int, int]] = {}

    async def echo(stream: StreamType) -> None:
        assert isinstance(stream, WebTransportStream)
        started[stream.stream_id] = (clock.turn, stream.buffered)
        data = await stream.read()
        await stream.write(data, end_stream=True)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport":
            return
        session = WebTransportSession(scope, receive, send)

        def on_opened(event: Event) -> None:
            opened[event.data["stream"].stream_id] = clock.turn

        session.on(EventType.STREAM_OPENED, on_opened)
        await session.accept()
        await serve_streams(session, echo)

    async with webtransport_server(app) as server, webtransport_client(server, "/") as client:
        async with asyncio.timeout(TIMEOUT):
            with clock.running():
                for i in range(5):
                    payload = b"request %d" % i
                    stream = await client.create_bidirectional_stream()
                    await stream.write(payload, end_stream=True)
                    assert await stream.read() == payload
    assert len(started) == len(opened) == 5
    for stream_id, (turn, buffered) in started.items():
        assert buffered > 0  # the request was in the stream when the handler got it
        assert turn - opened[stream_id] == (0 if EAGER else 1)
