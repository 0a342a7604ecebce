"""aioquic's QUIC connection with credit that follows what applications consume.

aioquic grants a peer new credit as soon as data or streams *arrive*: it doubles a receive
window once half of it was received, and lets the peer open a new stream as soon as an
earlier one finished arriving. Queued in a session for an application that does not read,
both pile up without bound. :class:`WebTransportQuicConnection` grants credit only for what
the application has taken, so unread data never exceeds the connection window and unread
finished streams never exceed the initial stream credit. Nothing is refused or dropped to
get there: the peer simply waits, as QUIC flow control intends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aioquic.buffer import size_uint_var
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection, stream_is_client_initiated
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from ..protocol.ids import is_unidirectional
from .internals import (
    ack_now,
    connection_limit_delivered,
    connection_limits,
    ended,
    handshake_complete,
    idle_timeout_due,
    packet_room,
    peer_max_datagram_frame_size,
    replace_stream_table,
    stream_limit,
    stream_limit_delivered,
    swap_configuration,
)
from .limits import ReceiveBudget

MAX_DATAGRAM_FRAME_SIZE = 65536
"""The largest DATAGRAM frame we *accept* (configured in ``QuicConfiguration``). What we
*advertise* as ``max_datagram_frame_size`` is smaller: the largest datagram payload we
can send in one packet (:meth:`WebTransportQuicConnection.advertised_datagram_frame_size`),
so that a peer never sends a datagram too large to be echoed. Without the parameter at
all, browsers open sessions but silently lose every datagram."""

CONNECTION_WINDOW = 4 * 1024 * 1024
"""Bytes a peer may have in flight on one connection beyond what applications consumed."""

STREAM_WINDOW = 1024 * 1024
"""Bytes a peer may have in flight on one stream beyond what the application consumed."""

MAX_STREAMS = 128
"""Streams per direction a peer may have open on one connection, counting finished ones
whose last event the application has not taken yet."""

_SHORT_HEADER_OVERHEAD = 1 + 4 + 16
"""A short-header packet's first byte, longest packet number and AEAD tag; the peer's
connection id comes on top."""


def _nothing() -> None:
    """The default ``on_credit``: shared, where a lambda per connection would cost 150 bytes."""


class WebTransportQuicConnection(QuicConnection):
    """A window is always "consumed + window size", and stream credit waits for the app.

    Stream data is *held* from its arrival until the application takes it
    (:meth:`hold` / :meth:`release`); bytes that are never held (other HTTP/3 streams,
    data of refused streams) count as consumed on arrival, which gives them a plain
    sliding window. A peer stream whose last event (FIN or reset) waits for the
    application is held too (:meth:`hold_stream` / :meth:`release_stream`): if aioquic
    discards it meanwhile, the stream credit that aioquic would return is withheld until
    the application has taken that event.
    """

    # Our attributes live in slots: aioquic's connection keeps over a hundred in its
    # __dict__, and a dozen more there would double that table (3 KiB per connection).
    __slots__ = (
        "_answering",
        "_credit_owed",
        "_keep_alive_at",
        "_unread",
        "budget",
        "keep_alive",
        "local_limits",
        "on_credit",
        "stream_table",
        "timed_out",
        "unconsumed",
        "unconsumed_total",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unconsumed: dict[int, int] = {}
        self.unconsumed_total = 0
        self.local_limits = connection_limits(self)
        """MAX_DATA, MAX_STREAMS (bidi, uni): aioquic's own limit objects."""
        for limit in self.local_limits[1:]:
            limit.value = limit.sent = MAX_STREAMS
        self.stream_table = _StreamTable(self)
        """aioquic's table of live streams (ours, so we see which it discards)."""
        replace_stream_table(self, self.stream_table)
        self._unread: dict[int, bool] = {}
        """Peer streams whose last event waits for the application -> whether aioquic has
        discarded them since (one dict rather than two sets: 64 bytes, not 432, while
        empty)."""
        self._credit_owed: list[int] | None = None  # by ``unidirectional``; made when needed
        """Discarded streams of ``_unread`` (per direction) whose credit aioquic has
        already returned, to be withheld from the next streams it discards."""
        self.budget: ReceiveBudget | None = None
        """Shared by every connection of a server worker: no new connection credit while
        it is exhausted (see :meth:`settle`)."""
        self.on_credit: Callable[[], object] = _nothing
        """Called when the budget has room again after this connection was refused."""
        self._answering = False
        """Stream data or a datagram was queued since the last transmit."""
        self.keep_alive = 0.0
        """Seconds without a packet from the peer after which a PING is sent; 0: none.
        The peer's acknowledgement keeps an idle but live connection from timing out."""
        self._keep_alive_at: float | None = None
        self.timed_out = False
        """The connection ended because nothing came from the peer for the idle timeout:
        the peer vanished (a killed process or tab, a network gone) without a word."""

    # --- liveness ---------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        super().receive_datagram(data, addr, now)
        if self.keep_alive:
            self._keep_alive_at = now + self.keep_alive

    def get_timer(self) -> float | None:
        timer_at = super().get_timer()
        ping_at = self._keep_alive_at
        if ping_at is None or ended(self):
            return timer_at
        return ping_at if timer_at is None else min(timer_at, ping_at)

    def handle_timer(self, now: float) -> None:
        if idle_timeout_due(self, now):
            self.timed_out = True  # aioquic is about to report its idle timeout
        super().handle_timer(now)
        ping_at = self._keep_alive_at
        if ping_at is not None and now >= ping_at and not ended(self):
            if handshake_complete(self):
                self.send_ping(0)
            self._keep_alive_at = now + self.keep_alive

    # --- datagram size ----------------------------------------------------------------

    def advertised_datagram_frame_size(self) -> int:
        """What we announce as ``max_datagram_frame_size``: the largest datagram payload
        we can send in one packet (:func:`datagram_payload_room`).

        The value bounds what the peer sends, and browsers derive ``maxDatagramSize``
        from it; Firefox (neqo) takes it as the largest *payload*, Chromium (quiche) as
        the largest frame without a length field, RFC 9221 as the whole frame. Each
        reading then allows the peer at most what we can send back, so an echo of any
        datagram a peer was allowed to send fits.
        """
        return datagram_payload_room(self)

    def _serialize_transport_parameters(self) -> bytes:
        configuration = self.configuration
        accepted = configuration.max_datagram_frame_size
        if accepted is None:
            return super()._serialize_transport_parameters()
        advertised = min(accepted, self.advertised_datagram_frame_size())
        swap_configuration(self, replace(configuration, max_datagram_frame_size=advertised))
        try:
            return super()._serialize_transport_parameters()
        finally:
            swap_configuration(self, configuration)  # and accept up to ``accepted``

    # --- data -----------------------------------------------------------------------

    def hold(self, stream_id: int, size: int) -> None:
        """Count ``size`` received bytes of a stream as waiting for the application."""
        self.unconsumed[stream_id] = self.unconsumed.get(stream_id, 0) + size
        self.unconsumed_total += size
        if self.budget is not None:
            self.budget.take(size)

    def release(self, stream_id: int, size: int) -> bool:
        """Count ``size`` held bytes as consumed; True when new credit is worth sending now."""
        remaining = self.unconsumed[stream_id] - size
        if remaining:
            self.unconsumed[stream_id] = remaining
        else:
            del self.unconsumed[stream_id]
        self.unconsumed_total -= size
        if self.budget is not None:
            self.budget.give_back(size)
        limit = self.local_limits[0]
        if limit.value - (limit.used - self.unconsumed_total) < CONNECTION_WINDOW // 2:
            return True
        stream = self.stream_table.get(stream_id)
        if stream is None:
            return False
        stream_consumed = stream.receiver.highest_offset - remaining
        return stream.max_stream_data_local - stream_consumed < STREAM_WINDOW // 2

    def settle(self) -> None:
        """The connection is gone: what it still holds no longer counts against the
        budget (it is freed with the connection, whether or not the apps take it)."""
        if self.budget is not None:
            self.budget.give_back(self.unconsumed_total)
            self.budget.stalled.pop(self, None)
            self.budget = None

    # --- stream credit ----------------------------------------------------------------

    def hold_stream(self, stream_id: int) -> None:
        """The peer stream's last event was queued for the application."""
        if stream_id in self.stream_table:
            self._unread[stream_id] = False
        else:  # discarded before its last event was handled: aioquic already gave credit
            self._unread[stream_id] = True
            if self._credit_owed is None:
                self._credit_owed = [0, 0]
            self._credit_owed[is_unidirectional(stream_id)] += 1

    def release_stream(self, stream_id: int) -> bool:
        """The application took the peer stream's last event: it may open another. True
        when that credit is new now (rather than once aioquic discards the stream)."""
        if not self._unread.pop(stream_id):
            return False  # aioquic gives credit once it discards it
        owed = self._credit_owed
        direction = is_unidirectional(stream_id)
        if owed is not None and owed[direction]:
            owed[direction] -= 1  # never withheld: nothing to give back
            return False
        stream_limit(self, stream_id).value += 1
        return True

    def _discarded(self, stream_id: int) -> None:
        """aioquic is about to return the stream credit of ``stream_id``: withhold it if the
        application has not taken the stream's last event, or to pay back credit owed."""
        if stream_is_client_initiated(stream_id) == self.configuration.is_client:
            return
        owed = self._credit_owed
        direction = is_unidirectional(stream_id)
        if self._unread.get(stream_id) is False:
            self._unread[stream_id] = True
        elif owed is not None and owed[direction]:
            owed[direction] -= 1
        else:
            return
        stream_limit(self, stream_id).value -= 1

    # --- acknowledgements -------------------------------------------------------------

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        super().send_stream_data(stream_id, data, end_stream)
        self._answering = True

    def send_datagram_frame(self, data: bytes) -> None:
        super().send_datagram_frame(data)
        self._answering = True

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        """A pending ACK rides on the packet that carries the answer: aioquic would hold
        it until its 1 ms delay is up and then send it alone, which costs both ends a
        packet per request (ACKing early is always allowed, RFC 9000 section 13.2.1)."""
        if self._answering:
            self._answering = False
            ack_now(self, now)
        return super().datagrams_to_send(now)

    # --- frames -----------------------------------------------------------------------

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        limits = self.local_limits
        max_data = limits[0]
        consumed = max_data.used - self.unconsumed_total
        if max_data.value - consumed < CONNECTION_WINDOW // 2:
            budget = self.budget
            if budget is not None and budget.exhausted():
                budget.stalled[self] = self.on_credit
            else:
                max_data.value = consumed + CONNECTION_WINDOW
        for limit in limits:
            if limit is not max_data and (limit.sent - limit.used >= limit.value - limit.sent):
                continue  # batch MAX_STREAMS as aioquic does
            if limit.value > limit.sent:
                buf = builder.start_frame(
                    limit.frame_type,
                    capacity=9,
                    handler=connection_limit_delivered(self),
                    handler_args=(limit,),
                )
                buf.push_uint_var(limit.value)
                limit.sent = limit.value

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        if not stream.max_stream_data_local or stream_id is None or stream.receiver.is_finished:
            return  # nothing more to receive on this stream, so no credit to give
        window = stream.max_stream_data_local
        received = stream.receiver.highest_offset
        # The app consumed at most what was received: while half a window is open above
        # that, no consumption can call for more, and the lookup is skipped.
        if window - received < STREAM_WINDOW // 2:
            consumed = received - self.unconsumed.get(stream_id, 0)
            if window - consumed < STREAM_WINDOW // 2:
                stream.max_stream_data_local = window = consumed + STREAM_WINDOW
        if stream.max_stream_data_local_sent != window:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=17,
                handler=stream_limit_delivered(self),
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(window)
            stream.max_stream_data_local_sent = window


