"""The echo servers under test, one per process.

    python bench/servers.py {asgi,session,example,aioquic,pywebtransport} [--profile DIR]
                            [--tracemalloc] [--timeline]

Every server behaves the same towards the load client: a client bidirectional stream is
echoed on the same stream (FIN included), a client unidirectional stream is answered with
its whole content on a new server unidirectional stream, and every datagram is echoed.
When the server listens it prints one JSON line, ``{"port": N, "pid": N}``, on stdout;
SIGINT or SIGTERM stops it.

With ``--profile DIR`` the process runs cProfile between SIGUSR1 (start) and SIGUSR2
(stop), and each SIGUSR2 writes ``DIR/<n>.pstats`` (n = 1, 2, ...), so the orchestrator
can profile exactly one scenario at a time without measuring startup or idle time.

With ``--tracemalloc`` the process traces its allocations and answers every SIGHUP with one
JSON line on stdout, ``{"traced": bytes, "rss": bytes}`` after a garbage collection: the
memory bench's view from inside. ``example`` is the example app (``/echo``) on ``serve()``,
what the CLI runs, for profiling and memory; the CLI itself is benchmarked by ``run.py``.

With ``--timeline`` the process times each request's critical path (``bench/timeline.py``)
and answers every SIGHUP with one JSON line of its totals since the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import signal
import sys
import tracemalloc
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve as aioquic_serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timeline import Timeline  # noqa: E402

from starlette_webtransport.server.devcert import make_dev_certificate  # noqa: E402
from starlette_webtransport.server.serve import ServerState, free_port, serve  # noqa: E402

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HOST = "127.0.0.1"
MAX_DATAGRAM_FRAME_SIZE = 65536
"""Same as our server advertises; without it peers may not send datagrams at all."""


# --- ours: a raw ASGI app on starlette_webtransport.server.serve ---------------------


async def _lifespan_or_http(scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer the non-WebTransport scopes; True if ``scope`` was one of them."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return True
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return True
    return False


async def asgi_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The echo written against the ASGI contract alone: the cheapest app possible."""
    if await _lifespan_or_http(scope, receive, send):
        return
    await receive()  # webtransport.connect
    await send({"type": "webtransport.accept"})
    uni: dict[int, bytearray] = {}
    replies: deque[bytes] = deque()  # uni payloads waiting for their stream.opened
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "webtransport.stream.receive":
            stream_id: int = message["stream"]
            data: bytes = message["data"]
            end: bool = message["end_stream"]
            if stream_id & 0x2:
                uni.setdefault(stream_id, bytearray()).extend(data)
                if end:
                    replies.append(bytes(uni.pop(stream_id)))
                    await send({"type": "webtransport.stream.open", "bidirectional": False})
            elif data or end:
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "stream": stream_id,
                        "data": data,
                        "end_stream": end,
                    }
                )
        elif kind == "webtransport.datagram.receive":
            await send({"type": "webtransport.datagram.send", "data": message["data"]})
        elif kind == "webtransport.stream.opened":
            await send(
                {
                    "type": "webtransport.stream.send",
                    "stream": message["stream"],
                    "data": replies.popleft(),
                    "end_stream": True,
                }
            )
        elif kind == "webtransport.disconnect":
            return


