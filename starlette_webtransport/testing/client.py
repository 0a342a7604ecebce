"""An in-process WebTransport test client, for unit tests of WebTransport apps.

``WebTransportTestClient(app).connect(path)`` plays the server of the ASGI contract in
memory: it builds the scope, calls ``app(scope, receive, send)``, numbers streams as QUIC
does, enforces ``max_datagram_size``, answers ``stream.open`` in order and maps close and
rejection; it yields a client-role :class:`WebTransportSession` talking to the app. Stream
data is flow-controlled, so backpressure and memory behave as on a real server: a sender
waits while ``stream_window`` bytes are queued for the receiver and not yet received, or,
for a receiver that reports consumption (``webtransport.credit``, spec 1.1), while
``stream_window`` bytes of that stream, or four windows in all, are not yet consumed. No
network and no QUIC are involved, so use a real server for transport tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast
from urllib.parse import unquote

from ..asgi import (
    DEFAULT_REJECT_STATUS,
    AcceptMessage,
    DisconnectEvent,
    Receive,
    ReceiveEvent,
    RejectMessage,
    Scope,
    Send,
    SendMessage,
    SessionGone,
    StreamSendMessage,
    exit_message,
    is_session_end,
    make_scope,
    unknown_message,
    unrouted_webtransport,
)
from ..protocol.errors import check_close, check_code
from ..protocol.settings import serialize_protocol
from ..session import SessionConfig, SessionRejectedError, WebTransportSession

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_DATAGRAM_SIZE = 1200
"""About what a real server reports for a 1350-byte QUIC packet on loopback."""
DEFAULT_STREAM_WINDOW = 1024 * 1024
"""Stream bytes queued for one side before senders wait, like a QUIC connection window."""
CONSUMED_WINDOWS = 4
"""Stream windows a receiver that reports consumption may hold in all, like QUIC's
connection window beside its stream windows."""
DATAGRAM_QUEUE_SIZE = 256
"""Datagrams queued for one side; more are dropped, as an overloaded server would."""
APP_EXIT_TIMEOUT = 5.0
"""Seconds the client waits for the app to return once the session is over."""

_SERVER_ADDRESS = ("testserver", 443)
_CLIENT_ADDRESS = ("testclient", 50000)
_ROLES = ("server", "client")


class _Endpoint:
    """One side's inbound events and flow-control accounting."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.events: deque[ReceiveEvent] = deque()
        self.arrived = asyncio.Event()
        self.stream_bytes = 0
        """Stream bytes sent to this side that still hold credit."""
        self.held: dict[int, int] = {}
        """The same, per stream."""
        self.consumed_mode = False
        """This side reports what it consumed (spec 1.1): received data holds credit
        until ``webtransport.stream.consumed``."""
        self.delivered: dict[int, int] = {}
        """In consumed mode: bytes per stream received and not reported consumed."""
        self.space = asyncio.Event()
        self.space.set()
        self.datagrams = 0
        self.final: DisconnectEvent | None = None
        self.done = False
        self.send_locks: dict[int, asyncio.Lock] = {}
        """Per stream: its data leaves in the order ``send`` was awaited, and a write
        waiting for one stream's window holds no other stream back, as over QUIC."""

    def push(self, message: ReceiveEvent) -> None:
        self.events.append(message)
        self.arrived.set()

    def hold(self, stream_id: int, size: int) -> None:
        self.stream_bytes += size
        self.held[stream_id] = self.held.get(stream_id, 0) + size

    def release(self, stream_id: int, size: int) -> None:
        """``size`` bytes of the stream stop holding credit: waiting senders look again."""
        if not size:
            return
        self.stream_bytes -= size
        remaining = self.held[stream_id] - size
        if remaining:
            self.held[stream_id] = remaining
        else:
            del self.held[stream_id]
        self.space.set()

    def consumed(self, stream_id: int, size: int) -> None:
        """Counts beyond what was received and not yet reported are ignored."""
        size = min(size, self.delivered.get(stream_id, 0))
        if size:
            self.delivered[stream_id] -= size
            if not self.delivered[stream_id]:
                del self.delivered[stream_id]
            self.release(stream_id, size)

    def discard(self, stream_id: int) -> None:
        """The side stopped reading the stream: drop what waits for it, free its credit."""
        self.release(stream_id, self.delivered.pop(stream_id, 0))
        kept: deque[ReceiveEvent] = deque()
        for message in self.events:
            match message["type"]:
                case "webtransport.stream.receive" if message["stream"] == stream_id:
                    self.release(stream_id, len(message["data"]))
                case "webtransport.stream.reset" if message["stream"] == stream_id:
                    pass  # dropped with the data before it
                case _:
                    kept.append(message)
        self.events = kept

    def blocked(self, stream_id: int, window: int) -> bool:
        """Whether a sender to this side must wait before sending on ``stream_id``."""
        total = window * CONSUMED_WINDOWS if self.consumed_mode else window
        return self.stream_bytes >= total or self.held.get(stream_id, 0) >= window


