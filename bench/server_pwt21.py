"""The echo server on pywebtransport 0.21.1 (a Rust/quinn QUIC stack, draft-15 only).

    .venv-pwt21/bin/python bench/server_pwt21.py --port N --certfile F --keyfile F

Runs on Python 3.12 in ``.venv-pwt21`` (``scripts/setup-pywebtransport21``), which has
neither aioquic nor this project, so it is a file of its own rather than a kind in
``servers.py``. It behaves like the others towards the load client: a bidirectional stream
is echoed on itself up to FIN, a unidirectional stream is answered on a new server
unidirectional stream, a datagram is echoed. It prints ``{"port": N, "pid": N}`` once it
listens; SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

from pywebtransport import (
    ServerConfig,
    WebTransportBidirectionalStream,
    WebTransportConnection,
    WebTransportError,
    WebTransportReceiveStream,
    WebTransportServer,
    WebTransportSession,
)

HOST = "127.0.0.1"
PLENTY = 1 << 20


class Tasks:
    """Background tasks kept referenced until done, as asyncio requires."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.running.add(task)
        task.add_done_callback(self.running.discard)


TASKS = Tasks()
ERRORS = (WebTransportError, asyncio.CancelledError, ConnectionError, OSError)


async def bidi(stream: WebTransportBidirectionalStream) -> None:
    with contextlib.suppress(*ERRORS):
        while chunk := await stream.read(max_size=65536):
            await stream.write(data=chunk)
        await stream.write(data=b"", end_stream=True)


async def uni(session: WebTransportSession, stream: WebTransportReceiveStream) -> None:
    with contextlib.suppress(*ERRORS):
        data = await stream.read_all()
        reply = await session.create_unidirectional_stream()
        await reply.write(data=data, end_stream=True)


async def bidi_streams(session: WebTransportSession) -> None:
    with contextlib.suppress(*ERRORS):
        async for stream in session.incoming_bidirectional_streams():
            TASKS.spawn(bidi(stream))


async def uni_streams(session: WebTransportSession) -> None:
    with contextlib.suppress(*ERRORS):
        async for stream in session.incoming_unidirectional_streams():
            TASKS.spawn(uni(session, stream))


async def datagrams(session: WebTransportSession) -> None:
    with contextlib.suppress(*ERRORS):
        while True:
            await session.send_datagram(data=await session.read_datagram())


async def serve_connection(connection: WebTransportConnection) -> None:
    with contextlib.suppress(*ERRORS):
        async for session in connection.incoming_sessions():
            await session.accept()
            TASKS.spawn(bidi_streams(session))
            TASKS.spawn(uni_streams(session))
            TASKS.spawn(datagrams(session))


async def main(port: int, certfile: str, keyfile: str) -> None:
    # Generous limits, as for the other servers: the bench measures speed, not limits.
    config = ServerConfig(
        bind_host=HOST,
        bind_port=port,
        certfile=certfile,
        keyfile=keyfile,
        initial_max_data=1 << 30,
        initial_max_streams_bidi=PLENTY,
        initial_max_streams_uni=PLENTY,
        max_streams_bidi=PLENTY,
        max_streams_uni=PLENTY,
        max_pending_streams=PLENTY,
        max_connections=PLENTY,
        max_sessions=PLENTY,
        max_pending_datagrams=4096,
        read_timeout=None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with WebTransportServer(config=config) as server:
        await server.listen()
        print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)

        async def accept() -> None:
            async for connection in server.incoming_connections():
                TASKS.spawn(serve_connection(connection))

        acceptor = asyncio.create_task(accept())
        await stop.wait()
        acceptor.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="pywebtransport 0.21.1 echo server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(args.port, args.certfile, args.keyfile))
