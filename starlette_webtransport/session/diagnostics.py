"""What a session counts about itself, and the reports built from it.

The session's own code only *counts* (:class:`Diagnostics`' ``record_*`` methods and
:class:`SessionStats`); ``get_session_stats()``, ``get_summary()``, ``debug_state()``,
``diagnose_issues()`` and ``monitor_health()`` on the session are one-line delegations to
the reports here, which read the session through its public properties only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import constants
from .state import SessionState, StreamState

if TYPE_CHECKING:
    from .config import SessionConfig
    from .datagram import WebTransportDatagramTransport
    from .stream import _StreamBase

logger = logging.getLogger("starlette_webtransport.session")


@dataclass(slots=True)
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


class PendingOpen(Protocol):
    @property
    def bidirectional(self) -> bool: ...

    @property
    def created_at(self) -> float: ...


class Observed(Protocol):
    """The session, as the reports read it: public properties only."""

    @property
    def session_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def state(self) -> SessionState: ...
    @property
    def path(self) -> str: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def subprotocols(self) -> list[str]: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str | None: ...
    @property
    def closed_by(self) -> str | None: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def config(self) -> SessionConfig: ...
    @property
    def datagrams(self) -> WebTransportDatagramTransport: ...
    async def wait_closed(self) -> None: ...


class Streams(Protocol):
    """The session's streams, as the reports read them."""

    @property
    def streams(self) -> Mapping[int, _StreamBase]: ...
    @property
    def incoming(self) -> Sequence[_StreamBase]: ...
    @property
    def pending(self) -> Sequence[PendingOpen]: ...


