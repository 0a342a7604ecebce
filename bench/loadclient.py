"""The load client: one aioquic WebTransport peer used against every server.

    python bench/loadclient.py --port N [--path /echo] [--draft15]

Reads one JSON command per line on stdin (``{"scenario": "bulk", "duration": 1.0, ...}``)
and answers each with one JSON line on stdout, so the orchestrator can read the server's
CPU counters right before and after a scenario. Using the same client code for every
server is what makes the ratios fair: the client's own cost is identical in each run.

Every scenario is bounded in time (``duration``) or size, and every wait has a timeout.
Each command is answered with ``{"measuring": true}`` when its timed part starts, then with
``{"ok": true, "ops": n, "elapsed": s, "check": "...", ...}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, H3Stream
from aioquic.h3.events import (
    DatagramReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

HOST = "127.0.0.1"
TIMEOUT = 10.0
"""Longest wait for any single reply before a scenario is declared failed."""

WT_CREDIT_SETTINGS = {0x2B61: 1 << 40, 0x2B64: 1 << 20, 0x2B65: 1 << 20}
"""WT_INITIAL_MAX_DATA / _STREAMS_UNI / _STREAMS_BIDI. Newer-draft servers (pywebtransport)
send nothing on a stream until the peer grants WebTransport credit; draft-02 servers ignore
these settings, so granting plenty keeps the client identical for everyone."""


def measuring() -> None:
    """The timed part of a command starts: connections and sessions it needs are open.
    Prints ``{"measuring": true}`` so the orchestrator reads the server's CPU counter now,
    not before a handshake that is no part of the scenario (with pywebtransport 0.21.1 a
    handshake costs its server far more CPU than the scenario's operations)."""
    if not MARKED[0]:
        MARKED[0] = True
        PACKETS["in"] = PACKETS["out"] = 0
        print(json.dumps({"measuring": True}), flush=True)


MARKED = [False]

PACKETS = {"in": 0, "out": 0}
"""UDP datagrams received from and sent to the server during the current command: packets
are what a pure-Python QUIC stack pays for, so packets per operation explain CPU figures."""


class CountingTransport:
    """The datagram transport with a count of what goes out."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport

    def sendto(self, data: bytes, addr: Any = None) -> None:
        PACKETS["out"] += 1
        self.transport.sendto(data, addr)

    def close(self) -> None:
        self.transport.close()


SETTINGS_WT_ENABLED = 0x2C7CF000
"""Draft-15's way of enabling WebTransport; servers that speak only draft-15 (pywebtransport
0.21.1) refuse a session without it, and it makes draft-aware servers pick draft-15."""


class Options:
    """What differs per server under test: the session path and the draft announced."""

    path = "/"
    draft15 = False


class LoadH3(H3Connection):
    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.update(WT_CREDIT_SETTINGS)
        if Options.draft15:
            settings[SETTINGS_WT_ENABLED] = 1
        return settings


class Sink:
    """What came back on one stream, checked against what we expect as it arrives."""

    __slots__ = ("done", "expected", "mismatch", "received")

    def __init__(self, expected: bytes) -> None:
        self.expected = expected
        self.received = 0
        self.mismatch = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, data: bytes, ended: bool) -> None:
        end = self.received + len(data)
        if data != self.expected[self.received : end]:
            self.mismatch = True
        self.received = end
        if ended and not self.done.done():
            if self.mismatch or self.received != len(self.expected):
                self.done.set_exception(
                    AssertionError(
                        f"echo differs: got {self.received} bytes, expected "
                        f"{len(self.expected)}, content {'differs' if self.mismatch else 'ok'}"
                    )
                )
            else:
                self.done.set_result(None)

    def fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))


class LoadPeer(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, **kwargs: Any) -> None:
        super().__init__(quic, **kwargs)
        self.h3 = LoadH3(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.response: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.sinks: dict[int, Sink] = {}
        self.incoming_uni: asyncio.Queue[bytes] = asyncio.Queue()
        self.uni_data: dict[int, bytearray] = {}
        self.on_datagram: Callable[[bytes], None] | None = None
        self.terminated: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Not every loop's UDP transport subclasses asyncio.DatagramTransport.
        self._transport = CountingTransport(cast(asyncio.DatagramTransport, transport))  # type: ignore[assignment]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        PACKETS["in"] += 1
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            sink = self.sinks.pop(event.stream_id, None)
            if sink is not None:
                sink.fail(f"server reset stream {event.stream_id} ({event.error_code:#x})")
        elif isinstance(event, ConnectionTerminated):
            self.terminated = f"connection closed: {event.error_code:#x} {event.reason_phrase}"
            for sink in self.sinks.values():
                sink.fail(self.terminated)
            if not self.response.done():
                self.response.set_exception(ConnectionError(self.terminated))
        for h3_event in self.h3.handle_event(event):
            self.h3_event(h3_event)

    def h3_event(self, event: H3Event) -> None:
        if isinstance(event, WebTransportStreamDataReceived):
            stream_id = event.stream_id
            if stream_id & 0x2:  # a server unidirectional stream: a uni echo
                self.uni_data.setdefault(stream_id, bytearray()).extend(event.data)
                if event.stream_ended:
                    self.incoming_uni.put_nowait(bytes(self.uni_data.pop(stream_id)))
            else:
                sink = self.sinks.get(stream_id)
                if sink is not None:
                    sink.feed(event.data, event.stream_ended)
            if event.stream_ended:
                self.sinks.pop(stream_id, None)
                self.h3._stream.pop(stream_id, None)
        elif isinstance(event, DatagramReceived):
            if self.on_datagram is not None:
                self.on_datagram(event.data)
        elif (
            isinstance(event, HeadersReceived)
            and event.stream_id == self.session_id
            and not self.response.done()
        ):
            status = dict(event.headers).get(b":status", b"0")
            self.response.set_result(int(status))

    async def open_session(self) -> None:
        self.session_id = self._quic.get_next_available_stream_id()
        protocol = b"webtransport-h3" if Options.draft15 else b"webtransport"
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", protocol),
            (b":scheme", b"https"),
            (b":authority", f"{HOST}".encode()),
            (b":path", Options.path.encode()),
            (b"origin", b"https://localhost"),
        ]
        if not Options.draft15:
            headers.append((b"sec-webtransport-http3-draft02", b"1"))
        self.h3.send_headers(self.session_id, headers)
        self.transmit()
        status = await asyncio.wait_for(self.response, TIMEOUT)
        if status != 200:
            raise ConnectionError(f"CONNECT answered {status}")

    def echo_stream(self, payload: bytes, *, transmit: bool = True) -> Sink:
        """Open a bidirectional stream, send ``payload`` and FIN; the sink completes on
        the echo's FIN."""
        assert self.session_id is not None
        stream_id = self.h3.create_webtransport_stream(self.session_id)
        # aioquic keeps no H3 state for a bidi WT stream it opened; without this the
        # replies would be parsed as HTTP/3 frames.
        stream = self.h3._stream[stream_id] = H3Stream(stream_id)
        stream.frame_type = FrameType.WEBTRANSPORT_STREAM
        stream.session_id = self.session_id
        sink = self.sinks[stream_id] = Sink(payload)
        self._quic.send_stream_data(stream_id, payload, True)
        if transmit:
            self.transmit()
        return sink

    def send_uni(self, payload: bytes) -> None:
        assert self.session_id is not None
        stream_id = self.h3.create_webtransport_stream(self.session_id, is_unidirectional=True)
        self._quic.send_stream_data(stream_id, payload, True)
        self.transmit()

    def send_datagram(self, data: bytes) -> None:
        assert self.session_id is not None
        self.h3.send_datagram(self.session_id, data)


