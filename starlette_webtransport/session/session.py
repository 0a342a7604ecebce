"""One WebTransport session over the ASGI contract of ``docs/asgi-webtransport.md``: the façade.

The session speaks only ``receive``/``send`` messages, so any server implementing the
contract can host it, and so can the Python client (client role) and the in-process test
client. After ``accept()`` (server role) or ``initialize()`` (client role) a reader task
pumps ``receive()``; the sans-I/O :class:`~.demux.Demux` says what each message means, and
the reader applies that to a stream, a pending open, the datagram queue or the session
itself. Everything the app sends is a plain ``await send(...)``, so backpressure is the
server's and is never hidden behind a local buffer. The scope's facts are
:class:`~.scope.ScopeView`'s, the counters and reports :mod:`.diagnostics`', and streams
and datagrams see the session only through :class:`~.streamset.StreamSet`.

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
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar, cast

from ..asgi import (
    ContractReceive,
    ContractSend,
    DisconnectEvent,
    Receive,
    Scope,
    Send,
)
from ..protocol.errors import check_close
from . import constants
from .config import SessionConfig
from .datagram import WebTransportDatagramTransport
from .diagnostics import Diagnostics, SessionStats
from .events import Event, EventEmitter, EventType
from .exceptions import (
    SessionClosedError,
    WebTransportTimeoutError,
)
from .reader import SessionLink, SessionReader
from .scope import ASGIChannel, ConnectionInfo, ScopeView, _negotiated_protocol
from .signal import Signal
from .state import OPEN_STATES, SessionState
from .stream import (
    StreamType,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)
from .streamset import StreamSet
from .structured_factories import StructuredFactories

__all__ = ["ASGIChannel", "ConnectionInfo", "SessionStats", "WebTransportSession"]

T = TypeVar("T")

logger = logging.getLogger("starlette_webtransport.session")

_DEFAULT_CONFIG = SessionConfig()
"""Frozen, so every session without a config of its own shares one."""


class WebTransportSession(ScopeView, StructuredFactories, EventEmitter, SessionReader):
    """A WebTransport session, server or client role, built from an ASGI scope.

    Server role: ``await session.accept()`` (or ``reject()``), then use streams and
    datagrams. Client role (``scope["extensions"]["webtransport"]["role"] == "client"``):
    the session is established already; ``await session.initialize()`` starts it.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive | ContractReceive,
        send: Send | ContractSend,
        *,
        config: SessionConfig | None = None,
    ) -> None:
        ScopeView.__init__(self, scope, receive, send)
        EventEmitter.__init__(self)
        extension = self._extension
        self._session_id = str(extension["session_id"])
        self._config = config if config is not None else _DEFAULT_CONFIG
        self._state = SessionState.CONNECTING
        self._connect_received = False
        self._protocol = None if self._role == "server" else _negotiated_protocol(scope)
        self._init_reader()
        self._ready_event = Signal()
        self._closed_event = Signal()
        self._close_code: int | None = None
        self._close_reason: str | None = None
        self._close_cause: str | None = None
        self._closed_by: str | None = None
        self._diagnostics = Diagnostics(
            self,
            draft=extension.get("draft"),
        )
        self._stats = self._diagnostics.stats
        self._stream_set = StreamSet(
            SessionLink(self),
            self._diagnostics,
            local_bit=1 if self._role == "server" else 0,
            consumed_mode=bool(extension.get("consumed", False)),
        )
        self._diagnostics.watch(self._stream_set)
        self._datagrams = WebTransportDatagramTransport(
            self._stream_set, max_datagram_size=int(extension["max_datagram_size"])
        )

    def __repr__(self) -> str:
        state = self._state.value
        return f"<WebTransportSession {self.session_id} {self._role} {state} {self.path!r}>"

    async def __aenter__(self) -> WebTransportSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- the session's own properties ---------------------------------------------------

    @property
    def datagrams(self) -> WebTransportDatagramTransport:
        return self._datagrams

    @property
    def is_closed(self) -> bool:
        return self._state is SessionState.CLOSED

    @property
    def is_ready(self) -> bool:
        return self._state in OPEN_STATES

    @property
    def session_id(self) -> str:
        """Unique for the server's lifetime (``extensions["webtransport"]["session_id"]``)."""
        return self._session_id

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def config(self) -> SessionConfig:
        return self._config

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

    @property
    def closed_by(self) -> str | None:
        """Who ended the session: ``"local"``, ``"peer"`` or ``"error"``; ``None`` while open."""
        return self._closed_by

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
        if self._state in OPEN_STATES:
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
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        check_close(code, reason)
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
        stream = await self._stream_set.open(bidirectional=True, timeout=timeout)
        assert isinstance(stream, WebTransportStream)
        return stream

    async def create_unidirectional_stream(
        self,
        *,
        timeout: float | None = None,
    ) -> WebTransportSendStream:
        return await self._stream_set.open(bidirectional=False, timeout=timeout)

    async def accept_bidirectional_stream(
        self, *, timeout: float | None = None
    ) -> WebTransportStream:
        """The next bidirectional stream the peer opens (or the oldest one waiting).

        Unidirectional streams stay queued for :meth:`accept_unidirectional_stream` or
        :meth:`incoming_streams`, so a protocol that expects "one request stream, then
        anything" needs no loop over both kinds. Raises :class:`SessionClosedError` once
        the session is closed with none waiting, :class:`WebTransportTimeoutError` after
        ``timeout`` seconds."""
        stream = await self._stream_set.next_incoming(bidirectional=True, timeout=timeout)
        assert isinstance(stream, WebTransportStream)
        return stream

    async def accept_unidirectional_stream(
        self, *, timeout: float | None = None
    ) -> WebTransportReceiveStream:
        """The next unidirectional stream the peer opens; as
        :meth:`accept_bidirectional_stream`, for the other kind."""
        stream = await self._stream_set.next_incoming(bidirectional=False, timeout=timeout)
        assert not isinstance(stream, WebTransportStream)
        return stream

    async def incoming_streams(self) -> AsyncIterator[StreamType]:
        """Streams the peer opens, in arrival order, until the session closes.

        Bidirectional ones are :class:`WebTransportStream`, unidirectional ones
        :class:`WebTransportReceiveStream`."""
        async for stream in self._stream_set.all_incoming():
            yield stream

    # --- diagnostics (:mod:`.diagnostics`) ----------------------------------------------

    async def get_session_stats(self) -> dict[str, Any]:
        """:class:`SessionStats` plus the counters the reference's dataclass lacks."""
        return self._diagnostics.session_stats()

    async def get_summary(self) -> dict[str, Any]:
        """A compact view for monitoring dashboards."""
        return self._diagnostics.summary()

    async def debug_state(self) -> dict[str, Any]:
        """Everything the session knows, per stream, for debugging a stuck session."""
        return self._diagnostics.debug_state(reader_running=self._reader_running())

    async def diagnose_issues(self) -> list[str]:
        """Plain-language findings; an empty list means nothing looks wrong."""
        return self._diagnostics.issues()

    async def monitor_health(
        self, *, check_interval: float = constants.DEFAULT_HEALTH_CHECK_INTERVAL
    ) -> None:
        """Run ``diagnose_issues()`` every ``check_interval`` seconds until the session
        closes; log each finding and emit ``session.health`` with the list."""
        await self._diagnostics.monitor(check_interval, self._emit_health)

    # --- internals: lifecycle --------------------------------------------------------------

    async def _receive_connect(self) -> None:
        if self._connect_received:
            return
        message = await self._receive()
        if message.get("type") == "webtransport.connect":
            self._connect_received = True
            return
        if message.get("type") == "webtransport.disconnect":
            disconnect = cast(DisconnectEvent, message)
            await self._finish(
                disconnect.get("code", 0),
                disconnect.get("reason", ""),
                by="peer",
                cause=disconnect.get("cause"),
            )
            raise self._closed_error()
        kind = message.get("type")
        raise RuntimeError(f'Expected ASGI message "webtransport.connect", but got {kind!r}')

    async def _start(self) -> None:
        if self._stream_set.consumed_mode:
            # Before the reader takes anything: from now on, reads return credit. If the
            # session is already over, the reader gets its disconnect.
            with contextlib.suppress(OSError):
                await self._send({"type": "webtransport.credit", "returned_on": "consumed"})
        self._state = SessionState.CONNECTED
        self._stats.ready_at = time.time()
        self._reader_start = asyncio.get_running_loop().call_soon(self._start_reader)
        self._ready_event.set()
        await self._emit(EventType.SESSION_READY)

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
        self._closed_event.set()
        self._ready_event.set()
        self._datagrams._wake()
        await self._stream_set.end()
        await self._emit(EventType.SESSION_CLOSED, code=code, reason=reason, by=by)

    async def _emit_health(self, issues: list[str]) -> None:
        await self._emit(EventType.SESSION_HEALTH, issues=issues)

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
        if self._state in OPEN_STATES:
            return
        if self._state is SessionState.CONNECTING:
            start = "accept()" if self._role == "server" else "initialize()"
            raise RuntimeError(f"session {self.session_id} is not connected; call {start} first")
        raise self._closed_error()

    async def _emit(self, event_type: EventType, **data: Any) -> None:
        if self._has_handlers(event_type):
            await self._dispatch(Event(event_type, self, data))
