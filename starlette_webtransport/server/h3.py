"""hypercorn's HTTP/3 protocol taught to speak WebTransport.

hypercorn turns every CONNECT into a WebSocket, ignores datagrams and WebTransport stream
events, and aioquic's H3 layer swallows peer RESET_STREAM / STOP_SENDING and leaves
capsules unparsed. :class:`WebTransportH3Protocol` keeps hypercorn's handling of ordinary
requests and routes everything that belongs to a WebTransport session to a
:class:`WebTransportSessionHandler`, which is the server side of the ASGI contract in
``docs/asgi-webtransport.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aioquic.h3.connection import FrameType, H3Connection, H3Stream
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StopSendingReceived,
    StreamReset,
)
from hypercorn.config import Config
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.typing import AppWrapper, ConnectionState, TaskGroup, WorkerContext
from hypercorn.utils import filter_pseudo_headers

from ..asgi import SPEC_VERSION, Message
from ..protocol.errors import (
    WT_BUFFERED_STREAM_REJECTED,
    WT_SESSION_GONE,
    ProtocolError,
    app_to_http3,
    http3_to_app,
)
from ..protocol.settings import (
    Draft,
    FlowControlLimits,
    negotiate_draft,
    parse_available_protocols,
    response_headers,
    serialize_protocol,
    server_settings,
)
from ..protocol.state import SessionClosed, SessionDraining, SessionProtocol, SessionState

if TYPE_CHECKING:
    from .quic import WebTransportQuicConnection
    from .serve import ServerState

log = logging.getLogger("starlette_webtransport.server")

WEBTRANSPORT_PROTOCOLS = frozenset({b"webtransport", b"webtransport-h3"})

STREAM_HIGH_WATER = 1024 * 1024
"""Unacknowledged bytes on one stream above which ``stream.send`` waits."""

DATAGRAM_HIGH_WATER = 256
"""Datagrams queued in QUIC above which ``datagram.send`` waits for the congestion window."""

DATAGRAM_QUEUE_SIZE = 1024
"""Received datagrams a session holds for a slow app before dropping the oldest."""

MAX_SESSION_STREAMS = 256
"""Peer streams one session may have open at the ASGI layer; more are refused with
WT_BUFFERED_STREAM_REJECTED, as the draft's stream limits would."""

DATAGRAM_OVERHEAD = 32
"""Bytes of a QUIC packet not available to a datagram payload: short header with an
8-byte connection id and 4-byte packet number, AEAD tag, DATAGRAM frame type and length,
and the quarter-stream-id prefix (measured against aioquic's packet builder)."""

_session_ids = itertools.count(1)


class SessionGone(OSError):
    """Raised from ``send`` once the session is over, as a closed WebSocket would."""


class WebTransportH3Connection(H3Connection):
    """aioquic's H3 connection advertising every WebTransport draft browsers key on."""

    def __init__(self, quic: QuicConnection, limits: FlowControlLimits) -> None:
        self._limits = limits
        super().__init__(quic, enable_webtransport=True)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.update(server_settings(self._limits, max_sessions=self._limits.max_streams_bidi))
        return settings

    def create_webtransport_stream(self, session_id: int, is_unidirectional: bool = False) -> int:
        """Open a stream, and for a bidirectional one remember that it is WebTransport.

        aioquic writes the stream header but keeps no state for a locally opened
        bidirectional stream, so the peer's replies on it would be parsed as HTTP/3
        frames and end the connection with H3_FRAME_ERROR.
        """
        stream_id = super().create_webtransport_stream(session_id, is_unidirectional)
        if not is_unidirectional:
            stream = self._stream[stream_id] = H3Stream(stream_id)
            stream.frame_type = FrameType.WEBTRANSPORT_STREAM
            stream.session_id = session_id
        return stream_id


class _Stream:
    __slots__ = ("receiving", "sending", "stream_id")

    def __init__(self, stream_id: int, *, receiving: bool, sending: bool) -> None:
        self.stream_id = stream_id
        self.receiving = receiving
        self.sending = sending