def client_configuration() -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536
    )
    configuration.verify_mode = ssl.CERT_NONE
    return configuration


async def connect(port: int) -> tuple[asyncio.DatagramTransport, LoadPeer]:
    """A QUIC connection with its handshake done (``aioquic.asyncio.connect`` without the
    context manager, whose exit waits out the closing period)."""
    loop = asyncio.get_running_loop()
    quic = QuicConnection(configuration=client_configuration())
    transport, peer = await loop.create_datagram_endpoint(
        lambda: LoadPeer(quic), local_addr=(HOST, 0)
    )
    peer.connect((HOST, port))
    await asyncio.wait_for(peer.wait_connected(), TIMEOUT)
    return transport, peer


def hang_up(transport: asyncio.DatagramTransport, peer: LoadPeer) -> None:
    """Send CONNECTION_CLOSE and drop the socket without waiting for the draining period."""
    peer.close()
    transport.close()


async def with_session(port: int, body: Callable[[LoadPeer], Awaitable[dict[str, Any]]]) -> Any:
    transport, peer = await connect(port)
    try:
        await peer.open_session()
        return await body(peer)
    finally:
        hang_up(transport, peer)


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) & 0xFF for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


# --- scenarios -------------------------------------------------------------------------


async def check(port: int, **_: Any) -> dict[str, Any]:
    """Functional check before any measurement: every echo path returns what was sent."""

    async def body(peer: LoadPeer) -> dict[str, Any]:
        payload = pattern(100_000, 1)
        await asyncio.wait_for(peer.echo_stream(payload).done, TIMEOUT)
        uni = pattern(5_000, 2)
        peer.send_uni(uni)
        echoed = await asyncio.wait_for(peer.incoming_uni.get(), TIMEOUT)
        if echoed != uni:
            raise AssertionError(f"uni echo differs ({len(echoed)} of {len(uni)} bytes)")
        datagram: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def first_datagram(data: bytes) -> None:
            if not datagram.done():
                datagram.set_result(data)

        peer.on_datagram = first_datagram
        for _ in range(5):  # datagrams are unreliable: a few tries
            peer.send_datagram(b"ping-datagram")
            peer.transmit()
            try:
                got = await asyncio.wait_for(asyncio.shield(datagram), 1.0)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no datagram echoed in 5 tries")
        if got != b"ping-datagram":
            raise AssertionError(f"datagram echo differs: {got!r}")
        return {"ops": 3, "check": "bidi 100 kB, uni 5 kB, datagram: echoed intact"}

    return dict(await with_session(port, body))