@dataclass(slots=True)
class _StreamRecord:
    opener: str
    bidirectional: bool
    send_open: dict[str, bool] = field(default_factory=dict)
    """Per role: may that role still send on the stream?"""
    recv_open: dict[str, bool] = field(default_factory=dict)
    """Per role: does that role still take data (it has not sent STOP_SENDING)?"""
    announced: bool = False
    """Has the peer of the opener seen the stream? Over QUIC it only does with the first
    payload byte or the FIN, so resets and stops of an unseen stream never reach it."""

    def seen_by(self, role: str) -> bool:
        return self.announced or role == self.opener

    def can_write(self, role: str) -> bool:
        return self.bidirectional or self.opener == role

    def can_read(self, role: str) -> bool:
        return self.bidirectional or self.opener != role


class _MemoryChannel:
    """The in-memory server: both sides' ``receive``/``send`` of one session."""

    def __init__(self, *, offered: list[str], max_datagram_size: int, stream_window: int) -> None:
        self.offered = offered
        self.max_datagram_size = max_datagram_size
        self.stream_window = stream_window
        self.endpoints = {"server": _Endpoint("server"), "client": _Endpoint("client")}
        self.accepted = False
        self.handshake: asyncio.Future[AcceptMessage | RejectMessage] = (
            asyncio.get_running_loop().create_future()
        )
        self.streams: dict[int, _StreamRecord] = {}
        self.opened = {(role, bidi): 0 for role in _ROLES for bidi in (True, False)}
        self.datagrams_dropped = 0
        self.endpoints["server"].push({"type": "webtransport.connect"})

    def peer(self, role: str) -> _Endpoint:
        return self.endpoints["client" if role == "server" else "server"]

    async def receive(self, role: str) -> ReceiveEvent:
        endpoint = self.endpoints[role]
        while not endpoint.events:
            if endpoint.final is not None:
                return endpoint.final.copy()
            endpoint.arrived.clear()
            await endpoint.arrived.wait()
        message = endpoint.events.popleft()
        match message["type"]:
            case "webtransport.stream.receive":
                stream_id, size = message["stream"], len(message["data"])
                if endpoint.consumed_mode and not endpoint.done:
                    endpoint.delivered[stream_id] = endpoint.delivered.get(stream_id, 0) + size
                else:
                    endpoint.release(stream_id, size)
            case "webtransport.datagram.receive":
                endpoint.datagrams -= 1
            case "webtransport.disconnect":
                endpoint.final = message
        return message

    async def send(self, role: str, message: SendMessage) -> None:
        endpoint = self.endpoints[role]
        if endpoint.done:
            raise SessionGone(f"the session is over; cannot send {message.get('type')!r}")
        if role == "server" and not self.accepted:
            self._answer(message)
            return
        match message["type"]:
            case "webtransport.stream.send":
                await self._stream_send(role, message)
            case "webtransport.datagram.send":
                self._send_datagram(role, bytes(message["data"]))
            case "webtransport.stream.consumed":
                size = message["bytes"]
                if not isinstance(size, int) or size < 0:
                    raise ValueError(f"stream.consumed needs bytes >= 0, got {size!r}")
                endpoint.consumed(message["stream"], size)
            case "webtransport.stream.open":
                self._open_stream(role, bool(message["bidirectional"]))
            case "webtransport.stream.reset":
                self._stream_reset(
                    role, message["stream"], check_code(message.get("code", 0), "error codes")
                )
            case "webtransport.stream.stop_sending":
                self._stop_sending(
                    role, message["stream"], check_code(message.get("code", 0), "error codes")
                )
            case "webtransport.accept" | "webtransport.reject":
                raise SessionGone(f"{message['type']!r} after the session was accepted")
            case "webtransport.close":
                code, reason = message.get("code", 0), message.get("reason", "")
                check_close(code, reason)
                self.end_session(code, reason)
            case "webtransport.drain":
                self.peer(role).push({"type": "webtransport.drain"})
            case "webtransport.credit":
                if message.get("returned_on") != "consumed":
                    raise ValueError(f"webtransport.credit needs returned_on='consumed': {message}")
                endpoint.consumed_mode = True
            case _:
                raise ValueError(unknown_message(message))

    def _answer(self, message: SendMessage) -> None:
        """The app's answer to the CONNECT: only these three may come before accept."""
        match message["type"]:
            case "webtransport.accept":
                self._accept(message)
            case "webtransport.reject":
                status = message.get("status", DEFAULT_REJECT_STATUS)
                self._reject(status, message.get("headers", []))
            case "webtransport.close":
                self._reject(DEFAULT_REJECT_STATUS, [])
            case _:
                raise RuntimeError(f"{message.get('type')!r} sent before webtransport.accept")

    def _accept(self, message: AcceptMessage) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.offered:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered ({self.offered})")
        self.accepted = True
        self.handshake.set_result(message)

    def _reject(self, status: Any, headers: Iterable[tuple[bytes, bytes]]) -> None:
        if not isinstance(status, int) or not 100 <= status <= 599 or 200 <= status <= 299:
            raise ValueError(f"a rejection needs a non-2xx status, got {status!r}")
        server = self.endpoints["server"]
        server.done = True
        server.push({"type": "webtransport.disconnect", "code": 0, "reason": ""})
        if not self.handshake.done():
            self.handshake.set_result(
                {"type": "webtransport.reject", "status": status, "headers": list(headers)}
            )

    def end_session(self, code: int, reason: str) -> None:
        """WT_CLOSE_SESSION: both sides get ``disconnect`` as their last event."""
        for endpoint in self.endpoints.values():
            if not endpoint.done:
                endpoint.done = True
                endpoint.push({"type": "webtransport.disconnect", "code": code, "reason": reason})
            endpoint.space.set()

    def app_finished(self, error: BaseException | None) -> None:
        """Section 6 of the contract: what the server does when the app returns."""
        if self.endpoints["client" if self.accepted else "server"].done:
            return
        message = exit_message(accepted=self.accepted, failed=error is not None)
        if message["type"] == "webtransport.reject":
            self._reject(message["status"], [])
        else:
            self.end_session(message.get("code", 0), message.get("reason", ""))

    def _send_datagram(self, role: str, data: bytes) -> None:
        if len(data) > self.max_datagram_size:
            raise ValueError(
                f"datagram of {len(data)} bytes exceeds max_datagram_size "
                f"({self.max_datagram_size} bytes)"
            )
        peer = self.peer(role)
        if peer.datagrams >= DATAGRAM_QUEUE_SIZE:
            self.datagrams_dropped += 1
            return
        peer.datagrams += 1
        peer.push({"type": "webtransport.datagram.receive", "data": data})

    def _open_stream(self, role: str, bidirectional: bool) -> None:
        index = self.opened[role, bidirectional]
        self.opened[role, bidirectional] = index + 1
        # Ids follow QUIC numbering, from 4 up: 0 is the CONNECT stream (the session id).
        stream_id = (index + 1) * 4 + (0 if bidirectional else 2) + (1 if role == "server" else 0)
        peer = self.peer(role).role
        record = _StreamRecord(role, bidirectional)
        record.send_open = {role: True, peer: bidirectional}
        record.recv_open = {role: bidirectional, peer: True}
        self.streams[stream_id] = record
        self.endpoints[role].push(
            {
                "type": "webtransport.stream.opened",
                "stream": stream_id,
                "bidirectional": bidirectional,
            }
        )
        # As over QUIC, the peer learns of the stream with its first payload byte or its FIN.

    def _record(self, role: str, stream_id: Any, *, write: bool) -> _StreamRecord:
        record = self.streams.get(stream_id)
        allowed = record is not None and (
            record.can_write(role) if write else record.can_read(role)
        )
        if record is None or not allowed:
            action = "written" if write else "read"
            raise ValueError(f"stream {stream_id!r} cannot be {action} by the {role}")
        return record

    async def _stream_send(self, role: str, message: StreamSendMessage) -> None:
        stream_id = message["stream"]
        record = self._record(role, stream_id, write=True)
        data = bytes(message.get("data", b""))
        end_stream = bool(message.get("end_stream", False))
        endpoint, peer = self.endpoints[role], self.peer(role)
        async with endpoint.send_locks.setdefault(stream_id, asyncio.Lock()):
            while data and peer.blocked(stream_id, self.stream_window):
                peer.space.clear()
                await peer.space.wait()
                if endpoint.done:
                    raise SessionGone("the session ended while the write waited")
            if not record.send_open[role]:
                return  # stopped by the peer, already reset or finished: ignored
            if end_stream:
                record.send_open[role] = False
            if not data and not end_stream:
                return  # carries nothing; a real peer would not even see the stream yet
            if record.recv_open[peer.role]:
                record.announced = True
                peer.hold(stream_id, len(data))
                peer.push(
                    {
                        "type": "webtransport.stream.receive",
                        "stream": stream_id,
                        "data": data,
                        "end_stream": end_stream,
                    }
                )

    def _stream_reset(self, role: str, stream_id: Any, code: int) -> None:
        record = self._record(role, stream_id, write=True)
        if not record.send_open[role]:
            return
        record.send_open[role] = False
        peer = self.peer(role)
        if record.recv_open[peer.role] and record.seen_by(peer.role):
            record.recv_open[peer.role] = False
            peer.push({"type": "webtransport.stream.reset", "stream": stream_id, "code": code})

    def _stop_sending(self, role: str, stream_id: Any, code: int) -> None:
        record = self._record(role, stream_id, write=False)
        endpoint = self.endpoints[role]
        if endpoint.consumed_mode:
            endpoint.discard(stream_id)
        if not record.recv_open[role]:
            return
        record.recv_open[role] = False
        peer = self.peer(role)
        if record.send_open[peer.role] and record.seen_by(peer.role):
            record.send_open[peer.role] = False
            peer.push(
                {"type": "webtransport.stream.stop_sending", "stream": stream_id, "code": code}
            )