class WebTransportSessionHandler:
    """One WebTransport session: the server side of the ASGI contract.

    Events for the app wait in two queues: stream and control events in order, and
    datagrams in a bounded queue of their own so that a datagram flood can neither grow
    memory nor delay stream data, and a slow reader drops only datagrams.
    """

    def __init__(
        self, h3: WebTransportH3Protocol, stream_id: int, scope: dict[str, Any], draft: Draft
    ) -> None:
        self.h3 = h3
        self.quic: WebTransportQuicConnection = h3.quic
        self.stream_id = stream_id
        self.scope = scope
        self.draft = draft
        self.protocol = SessionProtocol()
        self.streams: dict[int, _Stream] = {}
        self.events: deque[Message] = deque()
        self.datagrams: deque[bytes] = deque()
        self.datagrams_dropped = 0
        self.waiter: asyncio.Future[None] | None = None
        self.accepted = False
        self.finished = False  # the app may send nothing more
        self.disconnected: Message | None = None  # final event, once queued
        self.app_done = False
        self.max_datagram_size = self.quic._max_datagram_size - DATAGRAM_OVERHEAD

    # --- server -> app ---------------------------------------------------------------

    def _push(self, message: Message) -> None:
        self.events.append(message)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Message:
        while True:
            if self.datagrams and (not self.events or self.events[0] is self.disconnected):
                return {"type": "webtransport.datagram.receive", "data": self.datagrams.popleft()}
            if self.events:
                message = self.events[0]
                if message is self.disconnected:
                    return message
                self.events.popleft()
                if (
                    message["type"] == "webtransport.stream.receive"
                    and message["data"]
                    and self.quic.release(message["stream"], len(message["data"]))
                ):
                    self.h3.send()
                return message
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None

    def connect(self) -> None:
        self._push({"type": "webtransport.connect"})

    def stream_data(self, event: WebTransportStreamDataReceived) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        if stream is None:
            if (
                self.protocol.state is not SessionState.CONNECTED
                and self.protocol.state is not SessionState.DRAINING
            ) or len(self.streams) >= MAX_SESSION_STREAMS:
                self._refuse(stream_id)
                return
            bidi = stream_id & 0x2 == 0
            stream = self.streams[stream_id] = _Stream(stream_id, receiving=True, sending=bidi)
        if not stream.receiving:
            return
        data = event.data
        if data:
            self.quic.hold(stream_id, len(data))
        if event.stream_ended:
            stream.receiving = False
            self._maybe_forget(stream)
        self._push(
            {
                "type": "webtransport.stream.receive",
                "stream": stream_id,
                "data": data,
                "end_stream": event.stream_ended,
            }
        )

    def _refuse(self, stream_id: int) -> None:
        code = WT_BUFFERED_STREAM_REJECTED
        self.quic.stop_stream(stream_id, code)
        if stream_id & 0x2 == 0:
            self.quic.reset_stream(stream_id, code)
        self.h3.send()

    def stream_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.receiving:
            return
        stream.receiving = False
        self._maybe_forget(stream)
        self._push(
            {
                "type": "webtransport.stream.reset",
                "stream": stream_id,
                "code": http3_to_app(error_code),
            }
        )

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.sending:
            return
        stream.sending = False
        self._maybe_forget(stream)
        self.h3.send()
        self._push(
            {
                "type": "webtransport.stream.stop_sending",
                "stream": stream_id,
                "code": http3_to_app(error_code),
            }
        )

    def datagram(self, data: bytes) -> None:
        if self.disconnected is not None or not self.accepted:
            return
        if len(self.datagrams) >= DATAGRAM_QUEUE_SIZE:
            self.datagrams.popleft()
            self.datagrams_dropped += 1
        self.datagrams.append(data)
        self._wake()

    def connect_stream_data(self, data: bytes, end_stream: bool) -> None:
        """Capsules on the CONNECT stream after the response."""
        if self.disconnected is not None:
            return
        try:
            events = self.protocol.receive_data(data, end_stream)
        except ProtocolError as exc:
            log.warning("session %s: %s", self.scope_session_id, exc)
            self.finished = True
            self.quic.reset_stream(self.stream_id, exc.http3_code)
            self.quic.stop_stream(self.stream_id, exc.http3_code)
            self._terminate(0, f"protocol error: {exc}")
            return
        for event in events:
            if isinstance(event, SessionClosed):
                if not self.finished:
                    self.finished = True
                    self.h3.connection.send_data(self.stream_id, b"", True)
                self._terminate(event.code, event.reason)
            elif isinstance(event, SessionDraining):
                self._push({"type": "webtransport.drain"})

    def connection_lost(self) -> None:
        if self.disconnected is None:
            self.protocol.connection_lost()
            self.finished = True
            self._terminate(0, "", reset=False)

    def _terminate(self, code: int, reason: str, *, reset: bool = True) -> None:
        """End the session: reset its streams (WT_SESSION_GONE) and tell the app last."""
        if reset:
            quic = self.quic
            for stream in self.streams.values():
                try:
                    if stream.sending:
                        quic.reset_stream(stream.stream_id, WT_SESSION_GONE)
                    if stream.receiving:
                        quic.stop_stream(stream.stream_id, WT_SESSION_GONE)
                except ValueError:
                    pass
            self.h3.send()
        for stream_id in self.streams:
            self.quic.forget(stream_id)
        self.streams.clear()
        self.disconnected = {"type": "webtransport.disconnect", "code": code, "reason": reason}
        self._push(self.disconnected)
        self.h3.wake_writers()
        self.h3.session_ended(self)

    def _maybe_forget(self, stream: _Stream) -> None:
        if not stream.receiving and not stream.sending:
            del self.streams[stream.stream_id]
            self.quic.forget(stream.stream_id)
            self.h3.connection._stream.pop(stream.stream_id, None)

    @property
    def scope_session_id(self) -> str:
        return str(self.scope["extensions"]["webtransport"]["session_id"])

    # --- app -> server ---------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "webtransport.stream.send":
            await self._stream_send(message)
        elif kind == "webtransport.datagram.send":
            await self._datagram_send(message["data"])
        elif kind == "webtransport.accept":
            self._accept(message)
        elif kind == "webtransport.reject":
            self._reject(message.get("status", 403), message.get("headers", ()))
        elif kind == "webtransport.close":
            if not self.accepted:
                self._reject(403, ())
            else:
                self._close(message.get("code", 0), message.get("reason", ""))
        elif kind == "webtransport.stream.open":
            self._check_open()
            bidirectional = bool(message["bidirectional"])
            stream_id = self.h3.connection.create_webtransport_stream(
                self.stream_id, is_unidirectional=not bidirectional
            )
            self.streams[stream_id] = _Stream(stream_id, receiving=bidirectional, sending=True)
            self.h3.send()
            self._push(
                {
                    "type": "webtransport.stream.opened",
                    "stream": stream_id,
                    "bidirectional": bidirectional,
                }
            )
        elif kind == "webtransport.stream.reset":
            stream = self._writable(message["stream"])
            if stream is not None:
                self.quic.reset_stream(stream.stream_id, app_to_http3(message.get("code", 0)))
                stream.sending = False
                self._maybe_forget(stream)
                self.h3.send()
        elif kind == "webtransport.stream.stop_sending":
            stream_id = message["stream"]
            self._check_open()
            code = app_to_http3(message.get("code", 0))
            stream = self.streams.get(stream_id)
            if stream is None or not stream.receiving:
                if stream is None and not self._readable_id(stream_id):
                    raise ValueError(f"stream {stream_id} cannot be read by this endpoint")
                return
            self.quic.stop_stream(stream_id, code)
            stream.receiving = False
            self.quic.forget(stream_id)
            self._maybe_forget(stream)
            self.h3.send()
        elif kind == "webtransport.drain":
            self._check_open()
            if self.protocol.state is SessionState.CONNECTED:  # draining twice is a no-op
                self.h3.connection.send_data(self.stream_id, self.protocol.drain(), False)
                self.h3.send()
        else:
            raise ValueError(f"unknown message type {kind!r}")

    def _check_open(self) -> None:
        if not self.accepted:
            raise RuntimeError("the session must be accepted before it is used")
        if self.finished:
            raise SessionGone("the WebTransport session is closed")

    def _readable_id(self, stream_id: int) -> bool:
        return not (stream_id & 0x2 and stream_id & 0x1)

    def _writable(self, stream_id: int) -> _Stream | None:
        self._check_open()
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id & 0x2 and not stream_id & 0x1:
                raise ValueError(f"stream {stream_id} is a client unidirectional stream: read-only")
            if stream_id & 0x1 and stream_id >= self.quic.get_next_available_stream_id(
                is_unidirectional=bool(stream_id & 0x2)
            ):
                raise ValueError(f"stream {stream_id} was never opened")
            return None  # finished, reset or stopped: the app learns that from events
        if not stream.sending:
            return None
        return stream

    async def _stream_send(self, message: Message) -> None:
        stream = self._writable(message["stream"])
        if stream is None:
            return
        end = message.get("end_stream", False)
        self.quic.send_stream_data(stream.stream_id, message["data"], end)
        self.h3.send()
        if end:
            stream.sending = False
            self._maybe_forget(stream)
            return
        quic_stream = self.quic._streams.get(stream.stream_id)
        while (
            quic_stream is not None
            and len(quic_stream.sender._buffer) > STREAM_HIGH_WATER
            and self.disconnected is None
            and stream.sending
        ):
            await self.h3.writable()

    async def _datagram_send(self, data: bytes) -> None:
        self._check_open()
        if len(data) > self.max_datagram_size:
            raise ValueError(
                f"datagram of {len(data)} bytes exceeds max_datagram_size {self.max_datagram_size}"
            )
        while (
            len(self.quic._datagrams_pending) >= DATAGRAM_HIGH_WATER and self.disconnected is None
        ):
            await self.h3.writable()
        self.h3.connection.send_datagram(self.stream_id, data)
        self.h3.send()

    def _accept(self, message: Message) -> None:
        if self.accepted or self.finished:
            raise SessionGone("the session was already accepted or closed")
        headers = [(b":status", b"200"), *response_headers(self.draft)]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if subprotocol not in self.scope["subprotocols"]:
                raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
            headers.append((b"wt-protocol", serialize_protocol(subprotocol)))
        headers.extend((bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ()))
        headers.extend(self.h3.config.response_headers("h3"))
        self.h3.connection.send_headers(self.stream_id, headers)
        self.protocol.accept()
        self.accepted = True
        self.h3.send()

    def _reject(self, status: int, headers: Any) -> None:
        if self.accepted or self.finished:
            raise SessionGone("the session was already accepted or closed")
        if 200 <= status < 300:
            raise ValueError(f"a rejection needs a non-2xx status, got {status}")
        self.finished = True
        self.protocol.reject()
        self.h3.connection.send_headers(
            self.stream_id,
            [
                (b":status", b"%d" % status),
                *((bytes(n).lower(), bytes(v)) for n, v in headers),
                *self.h3.config.response_headers("h3"),
            ],
            end_stream=True,
        )
        self.h3.send()
        self._terminate(0, "", reset=False)

    def _close(self, code: int, reason: str) -> None:
        if self.finished:
            raise SessionGone("the WebTransport session is already closed")
        capsule = self.protocol.close(code, reason)
        self.finished = True
        self.h3.connection.send_data(self.stream_id, capsule, True)
        self._terminate(code, reason)

    def drain_for_shutdown(self) -> None:
        """Server shutdown: ask the peer and the app to wind the session down."""
        if self.accepted and not self.finished and self.protocol.state is SessionState.CONNECTED:
            self.h3.connection.send_data(self.stream_id, self.protocol.drain(), False)
            self.h3.send()
            self._push({"type": "webtransport.drain"})

    def close_for_shutdown(self) -> None:
        """Server shutdown after the grace period: close what the app left open."""
        if self.finished or not self.h3.is_open():
            return
        if self.accepted:
            self._close(0, "server shutting down")
        else:
            self._reject(503, ())

    async def run_app(self) -> None:
        """Run the ASGI app for this session and tidy up whatever it left open."""
        failed = False
        try:
            await self.h3.app(
                self.scope,  # type: ignore[arg-type]
                self.receive,  # type: ignore[arg-type]
                self.send,  # type: ignore[arg-type]
                self.h3.sync_spawn,
                self.h3.call_soon,
            )
        except Exception:
            failed = True
            log.exception("error in WebTransport application (session %s)", self.scope_session_id)
        finally:
            self.app_done = True
            try:
                if not self.finished and self.h3.is_open():
                    if not self.accepted:
                        self._reject(500 if failed else 403, ())
                    else:
                        self._close(0, "internal server error" if failed else "")
            except Exception:  # never let one session's cleanup stop the server
                log.exception("closing session %s failed", self.scope_session_id)