async def bulk(port: int, size_mib: float = 4.0, **_: Any) -> dict[str, Any]:
    """One bidirectional stream: upload ``size_mib`` MiB with FIN, read the full echo."""

    async def body(peer: LoadPeer) -> dict[str, Any]:
        payload = pattern(int(size_mib * 1024 * 1024))
        measuring()
        start = time.perf_counter()
        await asyncio.wait_for(peer.echo_stream(payload).done, TIMEOUT * 3)
        elapsed = time.perf_counter() - start
        return {"ops": size_mib, "elapsed": elapsed, "check": f"{len(payload)} bytes intact"}

    return dict(await with_session(port, body))


async def datagrams(
    port: int, duration: float = 1.0, window: int = 64, size: int = 200, **_: Any
) -> dict[str, Any]:
    """Keep at most ``window`` datagrams in flight; count echoes for ``duration`` s.
    A datagram not echoed within ``LOST_AFTER`` is counted lost and frees its slot."""
    lost_after = 0.25

    async def body(peer: LoadPeer) -> dict[str, Any]:
        in_flight: dict[int, float] = {}
        filler = b"d" * (size - 8)
        counters = {"echoed": 0, "sent": 0, "lost": 0, "bad": 0}
        sequence = 0
        deadline = 0.0

        def send_one() -> None:
            nonlocal sequence
            sequence += 1
            in_flight[sequence] = time.perf_counter()
            peer.send_datagram(struct.pack("!Q", sequence) + filler)
            counters["sent"] += 1

        def received(data: bytes) -> None:
            now = time.perf_counter()
            if len(data) != size or data[8:] != filler:
                counters["bad"] += 1
                return
            if in_flight.pop(struct.unpack_from("!Q", data)[0], None) is None:
                return  # late echo of a datagram already counted lost
            if now < deadline:
                counters["echoed"] += 1
                send_one()  # aioquic transmits once the received packet is processed

        peer.on_datagram = received
        measuring()
        start = time.perf_counter()
        deadline = start + duration
        for _ in range(window):
            send_one()
        peer.transmit()
        while (now := time.perf_counter()) < deadline:
            await asyncio.sleep(min(0.05, deadline - now))
            if peer.terminated:
                raise ConnectionError(peer.terminated)
            expired = [seq for seq, sent in in_flight.items() if now - sent > lost_after]
            for seq in expired:
                del in_flight[seq]
                counters["lost"] += 1
            for _ in range(window - len(in_flight)):
                send_one()
            if expired:
                peer.transmit()
        elapsed = time.perf_counter() - start
        if counters["bad"]:
            raise AssertionError(f"{counters['bad']} datagram echoes were corrupted")
        return {
            "ops": counters["echoed"],
            "elapsed": elapsed,
            "lost": counters["lost"],
            "sent": counters["sent"],
            "check": f"{counters['echoed']} echoes intact, {counters['lost']} lost",
        }

    return dict(await with_session(port, body))


