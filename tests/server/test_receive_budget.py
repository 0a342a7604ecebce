"""The worker-wide cap on received data waiting for apps, over real QUIC."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette_webtransport.server.quic import EXHAUSTED_WINDOW
from starlette_webtransport.testing.server import running_server
from starlette_webtransport.transport.limits import Limits

from .conftest import ScriptedApp
from .rawclient import RawPeer, raw_peer

KiB = 1024
MiB = 1024 * KiB


def _push(peer: RawPeer, streams: int, size: int) -> None:
    for index in range(streams):
        stream = peer.open_stream(unidirectional=True)
        peer.send(stream, bytes([index]) * size, end_stream=True)


async def test_past_the_cap_no_connection_gets_credit_until_apps_read(
    app: ScriptedApp,
) -> None:
    """One app that does not read holds more than the cap: a second connection gets only
    a small window, and gets the rest once the first app has read its data."""
    go = asyncio.Event()
    received: dict[str, bytes] = {"/hog": b"", "/late": b""}
    finished: dict[str, asyncio.Event] = {path: asyncio.Event() for path in received}

    def reader(streams: int, wait: asyncio.Event | None) -> Any:
        async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "webtransport.connect"
            await send({"type": "webtransport.accept"})
            if wait is not None:
                await wait.wait()
            ended = 0
            while ended < streams:
                message = await receive()
                assert message["type"] == "webtransport.stream.receive", message
                received[scope["path"]] += message["data"]
                ended += message["end_stream"]
            finished[scope["path"]].set()
            await receive()

        return handler

    app.handlers["/hog"] = reader(4, go)
    app.handlers["/late"] = reader(2, None)
    limits = Limits(receive_memory=1 * MiB)
    async with running_server(app, limits=limits) as state, raw_peer(state.port) as first:
        budget = state.budget
        await first.open_session("/hog")
        _push(first, 4, 768 * KiB)
        await first.wait_for(lambda: budget.held == 3 * MiB)
        async with raw_peer(state.port) as second:
            await second.open_session("/late")
            _push(second, 2, 1 * MiB)
            await asyncio.sleep(0.5)
            assert len(received["/late"]) <= EXHAUSTED_WINDOW
            assert budget.held <= 3 * MiB + EXHAUSTED_WINDOW
            go.set()
            async with asyncio.timeout(10):
                for event in finished.values():
                    await event.wait()
        assert budget.peak <= 3 * MiB + EXHAUSTED_WINDOW
        assert budget.held == 0
    assert len(received["/hog"]) == 3 * MiB and len(received["/late"]) == 2 * MiB
    assert [received["/hog"].count(i) for i in range(4)] == [768 * KiB] * 4
    assert [received["/late"].count(i) for i in range(2)] == [MiB] * 2