class _StreamTable(dict[int, QuicStream]):
    """aioquic's stream table, telling the connection which streams aioquic discards.

    aioquic removes a finished stream with ``pop`` and then returns its credit to the
    peer; nothing else pops, and lookups stay dict-fast.
    """

    __slots__ = ("_connection",)  # a __dict__ would add 300 bytes per connection

    def __init__(self, connection: WebTransportQuicConnection) -> None:
        super().__init__()
        self._connection = connection

    def pop(self, stream_id: int, *default: Any) -> Any:
        self._connection._discarded(stream_id)
        return super().pop(stream_id, *default)


def datagram_payload_room(quic: QuicConnection) -> int:
    """The largest QUIC DATAGRAM payload (WebTransport's quarter stream id included) that
    fits one packet of ``quic``'s size, in a frame with a length field as aioquic sends it,
    with the longest packet number and the peer's current connection id."""
    frame_room = packet_room(quic) - _SHORT_HEADER_OVERHEAD
    return frame_room - 1 - size_uint_var(frame_room)


def max_datagram_size(quic: QuicConnection, session_id: int) -> int:
    """The largest datagram payload for ``session_id`` that fits one packet and the peer's
    ``max_datagram_frame_size``: aioquic never sends a datagram too large for a packet, and
    keeps it at the head of its queue, blocking all later ones."""
    room = datagram_payload_room(quic)
    remote_limit = peer_max_datagram_frame_size(quic)
    if remote_limit is None:
        return 0  # the peer takes no DATAGRAM frames at all
    room = min(room, remote_limit - 1 - size_uint_var(remote_limit))
    return max(0, room - size_uint_var(session_id // 4))


def quic_configuration(
    *, is_client: bool, server_name: str | None = None, idle_timeout: float | None = None
) -> QuicConfiguration:
    """The QUIC configuration both ends start from: HTTP/3, DATAGRAM frames and the
    windows above; ``idle_timeout`` None keeps aioquic's default. Certificates and their
    verification are left to the caller."""
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN,
        is_client=is_client,
        server_name=server_name,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
    )
    if idle_timeout is not None:
        configuration.idle_timeout = idle_timeout
    return configuration
