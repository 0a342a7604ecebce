"""The session layer alone: what ``WebTransportSession`` and ``serve_streams`` cost per
small stream and per datagram, against an app that speaks the ASGI contract directly.

No network and no server: both apps get the contract's ``receive``/``send`` from an
in-memory peer that answers each reply on the next loop turn, as a server would (the
next packet arrives in another turn). What is left is the Python of the session API (the
stream objects, the reader, the handler's task, the credit reports) beside the minimum a
contract app does, so a change to that layer shows here without the spread of the
network benches. The whole stack's figures are ``bench/run.py``'s.

    python bench/bench_session.py [--streams N] [--datagrams N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import asgi_echo as contract_app  # the echo written on the contract alone

from example_app.app import echo
from starlette_webtransport.session import WebTransportSession

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]

SCOPE: Message = {
    "type": "webtransport",
    "path": "/echo",
    "headers": [],
    "asgi": {"spec_version": "1.1"},
    "extensions": {
        "webtransport": {
            "role": "server",
            "session_id": "bench",
            "max_datagram_size": 1200,
            "consumed": True,  # as our server offers it, so the session reports credit
        }
    },
}


class Peer:
    """The contract's two callables, fed one request at a time: a request goes in a loop
    turn after the previous reply came out, until ``total`` replies came."""

    def __init__(
        self, total: int, request: Callable[[int], Message], is_reply: Callable[[Message], bool]
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.events: deque[Message] = deque([{"type": "webtransport.connect"}])
        self.waiter: asyncio.Future[None] | None = None
        self.total = total
        self.replies = 0
        self.request = request
        self.is_reply = is_reply
        self.done = self.loop.create_future()

    async def receive(self) -> Message:
        while not self.events:
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.events.popleft()

    async def send(self, message: Message) -> None:
        if message["type"] == "webtransport.accept":
            self.loop.call_soon(self.push, self.request(0))
        elif self.is_reply(message):
            self.replies += 1
            if self.replies == self.total:
                self.done.set_result(None)
            else:
                self.loop.call_soon(self.push, self.request(self.replies))

    def push(self, message: Message) -> None:
        self.events.append(message)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def stream_request(index: int) -> Message:
    return {
        "type": "webtransport.stream.receive",
        "stream": 4 * index,
        "data": b"x" * 32,
        "end_stream": True,
    }


def datagram_request(index: int) -> Message:
    return {"type": "webtransport.datagram.receive", "data": b"x" * 200}


def is_stream_reply(message: Message) -> bool:
    return message["type"] == "webtransport.stream.send" and bool(message.get("end_stream"))


def is_datagram_reply(message: Message) -> bool:
    return message["type"] == "webtransport.datagram.send"


async def session_app(scope: Message, receive: Receive, send: Send) -> None:
    """The example app's ``/echo`` (``serve_streams`` on the session API), minus routing."""
    await echo(WebTransportSession(scope, receive, send))


async def measure(app: App, total: int, datagrams: bool) -> float:
    """Seconds per request/reply for ``app``."""
    peer = Peer(
        total,
        datagram_request if datagrams else stream_request,
        is_datagram_reply if datagrams else is_stream_reply,
    )
    task = asyncio.create_task(app(SCOPE, peer.receive, peer.send))
    started = time.perf_counter()
    await peer.done
    elapsed = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(BaseException):  # the app's cancellation
        await task
    return elapsed / total


def best(app: App, total: int, datagrams: bool, rounds: int) -> float:
    return min(asyncio.run(measure(app, total, datagrams)) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20_000)
    parser.add_argument("--datagrams", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"  session layer alone, in memory (best of {args.rounds}; Python {sys.version.split()[0]})"
    )
    print(f"  {'operation':<28} {'contract app':>13} {'session API':>12} {'difference':>11}")
    for label, total, datagrams in (
        ("small stream, one at a time", args.streams, False),
        ("datagram, one at a time", args.datagrams, True),
    ):
        raw = best(contract_app, total, datagrams, args.rounds)
        ours = best(session_app, total, datagrams, args.rounds)
        extra = (ours - raw) * 1e6
        print(f"  {label:<28} {raw * 1e6:>10.2f} us {ours * 1e6:>9.2f} us {extra:>8.2f} us")


if __name__ == "__main__":
    main()