class Diagnostics:
    """The counters of one session and the reports on them."""

    __slots__ = (
        "_draft",
        "_max_write_wait_stream",
        "_of",
        "_paused_on",
        "_paused_since",
        "_protocol_error_log",
        "_session",
        "_slow_writes",
        "bytes_received",
        "bytes_sent",
        "datagram_bytes_received",
        "datagram_bytes_sent",
        "max_write_wait",
        "stats",
        "streams_abandoned",
        "streams_refused",
    )

    def __init__(
        self,
        session: Observed,
        *,
        draft: str | None,
    ) -> None:
        self._session = session
        self._draft = draft
        self._of: Streams | None = None
        self.stats = SessionStats(session_id=session.session_id, created_at=time.time())
        self.streams_refused = 0
        self.streams_abandoned = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.datagram_bytes_sent = 0
        self.datagram_bytes_received = 0
        self._slow_writes = 0
        self.max_write_wait = 0.0
        self._max_write_wait_stream: int | None = None
        self._protocol_error_log: tuple[str, ...] = ()  # the last ten; () costs nothing
        self._paused_on: _StreamBase | None = None
        self._paused_since: float | None = None

    def watch(self, streams: Streams) -> None:
        """The streams to report on (they count into this object, so they come after it)."""
        self._of = streams

    @property
    def _streams(self) -> Mapping[int, _StreamBase]:
        return {} if self._of is None else self._of.streams

    @property
    def _incoming(self) -> Sequence[_StreamBase]:
        return () if self._of is None else self._of.incoming

    @property
    def _pending(self) -> Sequence[PendingOpen]:
        return () if self._of is None else self._of.pending

    # --- counting ---------------------------------------------------------------------

    def record_wait(self, stream_id: int, waited: float) -> None:
        """A write waited longer than any before, or long enough to count as slow (the
        streams count their bytes in :attr:`bytes_sent` themselves: one call less per
        write)."""
        if waited >= constants.SLOW_WRITE_SECONDS:
            self._slow_writes += 1
        if waited > self.max_write_wait:
            self.max_write_wait = waited
            self._max_write_wait_stream = stream_id

    def record_protocol_error(self, message: str) -> None:
        self.stats.protocol_errors += 1
        self._protocol_error_log = (*self._protocol_error_log[-9:], message)
        logger.warning("session %s: ASGI contract violation: %s", self._session.session_id, message)

    def record_pause(self, stream: _StreamBase | None) -> None:
        """The reader stops for ``stream`` (``None``: it goes on again)."""
        self._paused_on = stream
        self._paused_since = None if stream is None else time.monotonic()

    # --- reports ----------------------------------------------------------------------

    def session_stats(self) -> dict[str, Any]:
        """:class:`SessionStats` plus the counters the reference's dataclass lacks."""
        datagrams = self._session.datagrams
        return self.stats.to_dict() | {
            "state": self._session.state.value,
            "streams_refused": self.streams_refused,
            "streams_abandoned": self.streams_abandoned,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "datagram_bytes_sent": self.datagram_bytes_sent,
            "datagram_bytes_received": self.datagram_bytes_received,
            "datagrams_dropped": datagrams.dropped,
            "slow_writes": self._slow_writes,
            "max_write_wait": self.max_write_wait,
            "pending_opens": len(self._pending),
            "incoming_queued": len(self._incoming),
        }

    def summary(self) -> dict[str, Any]:
        """A compact view for monitoring dashboards."""
        session, stats = self._session, self.stats
        return {
            "session_id": session.session_id,
            "role": session.role,
            "state": session.state.value,
            "path": session.path,
            "protocol": session.protocol,
            "uptime": stats.uptime,
            "active_streams": stats.active_streams,
            "streams_created": stats.streams_created,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "datagrams_sent": stats.datagrams_sent,
            "datagrams_received": stats.datagrams_received,
            "datagrams_dropped": session.datagrams.dropped,
            "close_code": session.close_code,
            "close_reason": session.close_reason,
            "closed_by": session.closed_by,
            "issues": len(self.issues()),
        }

    def debug_state(self, *, reader_running: bool) -> dict[str, Any]:
        """Everything the session knows, per stream, for debugging a stuck session."""
        now = time.monotonic()
        session, config, datagrams = self._session, self._session.config, self._session.datagrams
        paused_on, paused_since = self._paused_on, self._paused_since
        return {
            "session": {
                "session_id": session.session_id,
                "role": session.role,
                "state": session.state.value,
                "path": session.path,
                "draft": self._draft,
                "subprotocols": session.subprotocols,
                "protocol": session.protocol,
                "max_datagram_size": datagrams.max_datagram_size,
                "close_code": session.close_code,
                "close_reason": session.close_reason,
                "closed_by": session.closed_by,
            },
            "reader": {
                "running": reader_running,
                "paused_on_stream": None if paused_on is None else paused_on.stream_id,
                "paused_for": None if paused_since is None else now - paused_since,
            },
            "streams": [stream.debug_info() for stream in self._streams.values()],
            "incoming_queue": {
                "queued": [stream.stream_id for stream in self._incoming],
                "limit": config.max_incoming_streams,
            },
            "pending_opens": [
                {"bidirectional": p.bidirectional, "waiting_for": now - p.created_at}
                for p in self._pending
            ],
            "datagrams": {
                "queued": datagrams.queued,
                "queue_size": config.datagram_queue_size,
                "dropped": datagrams.dropped,
                "max_datagram_size": datagrams.max_datagram_size,
            },
            "config": asdict(config),
            "stats": self.session_stats(),
            "recent_protocol_errors": list(self._protocol_error_log),
        }

    def issues(self) -> list[str]:
        """Plain-language findings; an empty list means nothing looks wrong."""
        session, config = self._session, self._session.config
        now = time.monotonic()
        issues: list[str] = []
        if session.closed_by == "error":
            issues.append(
                f"the session ended because its ASGI channel failed: {session.close_reason}"
            )
        elif session.close_code:
            issues.append(
                f"the session was closed by the {session.closed_by} with code "
                f"{session.close_code} (reason {session.close_reason!r})"
            )
        if self._paused_on is not None and self._paused_since is not None:
            paused = now - self._paused_since
            if paused >= constants.READER_PAUSED_SECONDS:
                issues.append(
                    f"the reader has been paused for {paused:.1f} s on stream "
                    f"{self._paused_on.stream_id}, whose {self._paused_on.buffered} unread "
                    f"bytes exceed stream_buffer_size ({config.stream_buffer_size}); nothing "
                    "else is received until the app reads that stream"
                )
        for stream in self._streams.values():
            if stream.half_closed_at is None:
                continue
            stuck = now - stream.half_closed_at
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
        dropped = session.datagrams.dropped
        if dropped:
            issues.append(
                f"{dropped} received datagrams were dropped because the queue "
                f"of {config.datagram_queue_size} was full (the app reads datagrams too slowly)"
            )
        if self._slow_writes:
            issues.append(
                f"{self._slow_writes} stream writes waited at least "
                f"{constants.SLOW_WRITE_SECONDS} s on backpressure (longest "
                f"{self.max_write_wait:.2f} s, on stream {self._max_write_wait_stream})"
            )
        if self.streams_refused:
            issues.append(
                f"{self.streams_refused} peer streams were refused (max_streams="
                f"{config.max_streams}, max_incoming_streams={config.max_incoming_streams}); "
                "the app does not take streams from incoming_streams() fast enough"
            )
        if self.streams_abandoned:
            issues.append(
                f"{self.streams_abandoned} streams were opened after their create_*_stream() "
                "call had timed out or been cancelled, and were reset"
            )
        if self.stats.protocol_errors:
            issues.append(
                f"{self.stats.protocol_errors} events from the server broke the ASGI contract; "
                f"latest: {self._protocol_error_log[-1]}"
            )
        return issues

    async def monitor(
        self, check_interval: float, emit_health: Callable[[list[str]], Awaitable[None]]
    ) -> None:
        """``diagnose_issues()`` every ``check_interval`` seconds until the session
        closes; each finding is logged and ``session.health`` emitted with the list."""
        if not check_interval > 0:
            raise ValueError(f"check_interval must be positive, got {check_interval!r}")
        session = self._session
        while not session.is_closed:
            issues = self.issues()
            if issues:
                for issue in issues:
                    logger.warning("session %s: %s", session.session_id, issue)
                await emit_health(issues)
            try:
                async with asyncio.timeout(check_interval):
                    await session.wait_closed()
            except TimeoutError:
                continue
