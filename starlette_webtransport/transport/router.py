"""The WebTransport sessions of one QUIC connection: which session an event belongs to.

A connection may carry several sessions, and events for a session can arrive before its
CONNECT (a peer may open streams and send datagrams right after it), or after it ended.
:class:`SessionRouter` hands each event to its :class:`~.channel.SessionChannel`, holds
what arrives early for a short, bounded time (then refuses it with
WT_BUFFERED_STREAM_REJECTED, as the draft says), and refuses what is late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aioquic.h3.connection import HeadersState
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    WebTransportStreamDataReceived,
)
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StopSendingReceived,
    StreamReset,
)

from ..asgi import CloseCause
from ..protocol.errors import WT_BUFFERED_STREAM_REJECTED, WT_SESSION_GONE
from ..protocol.ids import is_client_bidirectional, is_unidirectional
from .h3 import WebTransportH3Connection
from .internals import forget_h3_stream, h3_stream, stream_discarded
from .limits import Limits
from .quic import WebTransportQuicConnection

if TYPE_CHECKING:
    from .channel import SessionChannel

log = logging.getLogger("starlette_webtransport.transport")


def refuse_stream(quic: QuicConnection, stream_id: int, code: int) -> None:
    """STOP_SENDING, and for a bidirectional peer stream RESET_STREAM as well."""
    with contextlib.suppress(ValueError):  # aioquic already discarded the finished stream
        quic.stop_stream(stream_id, code)
    if not is_unidirectional(stream_id):
        quic.reset_stream(stream_id, code)


class _Held:
    """What arrived for a session that is not open yet: its streams and datagrams."""

    __slots__ = ("datagrams", "streams", "timer")

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self.streams: dict[int, tuple[bytearray, bool]] = {}
        """Stream id -> (data so far, FIN received)."""
        self.datagrams: list[bytes] = []
        self.timer = timer


class SessionRouter:
    """The WebTransport sessions of one QUIC connection and the events that are theirs.

    aioquic's H3 layer names the session only on stream data and datagrams, and swallows
    resets and STOP_SENDING, so the router maps every live stream to its session: one
    lookup per event, however many sessions share the connection. A stream of a session
    that is over (or never existed) is refused and remembered until the peer's FIN or
    reset, so that its late data is recognised rather than parsed as HTTP/3.

    On a server, streams and datagrams may race ahead of their CONNECT, or arrive before
    the app accepted: they are held, within ``limits`` (count, bytes and time, per
    connection), and handed to the session once it opens (:meth:`session_opened`), or
    refused with WT_BUFFERED_STREAM_REJECTED when it does not.

    The owner feeds it every H3 event (:meth:`h3_event`) and then every QUIC event
    (:meth:`quic_event`), and calls :meth:`wake_writers` after each transmit.
    """

    # Slots: one of these per session (or connection), and a __dict__ doubles its size.
    __slots__ = (
        "_held",
        "_held_bytes",
        "_held_datagrams",
        "_held_streams",
        "_writable",
        "awaiting",
        "closed",
        "h3",
        "limits",
        "orphans",
        "quic",
        "sessions",
        "streams",
        "transmit_soon",
    )

    def __init__(
        self,
        quic: WebTransportQuicConnection,
        h3: WebTransportH3Connection,
        transmit_soon: Callable[[], object],
        limits: Limits | None = None,
    ) -> None:
        self.quic = quic
        self.h3 = h3
        self.transmit_soon = transmit_soon
        """Ask for a transmit at the end of this loop turn: many sends share one."""
        self.limits = limits if limits is not None else Limits()
        self.sessions: dict[int, SessionChannel] = {}
        """Open sessions by CONNECT stream id."""
        self.streams: dict[int, SessionChannel] = {}
        # Dicts used as sets: an empty dict is 64 bytes, an empty set 216, and every
        # connection has these.
        self.orphans: dict[int, None] = {}
        self.awaiting: dict[int, None] = {}
        """CONNECT streams whose headers arrived but whose session is not made yet."""
        self.closed = False
        self._writable: asyncio.Future[None] | None = None
        self._held: dict[int, _Held] = {}
        """Session id -> what waits for it to open."""
        self._held_streams: dict[int, int] = {}
        """Held stream id -> session id."""
        self._held_bytes = 0
        self._held_datagrams = 0

    def h3_event(self, event: H3Event) -> bool:
        """Hand a session its event; False when the event belongs to no session."""
        if isinstance(event, WebTransportStreamDataReceived):
            stream_id = event.stream_id
            channel = self.streams.get(stream_id)
            if channel is None and stream_id in self.orphans:
                if event.stream_ended:
                    self._forget_orphan(stream_id)
            elif channel is None and (
                stream_id in self._held_streams or self._may_open(event.session_id)
            ):
                self._hold_stream(event.session_id, stream_id, event.data, event.stream_ended)
            elif (channel := channel or self.sessions.get(event.session_id)) is not None:
                channel.stream_data(stream_id, event.data, event.stream_ended)
            else:
                self._orphan_data(stream_id, event.stream_ended, WT_SESSION_GONE)
            return True
        if isinstance(event, DatagramReceived):
            channel = self.sessions.get(event.stream_id)
            if channel is not None and channel.accepted:
                channel.datagram(event.data)
            elif self._may_open(event.stream_id):
                self._hold_datagram(event.stream_id, event.data)
            return True
        if isinstance(event, DataReceived):
            channel = self.sessions.get(event.stream_id)
            if channel is not None:
                channel.connect_stream_data(event.data, event.stream_ended)
                return True
        return False

    def quic_event(self, event: QuicEvent) -> None:
        """Resets, STOP_SENDING and the end of the connection. Call it once the H3 layer
        has seen the event: aioquic answers a reset of a request stream whose state is
        gone by resetting our side too."""
        if isinstance(event, StreamReset):
            stream_id = event.stream_id
            channel = self.streams.get(stream_id)
            if channel is not None:
                channel.stream_reset(stream_id, event.error_code)
            elif stream_id in self.sessions:
                self.sessions[stream_id].connect_reset(event.error_code)
            elif stream_id in self.orphans:
                self._forget_orphan(stream_id)
            elif stream_id in self._held_streams:
                self._drop_held_stream(stream_id)  # the app never saw it: nothing to tell
                forget_h3_stream(self.h3, stream_id)
        elif isinstance(event, StopSendingReceived):
            channel = self.streams.get(event.stream_id)
            if channel is not None:
                channel.stop_sending(event.stream_id, event.error_code)
        elif isinstance(event, ConnectionTerminated):
            self.connection_lost()

    def connection_lost(self) -> None:
        self.closed = True
        cause: CloseCause = "timeout" if self.quic.timed_out else "connection_closed"
        for channel in list(self.sessions.values()):
            channel.connection_lost(cause)
        for session_id in list(self._held):
            self._release_held(session_id)
        self.wake_writers()

    def _orphan_data(self, stream_id: int, end_stream: bool, code: int) -> None:
        refuse_stream(self.quic, stream_id, code)
        self.transmit_soon()
        if end_stream:
            forget_h3_stream(self.h3, stream_id)
        else:
            self.orphans[stream_id] = None

    def _forget_orphan(self, stream_id: int) -> None:
        self.orphans.pop(stream_id, None)
        forget_h3_stream(self.h3, stream_id)

    # --- sessions that are not open yet ---------------------------------------------

    def _may_open(self, session_id: int) -> bool:
        """Whether ``session_id`` names a server's session that may still open: its
        CONNECT has not (fully) arrived, or the app has not answered it yet."""
        if self.quic.configuration.is_client or not is_client_bidirectional(session_id):
            return False  # a client's sessions exist before anything can arrive for them
        channel = self.sessions.get(session_id)
        if channel is not None:
            return not channel.accepted and not channel.finished
        if session_id in self.awaiting:
            return True
        if stream_discarded(self.quic, session_id):
            return False
        stream = h3_stream(self.h3, session_id)
        if stream is not None:
            return stream.headers_recv_state is HeadersState.INITIAL
        # No H3 state: the CONNECT stream is not open yet, only implied by a later one,
        # or its bytes still wait in QUIC's event queue; unless it ended in both
        # directions and aioquic's H3 layer has forgotten it already.
        quic_stream = self.quic.stream_table.get(session_id)
        return quic_stream is None or not quic_stream.receiver.is_finished

    def _held_for(self, session_id: int) -> _Held:
        held = self._held.get(session_id)
        if held is None:
            timer = asyncio.get_running_loop().call_later(
                self.limits.pending_timeout, self._expire, session_id
            )
            held = self._held[session_id] = _Held(timer)
        return held

    def _hold_stream(self, session_id: int, stream_id: int, data: bytes, end: bool) -> None:
        limits = self.limits
        session_id = self._held_streams.get(stream_id, session_id)
        held = self._held.get(session_id)
        entry = held.streams.get(stream_id) if held is not None else None
        if entry is None and len(self._held_streams) >= limits.pending_streams:
            self._reject_stream(stream_id, end, f"{limits.pending_streams} streams already wait")
            return
        if self._held_bytes + len(data) > limits.pending_bytes:
            if entry is not None:
                self._drop_held_stream(stream_id)
            self._reject_stream(stream_id, end, f"{limits.pending_bytes} bytes already wait")
            return
        held = self._held_for(session_id)
        if entry is None:
            entry = (bytearray(), False)
            self._held_streams[stream_id] = session_id
        buffer = entry[0]
        buffer += data
        held.streams[stream_id] = (buffer, end)
        self._held_bytes += len(data)

    def _hold_datagram(self, session_id: int, data: bytes) -> None:
        if self._held_datagrams >= self.limits.pending_datagrams:
            return  # unreliable anyway; a flood must not grow memory
        self._held_for(session_id).datagrams.append(data)
        self._held_datagrams += 1

    def _reject_stream(self, stream_id: int, end: bool, why: str) -> None:
        log.info("early stream %d refused (WT_BUFFERED_STREAM_REJECTED): %s", stream_id, why)
        self._orphan_data(stream_id, end, WT_BUFFERED_STREAM_REJECTED)

    def _drop_held_stream(self, stream_id: int) -> tuple[bytearray, bool]:
        session_id = self._held_streams.pop(stream_id)
        buffer, end = self._held[session_id].streams.pop(stream_id)
        self._held_bytes -= len(buffer)
        return buffer, end

    def _release_held(self, session_id: int) -> _Held | None:
        held = self._held.pop(session_id, None)
        if held is None:
            return None
        held.timer.cancel()
        for stream_id, (buffer, _) in held.streams.items():
            del self._held_streams[stream_id]
            self._held_bytes -= len(buffer)
        self._held_datagrams -= len(held.datagrams)
        return held

    def _expire(self, session_id: int) -> None:
        if session_id in self._held and self._held[session_id].streams:
            log.info(
                "session %d did not open within %.1f s: its early streams are refused",
                session_id,
                self.limits.pending_timeout,
            )
        self.session_ended(session_id)

    def session_opened(self, channel: SessionChannel) -> None:
        """The app accepted: what waited for the session is its now."""
        held = self._release_held(channel.stream_id)
        if held is None:
            return
        for stream_id, (buffer, end) in held.streams.items():
            channel.stream_data(stream_id, bytes(buffer), end)
        for data in held.datagrams:
            channel.datagram(data)

    def connect_answered(self, session_id: int) -> None:
        """The CONNECT's session is made (or will not be): it awaits nothing more."""
        awaiting = self.awaiting
        awaiting.pop(session_id, None)
        if not awaiting:
            self.awaiting = {}  # an emptied dict keeps its table: 160 bytes per connection

    def session_ended(self, session_id: int) -> None:
        """The session will not open (rejected, closed, timed out): refuse its streams."""
        self.connect_answered(session_id)
        held = self._release_held(session_id)
        if held is None or self.closed:
            return
        for stream_id, (_, end) in held.streams.items():
            self._orphan_data(stream_id, end, WT_BUFFERED_STREAM_REJECTED)

    async def writable(self) -> None:
        """Wait until acknowledgements or credit may have freed send capacity."""
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
        await self._writable

    def wake_writers(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
