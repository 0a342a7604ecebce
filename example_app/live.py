"""The room page's server side: ``/rooms/{room}/live``, the demo at ``/``.

Each visitor of the page joins a room and uses every kind of WebTransport traffic for
what it suits:

- **chat** on a bidirectional stream of typed messages: the page opens it with a
  ``Ping`` (a QUIC stream reaches the server with its first bytes) and sends ``Say``; the
  server answers on the same stream with ``Welcome``, ``Pong`` and, every second,
  ``ServerView`` (its own figures for the session, from ``get_summary()``). What others
  say reaches the page as ``Chat`` on one ordered unidirectional stream (the broadcast
  hub's ``STREAM`` delivery), so a message is encoded once per publish;
- **cursors** as datagrams: ``Move`` up, ``Cursor`` (who, where) down, lossy and fresh;
- **presence**: every join and leave in the room, from every worker, is pushed on a new
  unidirectional stream holding one ``Presence`` message.

The route takes the room from its path, checks the page's origin (``OriginMiddleware``)
and a token (a dependency): ``POST /rooms/{room}/token?name=...`` mints it for a page
of this site, which alone can read the answer (no CORS). Tokens are HMACs with
``$EXAMPLE_ROOM_SECRET``; set it when several workers serve the app, so that one accepts
the tokens another made (``scripts/example`` sets a fresh one for each run).

``/rooms/{room}`` (the raw relay in ``app.py``) is left as it is: other checks rely on
its wire contract, and this route's groups are separate (``live:{room}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import msgspec
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from starlette_webtransport.broadcast import (
    BackendUnavailableError,
    Delivery,
    PresenceKind,
    PresenceWatch,
    default_broadcast,
)
from starlette_webtransport.session import (
    SessionClosedError,
    StreamError,
    WebTransportSession,
    WebTransportTimeoutError,
)
from starlette_webtransport.starlette import (
    Depends,
    OriginMiddleware,
    WebTransportException,
    WebTransportRoute,
)
from starlette_webtransport.structured import (
    EndOfStream,
    JSONSerializer,
    MessageDecodeError,
    Schema,
    StructuredDatagramTransport,
    StructuredError,
    StructuredSendStream,
    StructuredStream,
    UnknownMessageTypeError,
)

SECRET_VARIABLE = "EXAMPLE_ROOM_SECRET"
TOKEN_LIFETIME = 12 * 3600.0
MAX_NAME = 32
MAX_TEXT = 500
VIEW_INTERVAL = 1.0
"""Seconds between two ``ServerView`` messages: the page's charts tick at this pace."""
CHAT_STREAM_TIMEOUT = 10.0
"""How long a page may take to open its chat stream after the session is accepted."""
NO_CHAT_STREAM_CODE = 0x4E4F4348
"""Close code (ASCII ``NOCH``) for a page that never opened its chat stream."""


class Person(msgspec.Struct):
    id: str  # the broadcast member id: unique across workers
    name: str
    pid: int  # the worker that serves this person's session


class Say(msgspec.Struct):
    text: str


class Ping(msgspec.Struct):
    sent: float  # the page's clock; returned as it is


class Welcome(msgspec.Struct):
    you: Person
    members: list[Person]


class Pong(msgspec.Struct):
    sent: float


class ServerView(msgspec.Struct):
    pid: int
    session_id: str
    uptime: float
    active_streams: int
    streams_created: int
    bytes_sent: int  # stream payload bytes
    bytes_received: int
    datagram_bytes_sent: int
    datagram_bytes_received: int
    datagrams_sent: int
    datagrams_received: int
    datagrams_dropped: int


class Chat(msgspec.Struct):
    id: str
    name: str
    text: str
    at: float  # server time, seconds since the epoch


class Presence(msgspec.Struct):
    kind: Literal["join", "leave"]
    who: Person


class Move(msgspec.Struct):
    x: float  # 0..1 of the room's width
    y: float


class Cursor(msgspec.Struct):
    id: str
    x: float
    y: float


