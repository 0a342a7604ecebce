"""Spec 1.1 in the hypercorn adapter: receive credit follows what the app says it consumed.

An app that sends ``webtransport.credit`` keeps each stream's credit held until it sends
``webtransport.stream.consumed`` for that stream, so it can take every event at once
(new streams, datagrams, close) while the peer stays within one window of the stream it
does not read. Stopping a stream, or the session's end, gives everything back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from starlette_webtransport.server.serve import ServerState
from starlette_webtransport.transport import STREAM_WINDOW, SessionChannel

from .conftest import ScriptedApp
from .rawclient import raw_peer

CREDIT = {"type": "webtransport.credit", "returned_on": "consumed"}


def only_session(server: ServerState) -> SessionChannel:
    (session,) = server.sessions
    assert isinstance(session, SessionChannel)
    return session


class Taker:
    """Takes every event from ``receive`` in a task of its own, as the session's reader
    does, and counts the stream bytes it took."""

    def __init__(self, receive: Any) -> None:
        self.taken: dict[int, int] = {}
        self.kinds: list[str] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run(receive))

    async def _run(self, receive: Any) -> None:
        while True:
            message = await receive()
            self.kinds.append(message["type"])
            if message["type"] == "webtransport.stream.receive":
                stream = message["stream"]
                self.taken[stream] = self.taken.get(stream, 0) + len(message["data"])
            self.arrived.set()
            if message["type"] == "webtransport.disconnect":
                return

    def total(self) -> int:
        return sum(self.taken.values())


async def accept(receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "webtransport.connect"
    await send({"type": "webtransport.accept"})
    await send(CREDIT)


async def test_credit_comes_back_on_consumed_not_on_receive(
    app: ScriptedApp, server: ServerState
) -> None:
    size = 2 * STREAM_WINDOW
    consume = asyncio.Event()
    takers: list[Taker] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["extensions"]["webtransport"]["consumed"] is True
        assert scope["asgi"]["spec_version"] == "1.1"
        await accept(receive, send)
        taker = Taker(receive)
        takers.append(taker)
        await consume.wait()
        reported = 0
        while reported < size:
            taken = taker.total()
            if taken > reported:
                (stream,) = taker.taken
                await send(
                    {
                        "type": "webtransport.stream.consumed",
                        "stream": stream,
                        "bytes": taken - reported,
                    }
                )
                reported = taken
            else:
                taker.arrived.clear()
                await taker.arrived.wait()
        await taker.task

    app.handlers["/consumed"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/consumed")
        session = only_session(server)
        stream = peer.open_stream(unidirectional=True)
        peer.send(stream, bytes(size), end_stream=True)
        await peer.wait_for(lambda: bool(takers) and takers[0].total() > STREAM_WINDOW // 2)
        await asyncio.sleep(0.3)  # time for credit that must not come
        taken = takers[0].total()
        assert STREAM_WINDOW // 2 < taken <= STREAM_WINDOW  # the app took it all at once
        assert session.delivered == {stream: taken}
        assert session.quic.unconsumed == {stream: taken}  # and all of it holds credit

        consume.set()
        await peer.wait_for(lambda: takers[0].total() == size)
        await peer.wait_for(lambda: session.quic.unconsumed == {})
        assert session.delivered == {}
        peer.send_connect_data(b"", end_stream=True)
        await asyncio.wait_for(takers[0].task, 5)


async def test_stopping_a_stream_and_the_sessions_end_give_back_what_the_app_took(
    app: ScriptedApp, server: ServerState
) -> None:
    """STOP_SENDING from the app frees what it took from that stream and drops what
    still waits for it; the session's end frees the rest. Reports beyond what the app
    took are ignored, malformed ones refused."""
    stop = asyncio.Event()
    stopped = asyncio.Event()
    takers: list[Taker] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        taker = Taker(receive)
        takers.append(taker)
        await stop.wait()
        first, second = sorted(taker.taken)
        await send({"type": "webtransport.stream.stop_sending", "stream": first, "code": 1})
        await send({"type": "webtransport.stream.consumed", "stream": 999, "bytes": 5})
        with pytest.raises(ValueError):
            await send({"type": "webtransport.stream.consumed", "stream": second, "bytes": -1})
        with pytest.raises(ValueError):
            await send({"type": "webtransport.credit", "returned_on": "receive"})
        stopped.set()
        await taker.task

    app.handlers["/stop"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/stop")
        session = only_session(server)
        first = peer.open_stream(unidirectional=True)
        second = peer.open_stream(unidirectional=True)
        peer.send(first, bytes(300_000))
        peer.send(second, bytes(200_000))
        await peer.wait_for(lambda: bool(takers) and takers[0].total() == 500_000)
        assert session.quic.unconsumed == {first: 300_000, second: 200_000}
        stop.set()
        await asyncio.wait_for(stopped.wait(), 5)
        assert session.quic.unconsumed == {second: 200_000}
        assert session.delivered == {second: 200_000}
        await peer.wait_for(lambda: first in peer.stops)
        peer.send_connect_data(b"", end_stream=True)
        await asyncio.wait_for(takers[0].task, 5)
        await peer.wait_for(lambda: not server.sessions)
        assert session.quic.unconsumed_total == 0
        assert session.delivered == {}


async def test_the_credit_message_belongs_after_accept(
    app: ScriptedApp, server: ServerState
) -> None:
    seen: list[str] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        with pytest.raises(RuntimeError, match="accepted"):
            await send(CREDIT)
        seen.append("refused")
        await send({"type": "webtransport.reject", "status": 403})

    app.handlers["/early"] = handler
    async with raw_peer(server.port) as peer:
        _, headers = await peer.open_session("/early")
        assert headers[b":status"] == b"403"
    assert seen == ["refused"]