async def requests(
    port: int,
    duration: float = 1.0,
    concurrency: int = 1,
    size: int = 32,
    connections: int = 1,
    **_: Any,
) -> dict[str, Any]:
    """Request/response streams: open a bidi stream, ``size`` bytes + FIN, read the echo;
    ``concurrency`` workers per connection doing that back to back for ``duration`` s.
    Several connections let ``--workers N`` spread them (one connection is one worker's)."""
    payload = pattern(size, 3)
    latencies: list[float] = []
    peers = []
    try:
        for _ in range(connections):
            transport, peer = await connect(port)
            peers.append((transport, peer))
            await peer.open_session()
        measuring()
        deadline = time.perf_counter() + duration

        async def worker(peer: LoadPeer) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await asyncio.wait_for(peer.echo_stream(payload).done, TIMEOUT)
                latencies.append(time.perf_counter() - started)

        start = time.perf_counter()
        await asyncio.gather(*(worker(peer) for _, peer in peers for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        for transport, peer in peers:
            hang_up(transport, peer)
    return {
        "ops": len(latencies),
        "elapsed": elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "max_ms": 1000 * max(latencies),
        "check": f"{len(latencies)} echoes intact",
    }


async def setups(port: int, duration: float = 1.0, **_: Any) -> dict[str, Any]:
    """Sequential session setups: new QUIC connection, CONNECT, 200, hang up."""
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + duration
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        transport, peer = await connect(port)
        try:
            await peer.open_session()
            latencies.append(time.perf_counter() - started)
        finally:
            hang_up(transport, peer)
    elapsed = time.perf_counter() - start
    return {
        "ops": len(latencies),
        "elapsed": elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "max_ms": 1000 * max(latencies),
        "check": f"{len(latencies)} sessions answered 200",
    }


HELD: list[tuple[asyncio.DatagramTransport, LoadPeer]] = []
"""Idle sessions kept open between ``hold`` and ``release`` (the memory bench)."""


async def hold(port: int, sessions: int = 100, **_: Any) -> dict[str, Any]:
    """Open ``sessions`` sessions, each on its own connection, and leave them idle."""
    start = time.perf_counter()
    for _ in range(sessions):
        transport, peer = await connect(port)
        HELD.append((transport, peer))
        await peer.open_session()
    return {"ops": sessions, "elapsed": time.perf_counter() - start, "check": "held"}


async def release(port: int, **_: Any) -> dict[str, Any]:
    count = len(HELD)
    while HELD:
        hang_up(*HELD.pop())
    await asyncio.sleep(0.2)  # let the CONNECTION_CLOSE packets leave
    return {"ops": count, "elapsed": 0.0, "check": "released"}


SCENARIOS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "check": check,
    "bulk": bulk,
    "datagrams": datagrams,
    "requests": requests,
    "setups": setups,
    "hold": hold,
    "release": release,
}


TIMED_AFTER_SETUP = frozenset({"bulk", "datagrams", "requests"})
"""Scenarios that call :func:`measuring` themselves, once their session is open."""


async def serve_commands(port: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        scenario = command.pop("scenario")
        MARKED[0] = False
        if scenario not in TIMED_AFTER_SETUP:
            measuring()
        started = os.times()
        try:
            result = await SCENARIOS[scenario](port, **command)
            result["ok"] = True
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        measuring()  # a scenario that failed before its timed part
        finished = os.times()
        result["packets_from_server"] = PACKETS["in"]
        result["packets_to_server"] = PACKETS["out"]
        result["client_cpu"] = (finished.user + finished.system) - (started.user + started.system)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Benchmark load client (JSON lines on stdin).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/", help="the session path (CONNECT :path)")
    parser.add_argument(
        "--draft15", action="store_true", help="announce draft-15 (SETTINGS_WT_ENABLED)"
    )
    arguments = parser.parse_args()
    Options.path = arguments.path
    Options.draft15 = arguments.draft15
    asyncio.run(serve_commands(arguments.port))
