"""Helpers for session tests: a hand-driven ASGI server for the cases the in-memory
test client cannot produce (contract violations, exact event orders), and helpers.

These are the contract's own messages, fed straight to the session; tests of behaviour
between two sessions use ``WebTransportTestClient``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette_webtransport.asgi import Message
from starlette_webtransport.session import SessionConfig, WebTransportSession


class RawServer:
    """Plays the server by hand: ``push`` queues events, ``sent`` records messages.

    With ``auto_open`` it answers ``stream.open`` with QUIC-numbered ids for ``role``.
    """

    def __init__(self, role: str = "server", *, auto_open: bool = True) -> None:
        self.role = role
        self.auto_open = auto_open
        self.events: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.opened = {True: 0, False: 0}
        self.send_error: BaseException | None = None

    def push(self, message: Message) -> None:
        self.events.put_nowait(message)

    async def receive(self) -> Message:
        return await self.events.get()

    async def send(self, message: Message) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(dict(message))
        if self.auto_open and message["type"] == "webtransport.stream.open":
            self.push(self.opened_reply(message["bidirectional"]))

    def opened_reply(self, bidirectional: bool) -> Message:
        index = self.opened[bidirectional]
        self.opened[bidirectional] += 1
        stream_id = index * 4 + (0 if bidirectional else 2) + (1 if self.role == "server" else 0)
        return {
            "type": "webtransport.stream.opened",
            "stream": stream_id,
            "bidirectional": bidirectional,
        }

    def sent_of(self, kind: str) -> list[Message]:
        return [m for m in self.sent if m["type"] == f"webtransport.{kind}"]


def make_scope(role: str = "server", **overrides: Any) -> dict[str, Any]:
    extension: dict[str, Any] = {
        "session_id": overrides.pop("session_id", "s-1"),
        "stream_id": 0,
        "draft": "draft15",
        "max_datagram_size": overrides.pop("max_datagram_size", 1200),
        "connection": {
            "id": "abcd",
            "alpn": "h3",
            "local": ["127.0.0.1", 4433],
            "remote": ["127.0.0.1", 50000],
        },
    }
    if role != "server":
        extension["role"] = role
    scope: dict[str, Any] = {
        "type": "webtransport",
        "asgi": {"version": "3.0", "spec_version": "1.0"},
        "http_version": "3",
        "scheme": "https",
        "method": "CONNECT",
        "path": "/wt",
        "raw_path": b"/wt",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"example.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4433),
        "subprotocols": [],
        "extensions": {"webtransport": extension},
    }
    scope.update(overrides)
    return scope


async def settle(rounds: int = 20) -> None:
    """Let the session's reader task process what was pushed."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def accepted(server: RawServer, **config: Any) -> WebTransportSession:
    """A server-role session over ``server``, accepted, with ``SessionConfig(**config)``."""
    session = WebTransportSession(
        make_scope(), server.receive, server.send, config=SessionConfig(**config)
    )
    server.push({"type": "webtransport.connect"})
    await session.accept()
    return session
