"""The room page's protocol (``/rooms/{room}/live``) with two real Python clients over QUIC.

The browser test (``tests/browser/test_room_page.py``) shows the page works; this one pins
down what the page relies on, message by message, and that the route is guarded: no
session without a token for the room and name, none from a foreign origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from example_app import live
from example_app.app import app
from starlette_webtransport.client import WebTransportRejectedError
from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.structured import (
    StructuredDatagramTransport,
    StructuredReceiveStream,
    StructuredStream,
)
from starlette_webtransport.testing.plugin import ClientFactory, LiveServer, ServerFactory

WAIT = 5.0


async def test_token_route_mints_a_token_for_the_room_and_name() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.post("/rooms/lobby/token", params={"name": "  Ada   L. "})
        assert answer.status_code == 200
        body = answer.json()
        assert (body["room"], body["name"]) == ("lobby", "Ada L.")
        assert live.token_is_valid(body["token"], "lobby", "Ada L.")
        assert not live.token_is_valid(body["token"], "other", "Ada L.")
        assert not live.token_is_valid(body["token"], "lobby", "Eve")
        assert (await client.post("/rooms/lobby/token")).status_code == 400
        assert (await client.get("/rooms/lobby/token", params={"name": "x"})).status_code == 405
    expired = live.mint_token("lobby", "Ada", lifetime=-1)
    assert not live.token_is_valid(expired, "lobby", "Ada")


def path(room: str, name: str, token: str | None = None) -> str:
    token = live.mint_token(room, name) if token is None else token
    return f"/rooms/{room}/live?name={name}&token={token}"


async def test_the_route_needs_a_token_and_a_trusted_origin(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    async with webtransport_server(app) as server:
        refused = {
            "no token": path("r", "Ada", token=""),
            "a token for another room": path("r", "Ada", token=live.mint_token("s", "Ada")),
            "a token for another name": path("r", "Ada", token=live.mint_token("r", "Eve")),
            "a forged token": path("r", "Ada", token="9999999999." + "0" * 64),
        }
        for why, target in refused.items():
            with pytest.raises(WebTransportRejectedError) as rejected:
                async with webtransport_client(server, target):
                    pass
            assert rejected.value.status == 403, why
        with pytest.raises(WebTransportRejectedError) as rejected:
            async with webtransport_client(server, path("r", "Ada"), origin="https://evil.example"):
                pass
        assert rejected.value.status == 403
        own = f"https://127.0.0.1:{server.port}"
        async with webtransport_client(server, path("r", "Ada"), origin=own) as session:
            assert session.is_ready


class Visitor:
    """One client of the route, with everything it receives sorted into queues."""

    def __init__(self, session: WebTransportSession, chat: StructuredStream[Any]) -> None:
        self.session = session
        self.chat = chat
        self.on_chat: asyncio.Queue[Any] = asyncio.Queue()  # the bidirectional stream
        self.pushed: asyncio.Queue[Any] = asyncio.Queue()  # unidirectional streams
        self.datagrams: asyncio.Queue[Any] = asyncio.Queue()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read(self.chat, self.on_chat))
            tasks.create_task(self._read_datagrams())
            async for stream in self.session.incoming_streams():
                typed = StructuredReceiveStream(stream, schema=live.SCHEMA)
                tasks.create_task(self._read(typed, self.pushed))

    async def _read(self, stream: Any, queue: asyncio.Queue[Any]) -> None:
        with contextlib.suppress(Exception):  # the stream ends with the session
            async for message in stream:
                queue.put_nowait(message)

    async def _read_datagrams(self) -> None:
        transport = StructuredDatagramTransport(self.session.datagrams, schema=live.SCHEMA)
        async for message in transport:
            self.datagrams.put_nowait(message)

    async def expect(self, queue: asyncio.Queue[Any], match: Callable[[Any], bool]) -> Any:
        async with asyncio.timeout(WAIT):
            while not match(message := await queue.get()):
                pass
        return message


@contextlib.asynccontextmanager
async def visit(
    open_session: ClientFactory, server: LiveServer, room: str, name: str
) -> AsyncIterator[Visitor]:
    async with open_session(server, path(room, name)) as session:
        chat = StructuredStream(await session.create_bidirectional_stream(), schema=live.SCHEMA)
        await chat.send_obj(live.Ping(sent=0.0))  # a stream reaches the server with its data
        visitor = Visitor(session, chat)
        reader = asyncio.create_task(visitor.run())
        try:
            yield visitor
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_chat_cursors_presence_and_the_servers_view(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    async with (
        webtransport_server(app) as server,
        visit(webtransport_client, server, "den", "Ada") as ada,
    ):
        welcome = await ada.expect(ada.on_chat, lambda m: isinstance(m, live.Welcome))
        assert welcome.you.name == "Ada" and welcome.you.pid == os.getpid()
        assert [p.name for p in welcome.members] == ["Ada"]
        async with visit(webtransport_client, server, "den", "Grace") as grace:
            welcome = await grace.expect(grace.on_chat, lambda m: isinstance(m, live.Welcome))
            assert sorted(p.name for p in welcome.members) == ["Ada", "Grace"]
            grace_id = welcome.you.id

            # Presence: Ada is told on a unidirectional stream that Grace joined.
            joined = await ada.expect(
                ada.pushed, lambda m: isinstance(m, live.Presence) and m.who.id == grace_id
            )
            assert (joined.kind, joined.who.name) == ("join", "Grace")

            # Chat: said on the bidirectional stream, heard on a unidirectional one.
            await grace.chat.send_obj(live.Say(text="hello, Ada"))
            heard = await ada.expect(ada.pushed, lambda m: isinstance(m, live.Chat))
            assert (heard.id, heard.name, heard.text) == (grace_id, "Grace", "hello, Ada")

            # Cursors: a datagram up, the position with who moved down (clamped).
            moves = StructuredDatagramTransport(grace.session.datagrams, schema=live.SCHEMA)
            for _ in range(20):  # datagrams may be lost: send until one arrives
                await moves.send_obj(live.Move(x=0.25, y=1.5))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        cursor = await ada.datagrams.get()
                        break
            else:
                raise AssertionError("no cursor datagram reached Ada")
            assert (cursor.id, cursor.x, cursor.y) == (grace_id, 0.25, 1.0)

            # The server's view of the session, every second, and a ping's pong.
            await grace.chat.send_obj(live.Ping(sent=123.5))
            await grace.expect(grace.on_chat, lambda m: m == live.Pong(sent=123.5))
            view = await grace.expect(grace.on_chat, lambda m: isinstance(m, live.ServerView))
            assert view.pid == os.getpid()
            assert view.active_streams >= 1 and view.streams_created >= 2  # chat, presence
            assert view.bytes_received > 0 and view.datagrams_received >= 1

        # Grace left: Ada is told at once.
        left = await ada.expect(
            ada.pushed, lambda m: isinstance(m, live.Presence) and m.kind == "leave"
        )
        assert left.who.id == grace_id
