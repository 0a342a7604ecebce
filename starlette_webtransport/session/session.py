"""One WebTransport session over the ASGI contract of ``docs/asgi-webtransport.md``.

The session speaks only ``receive``/``send`` messages, so any server implementing the
contract can host it, and so can the Python client (client role) and the in-process test
client. After ``accept()`` (server role) or ``initialize()`` (client role) a reader task
pumps ``receive()`` and hands each event to its stream, its pending open, the datagram
queue or the session itself; everything the app sends is a plain ``await send(...)``, so
backpressure is the server's and is never hidden behind a local buffer.

With a server of spec 1.1 (``extensions.webtransport.consumed``) the receive credit of a
stream goes back as the app reads that stream (:mod:`.credit`), so the reader never stops
and one stream the app does not read holds no other stream, datagram or close back. With
a 1.0 server, credit follows the reader, so the reader pauses while one stream holds more
than ``stream_buffer_size`` unread bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

from starlette.datastructures import URL, Address, Headers, QueryParams, State

from ..asgi import Message, Receive, Scope, Send, is_unidirectional
from ..protocol.settings import parse_available_protocols
from . import constants
from .config import SessionConfig
from .credit import ConsumedCounts
from .datagram import WebTransportDatagramTransport
from .events import Event, EventEmitter, EventType
from .exceptions import (
    ProtocolError,
    SessionClosedError,
    StreamLimitError,
    WebTransportTimeoutError,
)
from .state import SessionState, StreamState
from .stream import (
    StreamType,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
    _Side,
    _StreamBase,
    check_code,
)

if TYPE_CHECKING:
    from ..structured import Schema, Serializer, StructuredDatagramTransport, StructuredStream

T = TypeVar("T")

logger = logging.getLogger("starlette_webtransport.session")

_OPEN_STATES = (SessionState.CONNECTED, SessionState.DRAINING)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Static facts about the QUIC connection the session rides on
    (``scope["extensions"]["webtransport"]["connection"]``). Several sessions may share
    one connection, and the server owns it, so this is information, not a handle."""

    id: str
    alpn: str | None
    local: tuple[str, int] | None
    remote: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class ASGIChannel:
    """What carries a session in this design, returned by ``protocol_handler``: the
    ASGI scope and the ``receive``/``send`` callables of the contract. Messages sent
    through it bypass the session's bookkeeping; it is there for introspection and
    for code that needs to know which server hosts the session."""

    scope: Scope
    receive: Receive
    send: Send
    spec_version: str | None
    draft: str | None


@dataclass
class SessionStats:
    """Counters of one session; each is incremented where its event happens."""

    session_id: str
    created_at: float
    """``time.time()`` when the session object was created."""
    ready_at: float | None = None
    """When the session became CONNECTED."""
    closed_at: float | None = None
    streams_created: int = 0
    """Streams handed to the app: opened locally or accepted from the peer (refused
    and abandoned ones are counted separately by ``get_session_stats()``)."""
    streams_closed: int = 0
    """Streams whose sides are both done (including those ended by the session's end)."""
    stream_errors: int = 0
    """RESET_STREAM and STOP_SENDING, sent or received, on the app's streams."""
    bidirectional_streams: int = 0
    unidirectional_streams: int = 0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    """Every datagram received, including those later dropped from the full queue."""
    protocol_errors: int = 0
    """Events from the server that break the ASGI contract (they are logged and ignored)."""

    @property
    def active_streams(self) -> int:
        return self.streams_created - self.streams_closed

    @property
    def uptime(self) -> float:
        """Seconds between becoming ready and closing (or now); 0 if never ready."""
        if self.ready_at is None:
            return 0.0
        end = self.closed_at if self.closed_at is not None else time.time()
        return max(0.0, end - self.ready_at)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"active_streams": self.active_streams, "uptime": self.uptime}


@dataclass(eq=False, slots=True)
class _PendingOpen:
    bidirectional: bool
    future: asyncio.Future[WebTransportSendStream]
    created_at: float = field(default_factory=time.monotonic)