Message = Say | Ping | Welcome | Pong | ServerView | Chat | Presence | Move | Cursor
TYPE_IDS: dict[int, type[Message]] = {
    **{1: Say, 2: Ping},  # page -> server, on the chat stream
    **{10: Welcome, 11: Pong, 12: ServerView},  # server -> page, on the chat stream
    **{20: Chat, 30: Presence},  # server -> page, on unidirectional streams
    **{40: Move, 41: Cursor},  # datagrams, up and down
}
SCHEMA: Schema[Message] = Schema(TYPE_IDS, serializer=JSONSerializer())
"""One schema for the route: type ids are unique, so any frame can be read with it
(``static/room.js`` has the same table)."""


# --- the token --------------------------------------------------------------------------


def _secret() -> bytes:
    return os.environ.get(SECRET_VARIABLE, "").encode() or _PROCESS_SECRET


_PROCESS_SECRET = secrets.token_bytes(32)
"""Used when ``$EXAMPLE_ROOM_SECRET`` is unset: fine for one process only."""


def _signature(room: str, name: str, expires: int) -> str:
    message = f"{room}\0{name}\0{expires}".encode()
    return hmac.new(_secret(), message, hashlib.sha256).hexdigest()


def mint_token(room: str, name: str, *, lifetime: float = TOKEN_LIFETIME) -> str:
    expires = int(time.time() + lifetime)
    return f"{expires}.{_signature(room, name, expires)}"


def token_is_valid(token: str, room: str, name: str) -> bool:
    expires, _, signature = token.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(signature, _signature(room, name, int(expires)))


def _clean_name(raw: str) -> str:
    name = " ".join(raw.split())[:MAX_NAME]
    if not name:
        raise HTTPException(400, "a name is needed")
    return name


async def issue_token(request: Request) -> JSONResponse:
    """``POST /rooms/{room}/token?name=...``: a token for this room and name."""
    room = request.path_params["room"]
    name = _clean_name(request.query_params.get("name", ""))
    return JSONResponse({"room": room, "name": name, "token": mint_token(room, name)})


@dataclass(frozen=True, slots=True)
class Visitor:
    room: str
    name: str


async def visitor(connection: HTTPConnection, room: str) -> Visitor:
    """The dependency that guards the route: a valid token for this room and name, else
    the CONNECT request is rejected with 403 (logged with this reason)."""
    name = _clean_name(connection.query_params.get("name", ""))
    if not token_is_valid(connection.query_params.get("token", ""), room, name):
        raise HTTPException(
            403, f"no valid token for {name!r} in room {room!r} (is {SECRET_VARIABLE} shared?)"
        )
    return Visitor(room, name)


# --- the session ------------------------------------------------------------------------


async def live(session: WebTransportSession, room: str, who: Visitor = Depends(visitor)) -> None:
    await session.accept()
    hub = default_broadcast()
    group = f"live:{room}"
    me = Person(id=hub.member_id(session), name=who.name, pid=os.getpid())
    try:
        stream = await session.accept_bidirectional_stream(timeout=CHAT_STREAM_TIMEOUT)
    except WebTransportTimeoutError:
        raise WebTransportException(NO_CHAT_STREAM_CODE, "no chat stream") from None
    chat = StructuredStream(stream, schema=SCHEMA)
    lock = asyncio.Lock()  # the chat stream has three writers; one frame at a time

    async def answer(message: Message) -> None:
        async with lock:
            await chat.send_obj(message)

    # Watch before joining: every join after the snapshot below is then seen as an event.
    async with hub.watch(group) as events:
        await hub.join(group, session, data=msgspec.to_builtins(me))
        await answer(Welcome(you=me, members=await _members(group)))
        async with asyncio.TaskGroup() as tasks:
            others = [
                tasks.create_task(_until_closed(_push_presence(session, events))),
                tasks.create_task(_until_closed(_relay_cursors(session, group, me))),
                tasks.create_task(_until_closed(_report_view(session, answer))),
            ]
            try:
                await _until_closed(_converse(session, chat, group, me, answer))
            finally:
                for task in others:
                    task.cancel()


