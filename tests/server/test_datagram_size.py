"""Issue 9, part 3: a datagram a peer was allowed to send can be sent back on its session.

The server advertises as ``max_datagram_frame_size`` the largest datagram payload it can
send in one packet. Browsers read that value in different ways (Firefox/neqo as the largest
payload, Chromium/quiche as the largest frame without a length field, RFC 9221 as the whole
frame); a peer emulating each, with the browser's own packet size, sends the largest
datagram its reading allows, and the example's ``/echo`` served by the CLI must echo it.
Before, the server advertised 65536: browsers sent up to 1211 (Chromium) or 1224 (Firefox)
bytes while the server could send about 1170, and the echo killed the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aioquic.buffer import size_uint_var

from starlette_webtransport.session import DatagramTooLargeError, WebTransportSession
from starlette_webtransport.testing.server import running_server
from starlette_webtransport.transport.quic import datagram_payload_room

from ..tooling.example_server import ExampleServer, serve_example
from .conftest import ScriptedApp
from .rawclient import raw_peer

BROWSERS: dict[str, tuple[int, Callable[[int, int], int]]] = {
    # reading: (packet size, largest WebTransport datagram for an advertised value ``a``
    # and a quarter stream id of ``q`` bytes)
    "firefox": (1252, lambda a, q: a - q),
    "chromium": (1250, lambda a, q: a - 1 - q),
    "rfc9221": (1200, lambda a, q: a - 1 - size_uint_var(a) - q),
}


@pytest.mark.parametrize("reading", sorted(BROWSERS))
async def test_the_largest_datagram_a_peer_may_send_is_echoed_by_the_example(
    reading: str,
) -> None:
    packet_size, largest = BROWSERS[reading]
    async with (
        serve_example(ExampleServer) as server,
        raw_peer(server.port, max_datagram_size=packet_size) as peer,
    ):
        session, headers = await peer.open_session("/echo")
        assert headers[b":status"] == b"200"
        advertised = peer._quic._remote_max_datagram_frame_size
        assert advertised is not None
        quarter = size_uint_var(session // 4)
        packet_allows = datagram_payload_room(peer._quic) - quarter
        size = min(packet_allows, largest(advertised, quarter))
        if reading != "rfc9221":  # the advertisement binds, not the browser's packet
            assert size < packet_allows
        payload = (bytes(range(256)) * 8)[:size]
        peer.send_datagram(payload)
        assert await asyncio.wait_for(peer.datagrams.get(), 5) == payload
        stream = peer.open_stream()  # the session goes on
        peer.send(stream, b"after", end_stream=True)
        assert await peer.read_stream(stream) == b"after"
    assert not [line for line in server.log if " ERROR " in line], server.log


async def test_an_oversize_datagram_fails_that_send_only(app: ScriptedApp) -> None:
    """A peer may send more than it was allowed (aioquic does not check); echoing it
    raises for that call, in the session API and in the ASGI contract, and the session
    goes on."""
    errors: list[Exception] = []

    async def session_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        async for data in session.datagrams:
            try:
                await session.datagrams.send(data)
            except DatagramTooLargeError as exc:
                errors.append(exc)
                await session.datagrams.send(b"too large: %d" % len(data))

    async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "webtransport.connect"
        await send({"type": "webtransport.accept"})
        while (message := await receive())["type"] != "webtransport.disconnect":
            data = message["data"]
            try:
                await send({"type": "webtransport.datagram.send", "data": data})
            except ValueError as exc:
                errors.append(exc)
                await send({"type": "webtransport.datagram.send", "data": b"too large"})

    app.handlers["/session"] = session_echo
    app.handlers["/asgi"] = asgi_echo
    async with running_server(app) as state:
        for path, notice in (("/session", b"too large: 1300"), ("/asgi", b"too large")):
            async with raw_peer(state.port, max_datagram_size=1500) as peer:
                await peer.open_session(path)
                peer.send_datagram(bytes(1300))
                assert await asyncio.wait_for(peer.datagrams.get(), 5) == notice
                peer.send_datagram(b"small")
                assert await asyncio.wait_for(peer.datagrams.get(), 5) == b"small"
    assert [type(exc) for exc in errors] == [DatagramTooLargeError, ValueError]