class WebTransportSession(EventEmitter):
    """A WebTransport session, server or client role, built from an ASGI scope.

    Server role: ``await session.accept()`` (or ``reject()``), then use streams and
    datagrams. Client role (``scope["extensions"]["webtransport"]["role"] == "client"``):
    the session is established already; ``await session.initialize()`` starts it.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        config: SessionConfig | None = None,
    ) -> None:
        super().__init__()
        if scope.get("type") != "webtransport":
            raise ValueError(f'expected a "webtransport" scope, got {scope.get("type")!r}')
        extension = scope.get("extensions", {}).get("webtransport")
        if not isinstance(extension, Mapping):
            raise ValueError(
                'the scope has no extensions["webtransport"]; see asgi-webtransport.md'
            )
        role = extension.get("role", "server")
        if role not in ("server", "client"):
            raise ValueError(
                f'extensions["webtransport"]["role"] must be "server" or "client", got {role!r}'
            )
        self._scope = scope
        self._receive = receive
        self._send = send
        self._extension = extension
        self._role: str = role
        self._local_bit = 1 if role == "server" else 0
        self._config = config if config is not None else SessionConfig()
        self._state = SessionState.CONNECTING
        self._connect_received = False
        self._protocol = None if role == "server" else _negotiated_protocol(scope)
        self._request_state: State | None = None
        self._stats = SessionStats(session_id=str(extension["session_id"]), created_at=time.time())
        self._streams: dict[int, _StreamBase] = {}
        self._retired: OrderedDict[int, None] = OrderedDict()
        self._incoming: deque[StreamType] = deque()
        self._incoming_changed = asyncio.Event()
        self._pending: deque[_PendingOpen] = deque()
        self._datagrams = WebTransportDatagramTransport(
            self, max_datagram_size=int(extension["max_datagram_size"])
        )
        self._reader: asyncio.Task[None] | None = None
        self._ready_event = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._close_code: int | None = None
        self._close_reason: str | None = None
        self._close_cause: str | None = None
        self._closed_by: str | None = None
        self._paused_on: _StreamBase | None = None
        self._paused_since: float | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._streams_refused = 0
        self._streams_abandoned = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._datagram_bytes_sent = 0
        self._datagram_bytes_received = 0
        self._slow_writes = 0
        self._max_write_wait = 0.0
        self._max_write_wait_stream: int | None = None
        self._protocol_error_log: deque[str] = deque(maxlen=10)
        self._consumed_mode = bool(extension.get("consumed", False))
        """The server returns receive credit on ``webtransport.stream.consumed`` (1.1)."""
        self._consumed = ConsumedCounts(constants.CONSUMED_REPORT_BYTES)
        self._consumed_due = asyncio.Event()
        self._reporter: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = self._state.value
        return f"<WebTransportSession {self.session_id} {self._role} {state} {self.path!r}>"

    async def __aenter__(self) -> WebTransportSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- properties named as in the session API reference -------------------------------

    @property
    def connection(self) -> ConnectionInfo | None:
        """The QUIC connection the session rides on, or ``None`` if the server gave none."""
        info = self._extension.get("connection")
        if not isinstance(info, Mapping):
            return None
        return ConnectionInfo(
            id=str(info.get("id", "")),
            alpn=info.get("alpn"),
            local=_address(info.get("local")),
            remote=_address(info.get("remote")),
        )

    @property
    def datagrams(self) -> WebTransportDatagramTransport:
        return self._datagrams

    @property
    def headers(self) -> Headers:
        """Server role: the CONNECT request's headers. Client role: the response's."""
        return Headers(scope=self._scope)

    @property
    def is_closed(self) -> bool:
        return self._state is SessionState.CLOSED

    @property
    def is_ready(self) -> bool:
        return self._state in _OPEN_STATES

    @property
    def path(self) -> str:
        return str(self._scope["path"])

    @property
    def protocol_handler(self) -> ASGIChannel:
        return ASGIChannel(
            scope=self._scope,
            receive=self._receive,
            send=self._send,
            spec_version=self._scope.get("asgi", {}).get("spec_version"),
            draft=self._extension.get("draft"),
        )

    @property
    def session_id(self) -> str:
        """Unique for the server's lifetime (``extensions["webtransport"]["session_id"]``)."""
        return self._stats.session_id

    @property
    def state(self) -> SessionState:
        return self._state

    # --- Starlette-style properties ------------------------------------------------------

    @property
    def scope(self) -> Scope:
        return self._scope

    @property
    def role(self) -> str:
        """``"server"`` or ``"client"``: who we are on the QUIC connection."""
        return self._role

    @property
    def config(self) -> SessionConfig:
        return self._config

    @property
    def url(self) -> URL:
        return URL(scope=self._scope)

    @property
    def path_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self._scope.get("path_params", {})
        return params

    @property
    def query_params(self) -> QueryParams:
        return QueryParams(self._scope["query_string"])

    @property
    def client(self) -> Address | None:
        """The peer's address (``scope["client"]``)."""
        client = self._scope.get("client")
        return None if client is None else Address(client[0], client[1])

    @property
    def request_state(self) -> State:
        """Starlette's ``request.state`` for this session (``scope["state"]``, filled by the
        server from the lifespan state); named so because ``state`` is the SessionState."""
        if self._request_state is None:
            self._request_state = State(self._scope.setdefault("state", {}))
        return self._request_state

    @property
    def subprotocols(self) -> list[str]:
        """The protocols the client offered (WT-Available-Protocols), in order."""
        return list(self._scope.get("subprotocols", []))

    @property
    def protocol(self) -> str | None:
        """The negotiated protocol (WT-Protocol): the one passed to ``accept()`` in the
        server role, the one in the response headers in the client role."""
        return self._protocol

    @property
    def close_code(self) -> int | None:
        """The session's close code once closed (ours or the peer's); ``None`` before, or
        when it ended without one (rejection, failure of the ASGI channel)."""
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    @property
    def close_cause(self) -> str | None:
        """How the session ended, once closed: a ``CloseCause`` of the ASGI contract
        (``"peer_closed"``, ``"peer_reset"``, ``"connection_closed"``, ``"timeout"``,
        ``"shutdown"``, ...; docs/session-api.md), so that a peer that vanished
        (``"timeout"``) is told apart from one that said goodbye. ``None`` while open, or
        when the server does not say."""
        return self._close_cause

    # --- lifecycle -----------------------------------------------------------------------

    async def accept(
        self, protocol: str | None = None, headers: Iterable[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Accept the session (server role), receiving ``webtransport.connect`` first if
        needed, and start the reader. ``protocol`` must be one the client offered."""
        if self._role != "server":
            raise RuntimeError("only a server-role session is accepted; call initialize()")
        if self._state is not SessionState.CONNECTING:
            raise RuntimeError(f'Cannot call "accept" on a session in state {self._state.value!r}')
        if protocol is not None and protocol not in self.subprotocols:
            raise ValueError(f"protocol {protocol!r} was not offered; offered: {self.subprotocols}")
        await self._receive_connect()
        await self._send(
            {"type": "webtransport.accept", "subprotocol": protocol, "headers": list(headers or [])}
        )
        self._protocol = protocol
        await self._start()

    async def reject(
        self, status: int = 403, headers: Iterable[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Answer the CONNECT request with a non-2xx ``status`` (server role, before accept)."""
        if self._role != "server":
            raise RuntimeError("only a server-role session can be rejected")
        if self._state is not SessionState.CONNECTING:
            raise RuntimeError(f'Cannot call "reject" on a session in state {self._state.value!r}')
        if not isinstance(status, int) or not 100 <= status <= 599 or 200 <= status <= 299:
            raise ValueError(f"reject() needs a non-2xx HTTP status, got {status!r}")
        await self._send(
            {"type": "webtransport.reject", "status": status, "headers": list(headers or [])}
        )
        await self._finish(None, "", by="local", cause="rejected")

    async def initialize(self) -> None:
        """Start the session's reader. Client role: the session was established by the
        client, and this makes it CONNECTED. Server role: ``accept()`` does it, so this is
        a no-op afterwards and an error before."""
        if self._state in _OPEN_STATES:
            return
        if self._state is not SessionState.CONNECTING:
            raise self._closed_error()
        if self._role == "server":
            raise RuntimeError('a server-role session is started by "accept()"')
        await self._start()

    async def ready(self, *, timeout: float = constants.DEFAULT_READY_TIMEOUT) -> None:
        """Wait until the session is CONNECTED (or DRAINING)."""
        if not self.is_ready:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready_event.wait()
            except TimeoutError:
                raise WebTransportTimeoutError(
                    f"session {self.session_id} not ready within {timeout} s"
                ) from None
        if not self.is_ready:
            raise self._closed_error()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    async def close(
        self, *, code: int = 0, reason: str = "", close_connection: bool = True
    ) -> None:
        """Close the session with WT_CLOSE_SESSION(``code``, ``reason``) and end its streams.

        Before ``accept()`` this rejects the session with 403, as the contract says.
        ``close_connection`` is accepted for API compatibility only: the QUIC connection
        belongs to the server and may carry other sessions, and the contract gives a
        session no way to close it (see docs/session-api.md).
        """
        check_code(code)
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        if len(reason.encode()) > constants.MAX_CLOSE_REASON_BYTES:
            raise ValueError(
                f"the close reason is {len(reason.encode())} bytes of UTF-8; "
                f"the limit is {constants.MAX_CLOSE_REASON_BYTES}"
            )
        if self._state is SessionState.CLOSED:
            return
        if self._state is SessionState.CLOSING:
            await self._closed_event.wait()
            return
        rejecting = self._state is SessionState.CONNECTING  # the contract: close = 403
        self._state = SessionState.CLOSING
        try:
            await self._send({"type": "webtransport.close", "code": code, "reason": reason})
        except OSError:
            pass  # the server already ended the session; closing is done either way
        finally:
            await self._stop_reader()
            if rejecting:  # a rejection has no close code, as after reject()
                await self._finish(None, "", by="local", cause="rejected")
            else:
                await self._finish(code, reason, by="local", cause="closed")

    # --- streams and datagrams -----------------------------------------------------------

    async def create_bidirectional_stream(
        self,
        *,
        timeout: float | None = None,
    ) -> WebTransportStream:
        stream = await self._open_stream(bidirectional=True, open_timeout=timeout)
        assert isinstance(stream, WebTransportStream)
        return stream

    async def create_unidirectional_stream(
        self,
        *,
        timeout: float | None = None,
    ) -> WebTransportSendStream:
        return await self._open_stream(bidirectional=False, open_timeout=timeout)

    @overload
    async def create_structured_stream(
        self, *, schema: Schema[T], timeout: float | None = None
    ) -> StructuredStream[T]: ...

    @overload
    async def create_structured_stream(
        self,
        *,
        serializer: Serializer,
        registry: Mapping[int, type[T]],
        timeout: float | None = None,
    ) -> StructuredStream[T]: ...

    async def create_structured_stream(
        self,
        *,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
        timeout: float | None = None,
        schema: Schema[T] | None = None,
    ) -> StructuredStream[T]:
        """A new bidirectional stream carrying typed messages (``structured``): give a
        shared ``schema``, or the ``serializer`` and ``registry`` to build one from."""
        from ..structured import StructuredStream
        from ..structured.schema import resolve_schema

        resolved = resolve_schema(schema, serializer, registry)  # bad arguments open nothing
        stream = await self.create_bidirectional_stream(timeout=timeout)
        return StructuredStream(stream, schema=resolved)

    @overload
    async def create_structured_datagram_transport(
        self, *, schema: Schema[T]
    ) -> StructuredDatagramTransport[T]: ...

    @overload
    async def create_structured_datagram_transport(
        self, *, serializer: Serializer, registry: Mapping[int, type[T]]
    ) -> StructuredDatagramTransport[T]: ...

    async def create_structured_datagram_transport(
        self,
        *,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
        schema: Schema[T] | None = None,
    ) -> StructuredDatagramTransport[T]:
        """Typed messages over this session's datagrams (``structured``), from a shared
        ``schema`` or a ``serializer`` and ``registry``."""
        from ..structured import StructuredDatagramTransport
        from ..structured.schema import resolve_schema

        return StructuredDatagramTransport(
            self._datagrams, schema=resolve_schema(schema, serializer, registry)
        )

    async def accept_bidirectional_stream(
        self, *, timeout: float | None = None
    ) -> WebTransportStream:
        """The next bidirectional stream the peer opens (or the oldest one waiting).

        Unidirectional streams stay queued for :meth:`accept_unidirectional_stream` or
        :meth:`incoming_streams`, so a protocol that expects "one request stream, then
        anything" needs no loop over both kinds. Raises :class:`SessionClosedError` once
        the session is closed with none waiting, :class:`WebTransportTimeoutError` after
        ``timeout`` seconds."""
        stream = await self._next_incoming(bidirectional=True, timeout=timeout)
        assert isinstance(stream, WebTransportStream)
        return stream

    async def accept_unidirectional_stream(
        self, *, timeout: float | None = None
    ) -> WebTransportReceiveStream:
        """The next unidirectional stream the peer opens; as
        :meth:`accept_bidirectional_stream`, for the other kind."""
        stream = await self._next_incoming(bidirectional=False, timeout=timeout)
        assert not isinstance(stream, WebTransportStream)
        return stream

    async def _next_incoming(self, *, bidirectional: bool, timeout: float | None) -> StreamType:
        kind = "bidirectional" if bidirectional else "unidirectional"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for stream in self._incoming:
                        if is_unidirectional(stream.stream_id) != bidirectional:
                            self._incoming.remove(stream)
                            return stream
                    if self._state is SessionState.CLOSED:
                        raise self._closed_error()
                    self._incoming_changed.clear()
                    await self._incoming_changed.wait()
        except TimeoutError:
            raise WebTransportTimeoutError(
                f"no {kind} stream from the peer of session {self.session_id} within {timeout} s"
            ) from None

    async def incoming_streams(self) -> AsyncIterator[StreamType]:
        """Streams the peer opens, in arrival order, until the session closes.

        Bidirectional ones are :class:`WebTransportStream`, unidirectional ones
        :class:`WebTransportReceiveStream`."""
        while True:
            if self._incoming:
                yield self._incoming.popleft()
            elif self._state is SessionState.CLOSED:
                return
            else:
                self._incoming_changed.clear()
                await self._incoming_changed.wait()

    # --- diagnostics ---------------------------------------------------------------------

    async def get_session_stats(self) -> dict[str, Any]:
        """:class:`SessionStats` plus the counters the reference's dataclass lacks."""
        return self._stats.to_dict() | {
            "state": self._state.value,
            "streams_refused": self._streams_refused,
            "streams_abandoned": self._streams_abandoned,
            "bytes_sent": self._bytes_sent,
            "bytes_received": self._bytes_received,
            "datagram_bytes_sent": self._datagram_bytes_sent,
            "datagram_bytes_received": self._datagram_bytes_received,
            "datagrams_dropped": self._datagrams.dropped,
            "slow_writes": self._slow_writes,
            "max_write_wait": self._max_write_wait,
            "pending_opens": len(self._pending),
            "incoming_queued": len(self._incoming),
        }

    async def get_summary(self) -> dict[str, Any]:
        """A compact view for monitoring dashboards."""
        return {
            "session_id": self.session_id,
            "role": self._role,
            "state": self._state.value,
            "path": self.path,
            "protocol": self._protocol,
            "uptime": self._stats.uptime,
            "active_streams": self._stats.active_streams,
            "streams_created": self._stats.streams_created,
            "bytes_sent": self._bytes_sent,
            "bytes_received": self._bytes_received,
            "datagrams_sent": self._stats.datagrams_sent,
            "datagrams_received": self._stats.datagrams_received,
            "datagrams_dropped": self._datagrams.dropped,
            "close_code": self._close_code,
            "close_reason": self._close_reason,
            "closed_by": self._closed_by,
            "issues": len(await self.diagnose_issues()),
        }

    async def debug_state(self) -> dict[str, Any]:
        """Everything the session knows, per stream, for debugging a stuck session."""
        now = time.monotonic()
        return {
            "session": {
                "session_id": self.session_id,
                "role": self._role,
                "state": self._state.value,
                "path": self.path,
                "draft": self._extension.get("draft"),
                "subprotocols": self.subprotocols,
                "protocol": self._protocol,
                "max_datagram_size": self._datagrams.max_datagram_size,
                "close_code": self._close_code,
                "close_reason": self._close_reason,
                "closed_by": self._closed_by,
            },
            "reader": {
                "running": self._reader is not None and not self._reader.done(),
                "paused_on_stream": None if self._paused_on is None else self._paused_on.stream_id,
                "paused_for": None if self._paused_since is None else now - self._paused_since,
            },
            "streams": [stream._debug() for stream in self._streams.values()],
            "incoming_queue": {
                "queued": [stream.stream_id for stream in self._incoming],
                "limit": self._config.max_incoming_streams,
            },
            "pending_opens": [
                {"bidirectional": p.bidirectional, "waiting_for": now - p.created_at}
                for p in self._pending
            ],
            "datagrams": {
                "queued": self._datagrams.queued,
                "queue_size": self._config.datagram_queue_size,
                "dropped": self._datagrams.dropped,
                "max_datagram_size": self._datagrams.max_datagram_size,
            },
            "config": asdict(self._config),
            "stats": await self.get_session_stats(),
            "recent_protocol_errors": list(self._protocol_error_log),
        }

    async def diagnose_issues(self) -> list[str]:
        """Plain-language findings; an empty list means nothing looks wrong."""
        issues: list[str] = []
        now = time.monotonic()
        config = self._config
        if self._closed_by == "error":
            issues.append(
                f"the session ended because its ASGI channel failed: {self._close_reason}"
            )
        elif self._close_code:
            issues.append(
                f"the session was closed by the {self._closed_by} with code {self._close_code} "
                f"(reason {self._close_reason!r})"
            )
        if self._paused_on is not None and self._paused_since is not None:
            paused = now - self._paused_since
            if paused >= constants.READER_PAUSED_SECONDS:
                issues.append(
                    f"the reader has been paused for {paused:.1f} s on stream "
                    f"{self._paused_on.stream_id}, whose {len(self._paused_on._buffer)} unread "
                    f"bytes exceed stream_buffer_size ({config.stream_buffer_size}); nothing "
                    "else is received until the app reads that stream"
                )
        for stream in self._streams.values():
            if stream._half_closed_at is None:
                continue
            stuck = now - stream._half_closed_at
            if stuck >= constants.STUCK_HALF_CLOSED_SECONDS:
                waiting = (
                    "the peer to finish its side"
                    if stream.state is StreamState.HALF_CLOSED_LOCAL
                    else "the app to close its side"
                )
                issues.append(
                    f"stream {stream.stream_id} has been {stream.state.value} for {stuck:.1f} s "
                    f"(waiting for {waiting})"
                )
        for pending in self._pending:
            waited = now - pending.created_at
            if waited >= constants.STUCK_OPEN_SECONDS:
                kind = "bidirectional" if pending.bidirectional else "unidirectional"
                issues.append(
                    f"a {kind} stream open has waited {waited:.1f} s for the server "
                    "(the peer's stream limit may be reached)"
                )
        if self._datagrams.dropped:
            issues.append(
                f"{self._datagrams.dropped} received datagrams were dropped because the queue "
                f"of {config.datagram_queue_size} was full (the app reads datagrams too slowly)"
            )
        if self._slow_writes:
            issues.append(
                f"{self._slow_writes} stream writes waited at least "
                f"{constants.SLOW_WRITE_SECONDS} s on backpressure (longest "
                f"{self._max_write_wait:.2f} s, on stream {self._max_write_wait_stream})"
            )
        if self._streams_refused:
            issues.append(
                f"{self._streams_refused} peer streams were refused (max_streams="
                f"{config.max_streams}, max_incoming_streams={config.max_incoming_streams}); "
                "the app does not take streams from incoming_streams() fast enough"
            )
        if self._streams_abandoned:
            issues.append(
                f"{self._streams_abandoned} streams were opened after their create_*_stream() "
                "call had timed out or been cancelled, and were reset"
            )
        if self._stats.protocol_errors:
            issues.append(
                f"{self._stats.protocol_errors} events from the server broke the ASGI contract; "
                f"latest: {self._protocol_error_log[-1]}"
            )
        return issues

    async def monitor_health(
        self, *, check_interval: float = constants.DEFAULT_HEALTH_CHECK_INTERVAL
    ) -> None:
        """Run ``diagnose_issues()`` every ``check_interval`` seconds until the session
        closes; log each finding and emit ``session.health`` with the list."""
        if not check_interval > 0:
            raise ValueError(f"check_interval must be positive, got {check_interval!r}")
        while not self.is_closed:
            issues = await self.diagnose_issues()
            if issues:
                for issue in issues:
                    logger.warning("session %s: %s", self.session_id, issue)
                await self._emit(EventType.SESSION_HEALTH, issues=issues)
            try:
                async with asyncio.timeout(check_interval):
                    await self._closed_event.wait()
            except TimeoutError:
                continue

    # --- internals: lifecycle --------------------------------------------------------------

    async def _receive_connect(self) -> None:
        if self._connect_received:
            return
        message = await self._receive()
        kind = message.get("type")
        if kind == "webtransport.disconnect":
            await self._finish(
                message.get("code", 0),
                message.get("reason", ""),
                by="peer",
                cause=message.get("cause"),
            )
            raise self._closed_error()
        if kind != "webtransport.connect":
            raise RuntimeError(f'Expected ASGI message "webtransport.connect", but got {kind!r}')
        self._connect_received = True

    async def _start(self) -> None:
        if self._consumed_mode:
            # Before the reader takes anything: from now on, reads return credit. If the
            # session is already over, the reader gets its disconnect.
            with contextlib.suppress(OSError):
                await self._send({"type": "webtransport.credit", "returned_on": "consumed"})
            self._reporter = asyncio.create_task(
                self._report_loop(), name=f"webtransport-session-{self.session_id}-credit"
            )
        self._state = SessionState.CONNECTED
        self._stats.ready_at = time.time()
        self._reader = asyncio.create_task(
            self._read_loop(), name=f"webtransport-session-{self.session_id}"
        )
        self._ready_event.set()
        await self._emit(EventType.SESSION_READY)

    async def _stop_reader(self) -> None:
        tasks = {
            task
            for task in (self._reader, self._reporter)
            if task is not None and not task.done() and task is not asyncio.current_task()
        }
        for task in tasks:  # both before any wait: the reader must take nothing more
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _finish(
        self, code: int | None, reason: str, *, by: str, cause: str | None = None
    ) -> None:
        """Mark the session closed and wake everyone waiting on it (once)."""
        if self._closed_event.is_set():
            return
        self._state = SessionState.CLOSED
        self._close_code = code
        self._close_reason = reason
        self._close_cause = cause
        self._closed_by = by
        self._stats.closed_at = time.time()
        if self._reporter is not None:
            self._reporter.cancel()  # the server returns all credit of an ended session
        self._consumed.clear()
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(self._closed_error())
        self._pending.clear()
        streams = list(self._streams.values())
        for stream in streams:
            stream._abort()
        self._closed_event.set()
        self._ready_event.set()
        self._incoming_changed.set()
        self._datagrams._wake()
        for stream in streams:
            await self._stream_changed(stream)
        await self._emit(EventType.SESSION_CLOSED, code=code, reason=reason, by=by)

    def _closed_error(self) -> SessionClosedError:
        if self._closed_by is None:
            return SessionClosedError(f"session {self.session_id} is closing")
        return SessionClosedError(
            f"session {self.session_id} is closed (by the {self._closed_by}, code "
            f"{self._close_code}, reason {self._close_reason!r})",
            code=self._close_code,
            reason=self._close_reason or "",
        )

    def _check_open(self) -> None:
        if self._state in _OPEN_STATES:
            return
        if self._state is SessionState.CONNECTING:
            start = "accept()" if self._role == "server" else "initialize()"
            raise RuntimeError(f"session {self.session_id} is not connected; call {start} first")
        raise self._closed_error()

    async def _send_stream_message(self, message: Message) -> None:
        """Send a post-accept message; a server that says the session is gone (OSError)
        becomes :class:`SessionClosedError`."""
        self._check_open()
        try:
            await self._send(message)
        except OSError as exc:
            raise self._closed_error() from exc

    async def _emit(self, event_type: EventType, **data: Any) -> None:
        if self._has_handlers(event_type):
            await self._dispatch(Event(event_type, self, data))

    # --- internals: streams ----------------------------------------------------------------

    async def _open_stream(
        self, *, bidirectional: bool, open_timeout: float | None
    ) -> WebTransportSendStream:
        self._check_open()
        if len(self._streams) + len(self._pending) >= self._config.max_streams:
            raise StreamLimitError(
                f"session {self.session_id} has {len(self._streams)} open streams and "
                f"{len(self._pending)} pending opens; max_streams is {self._config.max_streams}"
            )
        timeout = self._config.stream_open_timeout if open_timeout is None else open_timeout
        pending = _PendingOpen(bidirectional, asyncio.get_running_loop().create_future())
        # Queued before sending: the reply may be processed before send() returns.
        self._pending.append(pending)
        try:
            await self._send_stream_message(
                {"type": "webtransport.stream.open", "bidirectional": bidirectional}
            )
        except BaseException:
            if pending in self._pending:
                self._pending.remove(pending)
            raise
        future = pending.future
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()  # the reply raced the timeout: the open succeeded
            future.cancel()  # the reader resets the stream when the reply comes
            raise WebTransportTimeoutError(
                f"the server did not open a stream within {timeout} s "
                "(the peer's stream limit may be reached)"
            ) from None
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
            elif not future.cancelled() and future.exception() is None:
                self._spawn(self._abandon_stream(future.result()))
            raise

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abandon_stream(self, stream: WebTransportSendStream) -> None:
        self._streams_abandoned += 1
        with contextlib.suppress(SessionClosedError):
            await stream.abort(constants.STREAM_ABANDONED_CODE)

    def _register(self, stream: _StreamBase) -> None:
        self._streams[stream.stream_id] = stream
        self._stats.streams_created += 1
        if is_unidirectional(stream.stream_id):
            self._stats.unidirectional_streams += 1
        else:
            self._stats.bidirectional_streams += 1

    def _retire(self, stream_id: int) -> None:
        self._retired[stream_id] = None
        if len(self._retired) > constants.RETIRED_STREAM_MEMORY:
            self._retired.popitem(last=False)

    async def _stream_changed(self, stream: _StreamBase) -> None:
        state = stream.state
        if state is StreamState.CLOSED:
            if stream._closed_counted:
                return
            stream._closed_counted = True
            self._streams.pop(stream.stream_id, None)
            self._retire(stream.stream_id)
            self._stats.streams_closed += 1
            await self._emit(EventType.STREAM_CLOSED, stream=stream)
        elif state is not StreamState.OPEN and stream._half_closed_at is None:
            stream._half_closed_at = time.monotonic()

    def _record_write(self, stream: _StreamBase, size: int, waited: float) -> None:
        self._bytes_sent += size
        if waited >= constants.SLOW_WRITE_SECONDS:
            self._slow_writes += 1
        if waited > self._max_write_wait:
            self._max_write_wait = waited
            self._max_write_wait_stream = stream.stream_id

    def _is_local(self, stream_id: int) -> bool:
        return stream_id & 0x1 == self._local_bit

    def _protocol_error(self, message: str) -> None:
        self._stats.protocol_errors += 1
        self._protocol_error_log.append(message)
        logger.warning("session %s: ASGI contract violation: %s", self.session_id, message)

    # --- internals: receive credit (spec 1.1) -----------------------------------------------

    def _read_from(self, stream: _StreamBase, size: int, *, flush: bool = False) -> None:
        """The app read (or dropped) ``size`` bytes of ``stream``; ``flush`` reports all
        it read so far now (it is about to wait, or has read the stream to its end)."""
        if not self._consumed_mode:
            return
        due = self._consumed.taken(stream.stream_id, size) if size else False
        if (flush and self._consumed.flush(stream.stream_id)) or due:
            self._consumed_due.set()

    def _unread(self, stream: _StreamBase, size: int) -> None:
        """``size`` bytes the app took went back to ``stream``'s buffer."""
        if self._consumed_mode:
            self._consumed.restored(stream.stream_id, size)

    async def _report_loop(self) -> None:
        """Send the due ``webtransport.stream.consumed`` reports. A task of its own, so
        that reads never wait on ``send`` and a cancelled read loses nothing."""
        while True:
            await self._consumed_due.wait()
            self._consumed_due.clear()
            for stream_id, size in self._consumed.due():
                try:
                    await self._send(
                        {"type": "webtransport.stream.consumed", "stream": stream_id, "bytes": size}
                    )
                except OSError:
                    return  # the session is over: the server returned everything itself

    # --- internals: the reader -----------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while self._state is not SessionState.CLOSED:
                message = await self._receive()
                await self._handle(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("session %s: the ASGI receive channel failed", self.session_id)
            await self._finish(None, repr(exc), by="error", cause="error")

    async def _handle(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "webtransport.stream.receive":
            await self._on_stream_data(
                message["stream"], message.get("data", b""), message.get("end_stream", False)
            )
        elif kind == "webtransport.datagram.receive":
            await self._on_datagram(message["data"])
        elif kind == "webtransport.stream.opened":
            await self._on_stream_opened(message["stream"], message["bidirectional"])
        elif kind == "webtransport.stream.reset":
            await self._on_stream_reset(message["stream"], message.get("code"))
        elif kind == "webtransport.stream.stop_sending":
            await self._on_stop_sending(message["stream"], message.get("code"))
        elif kind == "webtransport.drain":
            if self._state is SessionState.CONNECTED:
                self._state = SessionState.DRAINING
                await self._emit(EventType.SESSION_DRAINING)
        elif kind == "webtransport.disconnect":
            await self._finish(
                message.get("code", 0),
                message.get("reason", ""),
                by="peer",
                cause=message.get("cause"),
            )
        else:
            self._protocol_error(f"unexpected ASGI message {kind!r}")

    async def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id in self._retired:
                return  # in flight when the stream ended or was refused
            if self._is_local(stream_id):
                self._protocol_error(f"data for stream {stream_id}, which we never opened")
                return
            stream = await self._accept_peer_stream(stream_id)
            if stream is None:
                return
        side = stream._recv
        if side is None:
            self._protocol_error(f"data for our send-only stream {stream_id}")
            return
        if side is _Side.STOPPED:
            return  # we sent STOP_SENDING; late data is discarded
        if side is not _Side.OPEN:
            self._protocol_error(f"data for stream {stream_id} after its {side.value}")
            return
        stream._feed(data, end_stream)
        self._bytes_received += len(data)
        if end_stream:
            await self._stream_changed(stream)
        if not self._consumed_mode and not stream._space.is_set():
            # The memory bound of a 1.0 server, whose credit follows this reader: pull
            # nothing more until the app reads this stream.
            self._paused_on = stream
            self._paused_since = time.monotonic()
            try:
                await stream._space.wait()
            finally:
                self._paused_on = None
                self._paused_since = None

    async def _accept_peer_stream(self, stream_id: int) -> _StreamBase | None:
        bidirectional = not is_unidirectional(stream_id)
        config = self._config
        if (
            len(self._streams) + len(self._pending) >= config.max_streams
            or len(self._incoming) >= config.max_incoming_streams
        ):
            await self._refuse(stream_id, bidirectional)
            return None
        stream: WebTransportStream | WebTransportReceiveStream
        if bidirectional:
            stream = WebTransportStream(self, stream_id)
        else:
            stream = WebTransportReceiveStream(self, stream_id)
        self._register(stream)
        self._incoming.append(stream)
        self._incoming_changed.set()
        await self._emit(EventType.STREAM_OPENED, stream=stream, initiator="peer")
        return stream

    async def _refuse(self, stream_id: int, bidirectional: bool) -> None:
        self._retire(stream_id)
        self._streams_refused += 1
        code = constants.STREAM_REFUSED_CODE
        try:
            await self._send(
                {"type": "webtransport.stream.stop_sending", "stream": stream_id, "code": code}
            )
            if bidirectional:
                await self._send(
                    {"type": "webtransport.stream.reset", "stream": stream_id, "code": code}
                )
        except OSError:
            return
        await self._emit(EventType.STREAM_REFUSED, stream_id=stream_id)

    async def _on_stream_opened(self, stream_id: int, bidirectional: bool) -> None:
        if not self._pending:
            self._protocol_error(f"stream.opened for stream {stream_id} without a pending open")
            return
        pending = self._pending.popleft()
        if (
            pending.bidirectional != bidirectional
            or is_unidirectional(stream_id) == bidirectional
            or not self._is_local(stream_id)
        ):
            self._protocol_error(
                f"stream.opened reply (stream {stream_id}, bidirectional={bidirectional}) does "
                f"not match the oldest open (bidirectional={pending.bidirectional})"
            )
            if not pending.future.done():
                pending.future.set_exception(
                    ProtocolError(f"the server answered the stream open with stream {stream_id}")
                )
            return
        if pending.future.done():  # the create_*_stream() call gave up
            self._retire(stream_id)
            self._streams_abandoned += 1
            code = constants.STREAM_ABANDONED_CODE
            try:
                await self._send(
                    {"type": "webtransport.stream.reset", "stream": stream_id, "code": code}
                )
                if bidirectional:
                    await self._send(
                        {
                            "type": "webtransport.stream.stop_sending",
                            "stream": stream_id,
                            "code": code,
                        }
                    )
            except OSError:
                pass
            return
        stream = (
            WebTransportStream(self, stream_id)
            if bidirectional
            else WebTransportSendStream(self, stream_id)
        )
        self._register(stream)
        pending.future.set_result(stream)
        await self._emit(EventType.STREAM_OPENED, stream=stream, initiator="local")

    async def _on_stream_reset(self, stream_id: int, code: int | None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # ended, refused, or reset before it was announced: nothing to tell
        if stream._recv is None:
            self._protocol_error(f"reset of our send-only stream {stream_id}")
            return
        if stream._recv is not _Side.OPEN:
            return  # e.g. the peer's answer to our STOP_SENDING
        stream._peer_reset(code)
        self._stats.stream_errors += 1
        await self._emit(EventType.STREAM_RESET, stream=stream, code=code)
        await self._stream_changed(stream)

    async def _on_stop_sending(self, stream_id: int, code: int | None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream._send is None:
            self._protocol_error(f"STOP_SENDING for stream {stream_id}, which we cannot write")
            return
        if stream._peer_stopped(code):
            self._stats.stream_errors += 1
            await self._emit(EventType.STREAM_STOPPED, stream=stream, code=code)
            await self._stream_changed(stream)

    async def _on_datagram(self, data: bytes) -> None:
        self._stats.datagrams_received += 1
        self._datagram_bytes_received += len(data)
        dropped = self._datagrams._deliver(data)
        await self._emit(EventType.DATAGRAM_RECEIVED, size=len(data))
        if dropped is not None:
            await self._emit(EventType.DATAGRAM_DROPPED, size=len(dropped))


def _address(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    host, port = value
    return str(host), int(port)


def _negotiated_protocol(scope: Scope) -> str | None:
    """Client role: the WT-Protocol response header, a Structured Field String."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"wt-protocol":
            protocols = parse_available_protocols(value)
            return protocols[0] if len(protocols) == 1 else None
    return None