async def session_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The same echo through ``WebTransportSession``, as an application would write it."""
    from starlette_webtransport.session import (
        WebTransportError,
        WebTransportReceiveStream,
        WebTransportSession,
        WebTransportStream,
    )

    if await _lifespan_or_http(scope, receive, send):
        return
    session = WebTransportSession(scope, receive, send)
    await session.accept()

    async def bidi(stream: WebTransportStream) -> None:
        with contextlib.suppress(WebTransportError):
            while chunk := await stream.read(65536):
                await stream.write(chunk)
            await stream.write(b"", end_stream=True)

    async def uni(stream: WebTransportReceiveStream) -> None:
        with contextlib.suppress(WebTransportError):
            data = await stream.read()
            reply = await session.create_unidirectional_stream()
            await reply.write(data, end_stream=True)

    async def datagrams() -> None:
        async for data in session.datagrams:
            with contextlib.suppress(WebTransportError):
                await session.datagrams.send(data)

    tasks: set[asyncio.Task[None]] = set()

    def spawn(coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    spawn(datagrams())
    async for stream in session.incoming_streams():
        if isinstance(stream, WebTransportStream):
            spawn(bidi(stream))
        else:
            spawn(uni(stream))
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_ours(app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
    state = ServerState(certificate_sha256=b"", binds=[])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = asyncio.create_task(
        serve(app, host=HOST, port=0, state=state, shutdown_trigger=stop.wait, graceful_timeout=1)
    )
    ready = asyncio.create_task(state.ready.wait())
    done, _ = await asyncio.wait({server, ready}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        server.result()
        raise RuntimeError("the server stopped during startup")
    announce(state.port)
    await server


# --- raw aioquic: the baseline ---------------------------------------------------------


class AioquicEcho(QuicConnectionProtocol):
    """The echo on aioquic's own asyncio protocol and H3 layer, nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h3: H3Connection | None = None
        self._uni: dict[int, bytearray] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            self._h3 = H3Connection(self._quic, enable_webtransport=True)
        if self._h3 is not None:
            for h3_event in self._h3.handle_event(event):
                self._h3_event(self._h3, h3_event)

    def _h3_event(self, h3: H3Connection, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            headers = dict(event.headers)
            if headers.get(b":method") == b"CONNECT" and headers.get(b":protocol") in (
                b"webtransport",
                b"webtransport-h3",
            ):
                h3.send_headers(
                    event.stream_id,
                    [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")],
                )
            else:
                h3.send_headers(event.stream_id, [(b":status", b"404")], end_stream=True)
        elif isinstance(event, WebTransportStreamDataReceived):
            stream_id = event.stream_id
            if stream_id & 0x2:
                self._uni.setdefault(stream_id, bytearray()).extend(event.data)
                if event.stream_ended:
                    reply = h3.create_webtransport_stream(event.session_id, is_unidirectional=True)
                    self._quic.send_stream_data(reply, bytes(self._uni.pop(stream_id)), True)
            elif event.data or event.stream_ended:
                self._quic.send_stream_data(stream_id, event.data, event.stream_ended)
            if event.stream_ended:
                h3._stream.pop(stream_id, None)
        elif isinstance(event, DatagramReceived):
            h3.send_datagram(event.stream_id, event.data)


def certificate_files() -> tuple[str, str]:
    files = make_dev_certificate()
    return str(files.certfile), str(files.keyfile)


async def run_aioquic() -> None:
    certfile, keyfile = certificate_files()
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN, is_client=False, max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE
    )
    configuration.load_cert_chain(certfile, keyfile)
    port = free_port(HOST)
    server = await aioquic_serve(
        HOST, port, configuration=configuration, create_protocol=AioquicEcho
    )
    announce(port)
    await wait_for_signal()
    server.close()


# --- pywebtransport 0.8.1 --------------------------------------------------------------


async def run_pywebtransport() -> None:
    from pywebtransport import (
        ServerApp,
        ServerConfig,
        WebTransportReceiveStream,
        WebTransportSession,
        WebTransportStream,
    )
    from pywebtransport.exceptions import WebTransportError

    certfile, keyfile = certificate_files()
    port = free_port(HOST)
    # Its default config grants peers zero WebTransport flow-control credit, so no peer
    # could open a stream; grant plenty, as our server and raw aioquic (no WT-level flow
    # control at all with draft-02 peers) effectively do.
    config = ServerConfig(
        bind_host=HOST,
        bind_port=port,
        certfile=certfile,
        keyfile=keyfile,
        initial_max_data=1 << 40,
        initial_max_streams_bidi=1 << 20,
        initial_max_streams_uni=1 << 20,
        max_incoming_streams=1 << 20,
        max_streams_per_connection=1 << 20,
        max_datagram_size=MAX_DATAGRAM_FRAME_SIZE - 1,
    )
    app = ServerApp(config=config)

    async def bidi(stream: WebTransportStream) -> None:
        with contextlib.suppress(WebTransportError, asyncio.CancelledError):
            while chunk := await stream.read(size=65536):
                await stream.write(data=chunk)
            await stream.close()

    async def uni(session: WebTransportSession, stream: WebTransportReceiveStream) -> None:
        with contextlib.suppress(WebTransportError, asyncio.CancelledError):
            data = await stream.read_all()
            reply = await session.create_unidirectional_stream()
            await reply.write(data=data, end_stream=True)

    async def datagrams(session: WebTransportSession) -> None:
        with contextlib.suppress(WebTransportError, asyncio.CancelledError):
            transport = await session.create_datagram_transport()
            while True:
                await transport.send(data=await transport.receive())

    @app.route(path="/")
    async def echo(session: WebTransportSession) -> None:
        tasks: set[asyncio.Task[None]] = {asyncio.create_task(datagrams(session))}
        try:
            async for stream in session.incoming_streams():
                if isinstance(stream, WebTransportStream):
                    task = asyncio.create_task(bidi(stream))
                elif isinstance(stream, WebTransportReceiveStream):
                    task = asyncio.create_task(uni(session, stream))
                else:
                    continue
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except WebTransportError:
            pass
        finally:
            for task in tasks:
                task.cancel()

    async with app:
        await app.server.listen(host=HOST, port=port)
        announce(port)
        await wait_for_signal()


# --- process plumbing ------------------------------------------------------------------


def announce(port: int) -> None:
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


class ScenarioProfiler:
    """cProfile switched on and off by signals, one dump per measured interval."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.profile: cProfile.Profile | None = None
        self.dumps = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGUSR1, self.start)
        loop.add_signal_handler(signal.SIGUSR2, self.stop)

    def start(self) -> None:
        # The default wall-clock timer: a CPU-time timer is a system call per event and
        # distorts the profile far more. The report leaves out the time blocked in epoll.
        self.profile = cProfile.Profile()
        self.profile.enable()

    def stop(self) -> None:
        if self.profile is None:
            return
        self.profile.disable()
        self.dumps += 1
        self.profile.dump_stats(self.directory / f"{self.dumps}.pstats")
        self.profile = None


def report_memory() -> None:
    gc.collect()
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    traced, _ = tracemalloc.get_traced_memory()
    print(json.dumps({"traced": traced, "rss": rss}), flush=True)


async def run_example() -> None:
    from example_app.app import app

    await run_ours(app)


SERVERS: dict[str, Callable[[], Awaitable[None]]] = {
    "asgi": lambda: run_ours(asgi_echo),
    "session": lambda: run_ours(session_echo),
    "example": run_example,
    "aioquic": run_aioquic,
    "pywebtransport": run_pywebtransport,
}


def report_timeline(timeline: Timeline) -> None:
    print(json.dumps(timeline.report()), flush=True)


async def main(kind: str, profile_dir: Path | None, trace: bool, timeline: bool) -> None:
    loop = asyncio.get_running_loop()
    if profile_dir is not None:
        ScenarioProfiler(profile_dir).install(loop)
    if trace:
        tracemalloc.start()
        loop.add_signal_handler(signal.SIGHUP, report_memory)
    if timeline:
        recorder = Timeline()
        recorder.install()
        loop.add_signal_handler(signal.SIGHUP, report_timeline, recorder)
    await SERVERS[kind]()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run one benchmark echo server.")
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--timeline", action="store_true", help="see bench/timeline.py")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(args.kind, args.profile, args.tracemalloc, args.timeline))