class WebTransportTestClient:
    """Connects to an ASGI WebTransport app in memory, like Starlette's
    ``TestClient.websocket_connect``, but async (WebTransport apps are concurrent)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        session_config: SessionConfig | None = None,
    ) -> None:
        self.app = app
        self.max_datagram_size = max_datagram_size
        self.stream_window = stream_window
        self.session_config = session_config

    @asynccontextmanager
    async def connect(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        origin: str | None = None,
    ) -> AsyncIterator[WebTransportSession]:
        """Open a session to ``path`` (may carry ``?query``); yields the client side.

        Raises :class:`SessionRejectedError` (with the status) if the app rejects, closes
        or returns before accepting, and re-raises an exception the app raised. Leaving
        the block closes the session (code 0) and waits for the app to return."""
        offered = list(subprotocols or [])
        channel = _MemoryChannel(
            offered=offered,
            max_datagram_size=self.max_datagram_size,
            stream_window=self.stream_window,
        )
        session_id = uuid.uuid4().hex
        scope = self._server_scope(path, headers or {}, offered, origin, session_id)
        app_task = asyncio.create_task(self._run_app(channel, scope))
        try:
            answer = await channel.handshake
            if answer["type"] == "webtransport.reject":
                await _join_app(app_task)
                raise SessionRejectedError(answer["status"], list(answer.get("headers", [])))
            session = WebTransportSession(
                _client_scope(scope, answer),
                partial(channel.receive, "client"),
                partial(channel.send, "client"),
                config=self.session_config,
            )
            await session.initialize()
        except BaseException:
            await _abandon_app(app_task)
            raise
        try:
            yield session
        except BaseException:
            await session.close()
            await _abandon_app(app_task)
            raise
        await session.close()
        await _join_app(app_task)

    async def _run_app(self, channel: _MemoryChannel, scope: Scope) -> None:
        # The app is typed as Starlette types apps (any mapping); it gets the contract's.
        receive = cast(Receive, partial(channel.receive, "server"))
        try:
            await self.app(scope, receive, partial(channel.send, "server"))
        except BaseException as exc:
            if is_session_end(exc):  # the session ended under the app: a return, as for servers
                channel.app_finished(None)
                return
            hint = unrouted_webtransport(exc)
            error = RuntimeError(hint) if hint else exc
            channel.app_finished(error)
            if hint:
                raise error from exc
            raise
        channel.app_finished(None)

    def _server_scope(
        self,
        path: str,
        headers: Mapping[str, str],
        offered: list[str],
        origin: str | None,
        session_id: str,
    ) -> Scope:
        raw_path, _, query = path.partition("?")
        header_list = [(b"host", _SERVER_ADDRESS[0].encode())]
        if origin is not None:
            header_list.append((b"origin", origin.encode("latin-1")))
        if offered:
            value = b", ".join(serialize_protocol(protocol) for protocol in offered)
            header_list.append((b"wt-available-protocols", value))
        header_list += [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ]
        return make_scope(
            path=unquote(raw_path),
            raw_path=raw_path.encode("latin-1"),
            query_string=query.encode("latin-1"),
            headers=header_list,
            client=_CLIENT_ADDRESS,
            server=_SERVER_ADDRESS,
            subprotocols=offered,
            session_id=session_id,
            stream_id=0,
            draft="draft15",
            max_datagram_size=self.max_datagram_size,
            connection_id=session_id[:16],
        )


def _client_scope(server_scope: Scope, accept: AcceptMessage) -> Scope:
    """The client's view: the response headers, the peer's address, role "client"."""
    headers: list[tuple[bytes, bytes]] = []
    subprotocol = accept.get("subprotocol")
    if subprotocol is not None:
        headers.append((b"wt-protocol", serialize_protocol(subprotocol)))
    headers += [(bytes(name).lower(), bytes(value)) for name, value in accept.get("headers", [])]
    extension = dict(server_scope["extensions"]["webtransport"])
    connection = extension["connection"]
    extension["role"] = "client"
    extension["connection"] = connection | {
        "local": connection["remote"],
        "remote": connection["local"],
    }
    return {
        **server_scope,
        "headers": headers,
        "client": server_scope["server"],
        "server": server_scope["client"],
        "extensions": {"webtransport": extension},
    }


async def _join_app(app_task: asyncio.Task[None]) -> None:
    """Wait for the app to return and re-raise what it raised."""
    done, _ = await asyncio.wait({app_task}, timeout=APP_EXIT_TIMEOUT)
    if not done:
        await _abandon_app(app_task)
        raise RuntimeError(
            f"the app did not return within {APP_EXIT_TIMEOUT} s after the session ended"
        )
    app_task.result()


async def _abandon_app(app_task: asyncio.Task[None]) -> None:
    """Stop the app without raising: something else is already being raised."""
    if not app_task.done():
        app_task.cancel()
    await asyncio.wait({app_task})
    if not app_task.cancelled():
        app_task.exception()  # retrieved, so asyncio does not log it as lost