async def _until_closed(work: Awaitable[None]) -> None:
    """Run one of the session's tasks; the session ending under it is how it stops, not
    a failure to log."""
    with contextlib.suppress(SessionClosedError, StreamError):
        await work


async def _members(group: str) -> list[Person]:
    try:
        infos = await default_broadcast().members(group)
    except BackendUnavailableError:
        infos = []  # Redis is away: the page learns the others from later joins
    people = []
    for info in infos:
        with contextlib.suppress(msgspec.ValidationError):
            people.append(msgspec.convert(info.data, Person))
    return people


async def _converse(
    session: WebTransportSession,
    chat: StructuredStream[Message],
    group: str,
    me: Person,
    answer: Callable[[Message], Awaitable[None]],
) -> None:
    """Read the page's chat stream until it ends; the session ends with it."""
    hub = default_broadcast()
    while True:
        try:
            message = await chat.receive_obj()
        except EndOfStream:
            return
        except (MessageDecodeError, UnknownMessageTypeError):
            continue  # a frame this server cannot read: skip it, the stream goes on
        if isinstance(message, Ping):
            await answer(Pong(sent=message.sent))
        elif isinstance(message, Say) and message.text.strip():
            said = Chat(id=me.id, name=me.name, text=message.text[:MAX_TEXT], at=time.time())
            await hub.publish(group, said, schema=SCHEMA, delivery=Delivery.STREAM, exclude=session)


async def _push_presence(session: WebTransportSession, events: PresenceWatch) -> None:
    async for event in events:
        try:
            who = msgspec.convert(event.member.data, Person)
        except msgspec.ValidationError:
            continue
        kind: Literal["join", "leave"] = "join" if event.kind is PresenceKind.JOIN else "leave"
        stream = StructuredSendStream(await session.create_unidirectional_stream(), schema=SCHEMA)
        await stream.send_obj(Presence(kind=kind, who=who))
        await stream.close()


async def _relay_cursors(session: WebTransportSession, group: str, me: Person) -> None:
    hub = default_broadcast()
    datagrams = StructuredDatagramTransport(session.datagrams, schema=SCHEMA)
    while True:
        try:
            move = await datagrams.receive_obj()
        except StructuredError:
            continue  # datagrams are independent: a bad one costs only itself
        if isinstance(move, Move):
            cursor = Cursor(id=me.id, x=_unit(move.x), y=_unit(move.y))
            await hub.publish(group, cursor, schema=SCHEMA, exclude=session)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


async def _report_view(
    session: WebTransportSession, answer: Callable[[Message], Awaitable[None]]
) -> None:
    """The server's side of the page's charts: ``get_summary()`` every second, with the
    datagram bytes from ``get_session_stats()``."""
    pid = os.getpid()
    while True:
        await asyncio.sleep(VIEW_INTERVAL)
        s = await session.get_summary()
        stats = await session.get_session_stats()
        await answer(
            ServerView(
                pid=pid,
                session_id=str(s["session_id"]),
                uptime=float(s["uptime"]),
                active_streams=int(s["active_streams"]),
                streams_created=int(s["streams_created"]),
                bytes_sent=int(s["bytes_sent"]),
                bytes_received=int(s["bytes_received"]),
                datagram_bytes_sent=int(stats["datagram_bytes_sent"]),
                datagram_bytes_received=int(stats["datagram_bytes_received"]),
                datagrams_sent=int(s["datagrams_sent"]),
                datagrams_received=int(s["datagrams_received"]),
                datagrams_dropped=int(s["datagrams_dropped"]),
            )
        )


routes: list[BaseRoute] = [
    Route("/rooms/{room}/token", issue_token, methods=["POST"]),
    WebTransportRoute("/rooms/{room}/live", live, middleware=[Middleware(OriginMiddleware)]),
]
