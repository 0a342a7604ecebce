"""The hot path's reliance on asyncio and aioquic internals, checked so that an upgrade
that changes them fails here instead of silently slowing the server down or stalling it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from starlette_webtransport.server.devcert import make_dev_certificate
from starlette_webtransport.server.quic import RECEIVE_SIZE, limit_read_size
from starlette_webtransport.transport import WebTransportQuicConnection

from .conftest import ScriptedApp
from .rawclient import raw_peer
from .test_adapter import accept


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)


async def test_asyncio_reads_datagrams_into_the_buffer_we_size() -> None:
    """asyncio reads each datagram into ``max_size`` bytes (256 KiB, which costs an
    mmap/munmap per read); the server lowers it to 64 KiB. Shrinking it further here must
    truncate a datagram, which proves asyncio's read path still uses the attribute."""
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(
        _Receiver, local_addr=("127.0.0.1", 0)
    )
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=transport.get_extra_info("sockname")
    )
    try:
        assert limit_read_size(transport)
        assert transport.max_size == RECEIVE_SIZE  # type: ignore[attr-defined]
        sender.sendto(b"x" * 1500)
        assert await asyncio.wait_for(receiver.received.get(), 5) == b"x" * 1500
        transport.max_size = 10  # type: ignore[attr-defined]
        sender.sendto(b"y" * 50)
        assert await asyncio.wait_for(receiver.received.get(), 5) == b"y" * 10
    finally:
        sender.close()
        transport.close()


def _plain_configuration(is_client: bool) -> QuicConfiguration:
    return QuicConfiguration(alpn_protocols=H3_ALPN, is_client=is_client)


def _pair(
    tmp_path: Path,
    server_class: type[QuicConnection],
    *,
    client_class: type[QuicConnection] = QuicConnection,
    configuration: Callable[[bool], QuicConfiguration] = _plain_configuration,
) -> tuple[Any, Any]:
    files = make_dev_certificate(directory=tmp_path)
    server_config = configuration(False)
    server_config.load_cert_chain(files.certfile, files.keyfile)
    client_config = configuration(True)
    client_config.verify_mode = 0  # ssl.CERT_NONE
    client = client_class(configuration=client_config)
    client.connect(("127.0.0.1", 4433), now=0.0)
    first = client.datagrams_to_send(now=0.0)
    header = pull_quic_header(Buffer(data=first[0][0]), host_cid_length=8)
    server = server_class(
        configuration=server_config, original_destination_connection_id=header.destination_cid
    )
    for data, _ in first:
        server.receive_datagram(data, ("127.0.0.1", 1234), now=0.0)
    return client, server


def _exchange(client: Any, server: Any, now: float) -> int:
    """Deliver everything both ends want to send at ``now``; the packets delivered."""
    delivered = 0
    for sender, receiver, addr in (
        (server, client, ("127.0.0.1", 4433)),
        (client, server, ("127.0.0.1", 1234)),
    ):
        for data, _ in sender.datagrams_to_send(now=now):
            receiver.receive_datagram(data, addr, now=now)
            delivered += 1
    return delivered


def _settle(client: Any, server: Any, start: float) -> float:
    """Run both ends until nothing is left to send, timers included (ACK delays)."""
    now = start
    for _ in range(50):
        now += 0.05
        for end in (client, server):
            timer = end.get_timer()
            if timer is not None and timer <= now:
                end.handle_timer(now=now)
        if not _exchange(client, server, now) and not _exchange(client, server, now):
            break
    return now


@pytest.mark.parametrize("server_class", [WebTransportQuicConnection, QuicConnection])
def test_the_answer_carries_the_acknowledgement(
    tmp_path: Path, server_class: type[QuicConnection]
) -> None:
    """A request answered within aioquic's ACK delay: the answer's packet acknowledges
    the request, so no ACK-only packet follows. Plain aioquic (the control) holds the ACK
    back and the client still has the request in flight."""
    client, server = _pair(tmp_path, server_class)
    now = _settle(client, server, 0.0)
    assert client._loss.bytes_in_flight == 0
    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"request", end_stream=True)
    for data, _ in client.datagrams_to_send(now=now):
        server.receive_datagram(data, ("127.0.0.1", 1234), now=now)
    answered = now + 0.0002  # well inside the 1 ms ACK delay
    server.send_stream_data(stream_id, b"answer", end_stream=True)
    packets = server.datagrams_to_send(now=answered)
    assert len(packets) == 1
    client.receive_datagram(packets[0][0], ("127.0.0.1", 4433), now=answered)
    acknowledged = client._loss.bytes_in_flight == 0
    assert acknowledged is (server_class is WebTransportQuicConnection)


async def test_a_long_echo_waits_for_acknowledgements(app: ScriptedApp, server: Any) -> None:
    """8 MiB echoed on one stream outruns the congestion window, so the app's writes wait
    for capacity that only the peer's ACK-only packets free: packets that wake no app and
    are transmitted for at once must still wake those writers."""

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                return
            await send(
                {
                    "type": "webtransport.stream.send",
                    "stream": message["stream"],
                    "data": message["data"],
                    "end_stream": message["end_stream"],
                }
            )

    app.handlers["/echo"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/echo")
        stream = peer.open_stream()
        payload = bytes(range(256)) * 32768  # 8 MiB
        peer.send(stream, payload, end_stream=True)
        assert await peer.read_stream(stream, timeout=40) == payload
