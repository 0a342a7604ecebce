"""Drive an ASGI app with the contract's WebTransport messages, in memory.

The routing, dependency and middleware logic of the integration lives entirely above
``receive``/``send``, so these unit tests play the server's side of
``docs/asgi-webtransport.md`` by hand: ``push`` an event, then wait for the messages the
app sends. The real-QUIC tests (``test_quic_*.py``) cover the same app over hypercorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette_webtransport.asgi import Message

TIMEOUT = 5.0

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Channel:
    """The server side of one session: events in, the app's messages recorded.

    Like a real server it answers ``stream.open`` with ``stream.opened``, raises
    ``OSError`` for messages after the session ended, and delivers
    ``webtransport.disconnect`` once the app closed or rejected the session.
    """

    def __init__(self, *, connect: bool = True) -> None:
        self.events: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self._changed = asyncio.Condition()
        self._opened = {True: 0, False: 0}
        self.ended = False
        if connect:
            self.push({"type": "webtransport.connect"})

    def push(self, event: Message) -> None:
        self.events.put_nowait(event)

    def push_stream(self, stream: int, data: bytes, *, end_stream: bool = False) -> None:
        self.push(
            {
                "type": "webtransport.stream.receive",
                "stream": stream,
                "data": data,
                "end_stream": end_stream,
            }
        )

    def disconnect(self, code: int = 0, reason: str = "") -> None:
        self.push({"type": "webtransport.disconnect", "code": code, "reason": reason})

    async def receive(self) -> Message:
        return await self.events.get()

    async def send(self, message: Message) -> None:
        if self.ended:
            raise OSError(f"the session has ended; cannot send {message['type']}")
        async with self._changed:
            self.sent.append(dict(message))
            self._changed.notify_all()
        kind = message["type"]
        if kind in ("webtransport.close", "webtransport.reject"):
            self.ended = True
            self.disconnect(message.get("code", 0), message.get("reason", ""))
        elif kind == "webtransport.stream.open":
            bidirectional = message["bidirectional"]
            index = self._opened[bidirectional]
            self._opened[bidirectional] += 1
            stream = index * 4 + (1 if bidirectional else 3)
            self.push(
                {
                    "type": "webtransport.stream.opened",
                    "stream": stream,
                    "bidirectional": bidirectional,
                }
            )

    async def wait_for(self, kind: str, **fields: Any) -> Message:
        """The first message sent of type ``webtransport.<kind>`` with these fields."""

        def find() -> Message | None:
            for message in self.sent:
                if message["type"] == f"webtransport.{kind}" and all(
                    message.get(key) == value for key, value in fields.items()
                ):
                    return message
            return None

        async with asyncio.timeout(TIMEOUT):
            async with self._changed:
                await self._changed.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found

    async def wait_answered(self) -> None:
        """Until the app accepted or rejected the session."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.sent))

    def of(self, kind: str) -> list[Message]:
        return [m for m in self.sent if m["type"] == f"webtransport.{kind}"]

    async def stream_data(self, stream: int) -> bytes:
        """Everything the app wrote to ``stream``, waiting for its FIN."""
        await self.wait_for("stream.send", stream=stream, end_stream=True)
        return b"".join(m["data"] for m in self.of("stream.send") if m["stream"] == stream)


def make_scope(
    path: str = "/",
    *,
    host: str = "example.test",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
    query_string: bytes = b"",
) -> dict[str, Any]:
    """A scope as the contract's section 1 describes it."""
    return {
        "type": "webtransport",
        "asgi": {"version": "3.0", "spec_version": "1.0"},
        "http_version": "3",
        "scheme": "https",
        "method": "CONNECT",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": root_path,
        "headers": [(b"host", host.encode()), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4433),
        "subprotocols": [],
        "extensions": {
            "webtransport": {
                "session_id": "s-1",
                "stream_id": 0,
                "draft": "draft15",
                "max_datagram_size": 1200,
                "connection": {
                    "id": "abcd",
                    "alpn": "h3",
                    "local": ["127.0.0.1", 4433],
                    "remote": ["127.0.0.1", 50000],
                },
            }
        },
    }


async def run(app: App, scope: dict[str, Any], channel: Channel) -> None:
    """Run the app for one session to completion (bounded in time)."""
    async with asyncio.timeout(TIMEOUT):
        await app(scope, channel.receive, channel.send)


async def call(app: App, path: str = "/", **scope_options: Any) -> Channel:
    """Open a session at ``path`` that the client abandons right after the app answers."""
    channel = Channel()
    task = asyncio.create_task(run(app, make_scope(path, **scope_options), channel))
    answered = asyncio.create_task(channel.wait_answered())
    await asyncio.wait({task, answered}, return_when=asyncio.FIRST_COMPLETED)
    answered.cancel()
    if not channel.ended:
        channel.disconnect()
    await task
    return channel