class WebTransportH3Protocol(H3Protocol):
    """hypercorn's H3 protocol with WebTransport sessions beside ordinary requests."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        state: ConnectionState,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        quic: WebTransportQuicConnection,
        send: Callable[[], Awaitable[None]],
    ) -> None:
        # hypercorn's __init__ would build a second H3Connection (and a second set of
        # control streams), so the attributes are set here instead of calling it.
        self.app = app
        self.client = client
        self.config = config
        self.context = context
        self.quic: WebTransportQuicConnection = quic
        self.connection = WebTransportH3Connection(quic, FlowControlLimits())
        self.send = send
        self.server = server
        self.streams = {}
        self.task_group = task_group
        self.state = state
        self.sessions: dict[int, WebTransportSessionHandler] = {}
        self.pending_connects: list[HeadersReceived] = []
        self._writable: asyncio.Future[None] | None = None
        self._closed = False
        self.server_state: ServerState | None = getattr(config, "webtransport_state", None)
        loop = asyncio.get_running_loop()
        self.sync_spawn = lambda func, *args: loop.run_in_executor(None, func, *args)
        self.call_soon = lambda func, *args: asyncio.run_coroutine_threadsafe(
            func(*args), loop
        ).result()

    def is_open(self) -> bool:
        return not self._closed

    async def writable(self) -> None:
        """Wait until acknowledgements or credit may have freed send capacity."""
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
        await self._writable

    def wake_writers(self) -> None:
        waiter = self._writable
        if waiter is not None:
            self._writable = None
            if not waiter.done():
                waiter.set_result(None)

    def session_ended(self, session: WebTransportSessionHandler) -> None:
        self.sessions.pop(session.stream_id, None)
        if self.server_state is not None:
            self.server_state.sessions.discard(session)
            if not self.server_state.sessions:
                self.server_state.idle.set()

    async def handle(self, quic_event: QuicEvent) -> None:
        if isinstance(quic_event, StreamReset):
            self._stream_reset(quic_event.stream_id, quic_event.error_code)
        elif isinstance(quic_event, StopSendingReceived):
            session = self._session_of_stream(quic_event.stream_id)
            if session is not None:
                session.stop_sending(quic_event.stream_id, quic_event.error_code)
        elif isinstance(quic_event, ConnectionTerminated):
            self._closed = True
            for session in list(self.sessions.values()):
                session.connection_lost()
            self.wake_writers()
        for event in self.connection.handle_event(quic_event):
            if isinstance(event, WebTransportStreamDataReceived):
                session = self.sessions.get(event.session_id)
                if session is not None:
                    session.stream_data(event)
                else:
                    self._refuse_orphan(event.stream_id)
            elif isinstance(event, DatagramReceived):
                session = self.sessions.get(event.stream_id)
                if session is not None:
                    session.datagram(event.data)
            elif isinstance(event, DataReceived):
                session = self.sessions.get(event.stream_id)
                if session is not None:
                    session.connect_stream_data(event.data, event.stream_ended)
                elif event.stream_id in self.streams:
                    await self.streams[event.stream_id].handle(
                        Body(stream_id=event.stream_id, data=event.data)
                    )
                    if event.stream_ended:
                        await self.streams[event.stream_id].handle(
                            EndBody(stream_id=event.stream_id)
                        )
            elif isinstance(event, HeadersReceived):
                if event.stream_id in self.sessions:
                    continue  # trailers on a CONNECT stream carry nothing for us
                if self._is_webtransport(event):
                    self.pending_connects.append(event)
                elif not self.context.terminated.is_set():
                    await self._create_stream(event)
                    if event.stream_ended:
                        await self.streams[event.stream_id].handle(
                            EndBody(stream_id=event.stream_id)
                        )
        if self.pending_connects and self.connection.received_settings is not None:
            pending, self.pending_connects = self.pending_connects, []
            for headers_event in pending:
                self._start_session(headers_event)

    def _stream_reset(self, stream_id: int, error_code: int) -> None:
        session = self.sessions.get(stream_id)
        if session is not None:
            session.connection_lost()
            return
        session = self._session_of_stream(stream_id)
        if session is not None:
            session.stream_reset(stream_id, error_code)

    def _session_of_stream(self, stream_id: int) -> WebTransportSessionHandler | None:
        for session in self.sessions.values():
            if stream_id in session.streams:
                return session
        return None

    def _refuse_orphan(self, stream_id: int) -> None:
        """A stream for a session that is gone or never existed."""
        try:
            self.quic.stop_stream(stream_id, WT_SESSION_GONE)
            if stream_id & 0x2 == 0:
                self.quic.reset_stream(stream_id, WT_SESSION_GONE)
        except ValueError:
            pass
        self.connection._stream.pop(stream_id, None)
        self.send()

    @staticmethod
    def _is_webtransport(event: HeadersReceived) -> bool:
        method = protocol = None
        for name, value in event.headers:
            if name == b":method":
                method = value
            elif name == b":protocol":
                protocol = value
        return method == b"CONNECT" and protocol in WEBTRANSPORT_PROTOCOLS

    def _start_session(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        settings = self.connection.received_settings or {}
        draft = negotiate_draft(settings)
        if draft is None or self.context.terminated.is_set():
            status = b"400" if draft is None else b"503"
            self.connection.send_headers(
                stream_id,
                [(b":status", status), *self.config.response_headers("h3")],
                end_stream=True,
            )
            self.send()
            return
        raw_path = b"/"
        scheme = "https"
        for name, value in event.headers:
            if name == b":path":
                raw_path = value
            elif name == b":scheme":
                scheme = value.decode("ascii")
        headers = filter_pseudo_headers(event.headers)
        path, _, query_string = raw_path.partition(b"?")
        offered: list[str] = []
        for name, value in headers:
            if name == b"wt-available-protocols":
                offered = parse_available_protocols(value)
        session_id = f"{next(_session_ids)}"
        scope: dict[str, Any] = {
            "type": "webtransport",
            "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
            "http_version": "3",
            "scheme": scheme,
            "method": "CONNECT",
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": query_string,
            "root_path": self.config.root_path,
            "headers": headers,
            "client": self.client,
            "server": self.server,
            "subprotocols": offered,
            "state": self.state.copy(),
            "extensions": {
                "webtransport": {
                    "session_id": session_id,
                    "stream_id": stream_id,
                    "draft": str(draft),
                    "max_datagram_size": 0,
                    "connection": {
                        "id": self.quic.original_destination_connection_id.hex(),
                        "alpn": "h3",
                        "local": self.server,
                        "remote": self.client,
                    },
                }
            },
        }
        session = WebTransportSessionHandler(self, stream_id, scope, draft)
        scope["extensions"]["webtransport"]["max_datagram_size"] = session.max_datagram_size
        self.sessions[stream_id] = session
        if self.server_state is not None:
            self.server_state.sessions.add(session)
        session.connect()
        log.info("session %s opened: %s (%s)", session_id, scope["path"], draft)
        self.task_group.spawn(session.run_app)
        if event.stream_ended:
            session.connection_lost()
