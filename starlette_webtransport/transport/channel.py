"""The server side of the ASGI contract for one WebTransport session, on either end.

``docs/asgi-webtransport.md`` has the server play the transport's part towards the app;
a client plays the same part towards its own session object (``role: "client"``). Both
do it over aioquic in the same way, so :class:`SessionChannel` is written once and
parameterised by role: the hypercorn adapter and the Python client differ only in how
their QUIC connection is driven and how the CONNECT request is exchanged.

Memory stays bounded against a peer that sends faster than the application reads, and
nothing is dropped to get there: stream data and a stream's last event hold QUIC credit
until the application takes them (see :mod:`.quic`), and for draft-07+ peers the
session's own WebTransport credit is renewed on the same consumption. Only received
datagrams, unreliable anyway, go to a bounded queue that drops the oldest.

The other way round, the channel keeps to the WebTransport credit the peer grants (the
arithmetic of both directions is :mod:`..protocol.credit`): opens queue and sends wait for
it, so an application is slowed down, never failed, by a peer that grants little.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

from ..asgi import (
    DEFAULT_REJECT_STATUS,
    CloseCause,
    DisconnectEvent,
    ReceiveEvent,
    SendMessage,
    SessionGone,
    unknown_message,
)
from ..protocol.capsules import Capsule, MaxData, MaxStreams
from ..protocol.credit import LocalCredit, PeerCredit, flow_control_negotiated
from ..protocol.errors import (
    WT_BUFFERED_STREAM_REJECTED,
    WT_SESSION_GONE,
    ProtocolError,
    app_to_http3,
    http3_to_app,
)
from ..protocol.ids import is_unidirectional, opener_bit
from ..protocol.settings import Draft, response_headers, serialize_protocol
from ..protocol.state import FlowControlReceived, SessionClosed, SessionDraining, SessionProtocol
from .internals import (
    datagrams_pending,
    forget_h3_stream,
    sender_reset,
    unsent_bytes,
)
from .quic import max_datagram_size
from .router import SessionRouter, refuse_stream

log = logging.getLogger("starlette_webtransport.transport")

STREAM_HIGH_WATER = 1024 * 1024
"""Unacknowledged bytes on one stream above which ``stream.send`` waits."""

DATAGRAM_HIGH_WATER = 256
"""Datagrams queued in QUIC above which ``datagram.send`` waits for the congestion window."""

DATAGRAM_QUEUE_SIZE = 1024
"""Received datagrams a session holds for a slow reader before dropping the oldest."""

PENDING_OPENS = 256
"""``stream.open`` calls a session queues while the peer's stream credit is used up;
beyond that ``send`` of another one waits."""

Role = Literal["server", "client"]


class _Stream:
    __slots__ = ("drained", "receiving", "sending")

    def __init__(self, *, receiving: bool, sending: bool, drained: bool) -> None:
        self.receiving = receiving
        """The application still gets this stream's data."""
        self.sending = sending
        """The application may still write it."""
        self.drained = drained
        """QUIC will deliver nothing more for it (FIN or reset received, or never
        readable). Until then the stream is remembered, so that late data is recognised
        and dropped."""


class SessionChannel:
    """One session: ``receive`` and ``send`` of the ASGI contract.

    Events wait in two queues: stream and control events in order, and datagrams in a
    bounded queue of their own so that a datagram flood neither grows memory nor delays
    stream data. Credit comes back as the application *takes* events, in :meth:`receive`,
    or, once it asked for that (``webtransport.credit``), as it reports each stream's
    data consumed, so that one stream it does not read holds no other back.

    A server channel answers the CONNECT (``accept``/``reject``) and refuses peer streams
    that arrive before it accepted; a client channel is opened by the server's 2xx
    (:meth:`established`) and keeps streams that race ahead of it.
    """

    # Slots: one of these per session (or connection), and a __dict__ doubles its size.
    __slots__ = (
        "accepted",
        "close_cause",
        "consumed_mode",
        "credit",
        "datagrams",
        "datagrams_dropped",
        "delivered",
        "disconnected",
        "draft",
        "drain_sent",
        "events",
        "final_queued",
        "finished",
        "first_own_bidi",
        "first_own_uni",
        "h3",
        "max_datagram_size",
        "next_peer_bidi",
        "next_peer_uni",
        "peer_bit",
        "peer_credit",
        "pending_opens",
        "protocol",
        "quic",
        "role",
        "router",
        "stream_id",
        "streams",
        "subprotocols",
        "waiter",
    )

    def __init__(
        self,
        router: SessionRouter,
        stream_id: int,
        draft: Draft,
        *,
        role: Role,
        subprotocols: Iterable[str] = (),
    ) -> None:
        quic = router.quic
        self.router = router
        self.quic = quic
        self.h3 = router.h3
        self.stream_id = stream_id
        self.draft = draft
        self.role = role
        self.subprotocols = tuple(subprotocols)  # () when none were offered: no allocation
        """What the client offered in ``wt-available-protocols`` (a server's concern)."""
        self.protocol = SessionProtocol()
        self.streams: dict[int, _Stream] = {}
        self.events: deque[ReceiveEvent] | None = None
        """Made by the first event and dropped once drained: an idle session holds no
        deque (770 bytes even when empty)."""
        self.datagrams: deque[bytes] | None = None
        """Made by the first datagram: an empty deque costs 770 bytes per idle session."""
        self.datagrams_dropped = 0
        self.waiter: asyncio.Future[None] | None = None
        self.accepted = False
        self.finished = False  # WT_CLOSE_SESSION, FIN or rejection sent: the app may send no more
        self.drain_sent = False
        self.disconnected: DisconnectEvent | None = None  # the final event, once queued
        self.close_cause: CloseCause | None = None
        self.max_datagram_size = max_datagram_size(quic, stream_id)
        self.peer_bit = 0 if role == "server" else 1
        """Bit 0 of the stream ids the peer opens."""
        # Our ids below first_own are not WebTransport streams of this session (HTTP/3's
        # control and QPACK streams, earlier requests); peer ids at or above next_peer
        # were never opened. Per direction, in slots (two-item lists: 72 bytes each).
        self.first_own_bidi = quic.get_next_available_stream_id(False)
        self.first_own_uni = quic.get_next_available_stream_id(True)
        self.next_peer_bidi = self.peer_bit
        self.next_peer_uni = 2 | self.peer_bit
        self.final_queued: dict[int, None] = {}
        """Peer streams whose last event waits in the queue: they still hold stream credit."""
        # WebTransport-level credit (draft-07+): what we grant the peer, and what it grants us.
        peer_settings = router.h3.received_settings or {}
        negotiated = flow_control_negotiated(draft, router.h3.limits, peer_settings)
        self.credit = LocalCredit(router.h3.limits, enabled=negotiated)
        self.peer_credit = PeerCredit.from_settings(peer_settings, enabled=negotiated)
        self.pending_opens: list[bool] = []
        """``stream.open`` calls (``bidirectional``) waiting for the peer's stream credit."""
        self.consumed_mode = False
        """The app reports what it consumed (``webtransport.credit``, spec 1.1)."""
        self.delivered: dict[int, int] = {}
        """In consumed mode: bytes per stream the app took and has not reported consumed.
        They still hold their credit."""
        router.sessions[stream_id] = self

    # --- network -> application -------------------------------------------------------

    def _push(self, message: ReceiveEvent) -> None:
        events = self.events
        if events is None:
            self.events = events = deque()
        events.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> ReceiveEvent:
        while True:
            events = self.events
            if self.datagrams and (not events or events[0] is self.disconnected):
                return {"type": "webtransport.datagram.receive", "data": self.datagrams.popleft()}
            if events:
                message = events[0]
                if message is not self.disconnected:
                    events.popleft()
                    if not events:
                        self.events = None
                    self._taken(message)
                return message
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _taken(self, message: ReceiveEvent) -> None:
        """The application took ``message``. Its data stops holding credit now, or, once
        the app reports consumption (``webtransport.credit``), when it says it consumed
        them (:meth:`_consumed`). A peer stream whose last event it was lets the peer
        open another."""
        if (
            self.consumed_mode
            and self.disconnected is None
            and message["type"] == "webtransport.stream.receive"
            and message["data"]
        ):
            stream_id = message["stream"]
            self.delivered[stream_id] = self.delivered.get(stream_id, 0) + len(message["data"])
            if message["end_stream"]:
                self._last_event_taken(stream_id)
            return
        self._settle(message)

    def _settle(self, message: ReceiveEvent) -> None:
        """``message`` is done with: its data stops holding credit at once."""
        match message["type"]:
            case "webtransport.stream.receive":
                stream_id = message["stream"]
                size = len(message["data"])
                if size:
                    self._release(stream_id, size)
                if not message["end_stream"]:
                    return
            case "webtransport.stream.reset":
                stream_id = message["stream"]
            case _:
                return
        self._last_event_taken(stream_id)

    def _release(self, stream_id: int, size: int) -> None:
        """``size`` held bytes of the stream are consumed: QUIC and WT credit follow."""
        if self.quic.release(stream_id, size):
            self.router.transmit_soon()
        self._data_consumed(size)

    def _consumed(self, stream_id: int, size: int) -> None:
        """``webtransport.stream.consumed``: return the credit of what the app took. Counts
        beyond what it took and has not reported yet are ignored, so a late or repeated
        report can never grant the peer more than the windows."""
        if not isinstance(stream_id, int) or not isinstance(size, int) or size < 0:
            raise ValueError(f"stream.consumed needs an int stream and bytes >= 0, got {size!r}")
        held = self.delivered.get(stream_id, 0)
        size = min(size, held)
        if not size:
            return
        if size == held:
            del self.delivered[stream_id]
        else:
            self.delivered[stream_id] = held - size
        self._release(stream_id, size)

    def _release_delivered(self) -> None:
        delivered, self.delivered = self.delivered, {}
        for stream_id, size in delivered.items():
            self._release(stream_id, size)

    def _discard(self, stream_id: int) -> None:
        """The app stopped reading the stream: what it took and what still waits for it
        stop holding credit, and the queued data and last event are dropped."""
        held = self.delivered.pop(stream_id, 0)
        if held:
            self._release(stream_id, held)
        events = self.events or ()
        if any(message.get("stream") == stream_id for message in events):
            kept: deque[ReceiveEvent] = deque()
            for message in events:
                match message["type"]:
                    case "webtransport.stream.receive" | "webtransport.stream.reset" if (
                        message["stream"] == stream_id
                    ):
                        self._settle(message)
                    case _:
                        kept.append(message)
            self.events = kept or None

    def _last_event_taken(self, stream_id: int) -> None:
        if stream_id in self.final_queued:
            del self.final_queued[stream_id]
            if self.quic.release_stream(stream_id):
                self.router.transmit_soon()
            if stream_id not in self.streams:
                self._retire(stream_id)

    def release_queued(self) -> None:
        """The application is gone: what still waits for it stops holding credit."""
        self._release_delivered()
        for message in self.events or ():
            if message is not self.disconnected:
                self._settle(message)
        self.events = None
        if self.disconnected is not None:
            self._push(self.disconnected)
        self.datagrams = None

    def established(self) -> None:
        """The 2xx was sent (server) or received (client): the session is open."""
        self.protocol.accept()
        self.accepted = True

    def stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        new = stream is None
        if stream is None:
            # QUIC delivers nothing for streams we forgot, so this is a new peer stream.
            stream = self._peer_stream(stream_id)
        if end_stream:
            stream.drained = True
        if self.disconnected is None and not self._within_credit(stream_id, new, len(data)):
            return
        if not stream.receiving:
            self._data_consumed(len(data))  # dropped, but the peer spent credit on it
            self._maybe_forget(stream_id, stream)
            return
        if data:
            self.quic.hold(stream_id, len(data))
        if end_stream:
            stream.receiving = False
            self._final_event_queued(stream_id)
            self._maybe_forget(stream_id, stream)
        self._push(
            {
                "type": "webtransport.stream.receive",
                "stream": stream_id,
                "data": data,
                "end_stream": end_stream,
            }
        )

    def _within_credit(self, stream_id: int, new: bool, size: int) -> bool:
        """Check the peer keeps to the WebTransport credit we granted; a peer over it
        loses the session with WT_FLOW_CONTROL_ERROR."""
        try:
            if new:
                self.credit.open_stream(unidirectional=is_unidirectional(stream_id))
            self.credit.receive_data(size)
        except ProtocolError as exc:
            self._fail(exc)
            return False
        return True

    def _peer_stream(self, stream_id: int) -> _Stream:
        """Record a new peer stream. A server refuses streams that arrive before the app
        accepted; such a stream is never announced, and is remembered until the peer's
        reset or FIN so that its late data is recognised."""
        unidirectional = is_unidirectional(stream_id)
        if unidirectional:
            if stream_id >= self.next_peer_uni:
                self.next_peer_uni = stream_id + 4
        elif stream_id >= self.next_peer_bidi:
            self.next_peer_bidi = stream_id + 4
        if self.role == "server" and not self.accepted:
            refuse_stream(self.quic, stream_id, WT_BUFFERED_STREAM_REJECTED)
            self.router.transmit_soon()
            stream = _Stream(receiving=False, sending=False, drained=False)
        else:
            stream = _Stream(receiving=True, sending=not unidirectional, drained=False)
        self.streams[stream_id] = stream
        self.router.streams[stream_id] = self
        return stream

    def stream_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams[stream_id]
        stream.drained = True
        if stream.receiving:
            stream.receiving = False
            self._final_event_queued(stream_id)
            self._push(
                {
                    "type": "webtransport.stream.reset",
                    "stream": stream_id,
                    "code": http3_to_app(error_code),
                }
            )
        self._maybe_forget(stream_id, stream)

    def stop_sending(self, stream_id: int, error_code: int) -> None:
        stream = self.streams[stream_id]
        if not stream.sending:
            return
        stream.sending = False  # aioquic has already reset our side with the same code
        self._maybe_forget(stream_id, stream)
        self.router.transmit_soon()
        self._push(
            {
                "type": "webtransport.stream.stop_sending",
                "stream": stream_id,
                "code": http3_to_app(error_code),
            }
        )

    def datagram(self, data: bytes) -> None:
        if not self.accepted or self.disconnected is not None:
            return
        datagrams = self.datagrams
        if datagrams is None:
            datagrams = self.datagrams = deque()
        elif len(datagrams) >= DATAGRAM_QUEUE_SIZE:
            datagrams.popleft()
            self.datagrams_dropped += 1
        datagrams.append(data)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connect_stream_data(self, data: bytes, end_stream: bool) -> None:
        """Capsules on the CONNECT stream, and the FIN that ends the session."""
        if self.disconnected is not None:
            return
        try:
            events = self.protocol.receive_data(data, end_stream)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for event in events:
            if isinstance(event, SessionClosed):
                if not self.finished:
                    self.finished = True
                    self._send_connect(b"", end_stream=True)
                self.terminate(event.code, event.reason, cause="peer_closed")
            elif isinstance(event, SessionDraining):
                self._push({"type": "webtransport.drain"})
            elif isinstance(event, FlowControlReceived):
                self._peer_granted(event.capsule)

    def connect_reset(self, error_code: int) -> None:
        """The peer reset the CONNECT stream. The session ends with the application code
        the reset carries (0 outside that range), and the reason names the HTTP/3 code, so
        that a peer's WT_FLOW_CONTROL_ERROR or the like reaches the app and the log."""
        if self.disconnected is None:
            self.protocol.connection_lost()
            self.finished = True
            code = http3_to_app(error_code)
            self.terminate(
                0 if code is None else code,
                f"CONNECT stream reset ({error_code:#x})",
                cause="peer_reset",
            )

    def _fail(self, exc: ProtocolError) -> None:
        """The peer broke a rule of the session: reset the CONNECT stream with the code
        the error names and end the session."""
        log.warning("WebTransport session on stream %d: %s", self.stream_id, exc)
        self.finished = True
        self.quic.reset_stream(self.stream_id, exc.http3_code)
        with contextlib.suppress(ValueError):  # aioquic discarded the finished stream
            self.quic.stop_stream(self.stream_id, exc.http3_code)
        self.terminate(0, f"protocol error: {exc}", cause="protocol_error")

    def _peer_granted(self, capsule: Capsule) -> None:
        """WT_MAX_DATA / WT_MAX_STREAMS from the peer: waiting opens and sends go on."""
        if isinstance(capsule, MaxData | MaxStreams) and self.peer_credit.grant(capsule):
            self._open_pending()
            self.router.wake_writers()

    def connection_lost(self, cause: CloseCause = "connection_closed") -> None:
        """The connection or the CONNECT stream is gone."""
        if self.disconnected is None:
            self.protocol.connection_lost()
            self.finished = True
            self.terminate(0, "", reset=False, cause=cause)

    def terminate(self, code: int, reason: str, *, cause: CloseCause, reset: bool = True) -> None:
        """End the session: reset its streams (WT_SESSION_GONE) and tell the app last,
        with how it ended (``cause``).

        What is queued stays queued, and holds its credit, until the app takes it or
        exits (:meth:`release_queued`)."""
        quic = self.quic
        for stream_id, stream in list(self.streams.items()):
            if reset and stream.sending:
                quic.reset_stream(stream_id, WT_SESSION_GONE)
            if reset and stream.receiving:
                with contextlib.suppress(ValueError):  # finished; its FIN event is on the way
                    quic.stop_stream(stream_id, WT_SESSION_GONE)
            stream.sending = stream.receiving = False
            self._maybe_forget(stream_id, stream)
        self._release_delivered()  # the app can report no more
        self.router.sessions.pop(self.stream_id, None)
        self.router.transmit_soon()
        self.close_cause = cause
        self.disconnected = {
            "type": "webtransport.disconnect",
            "code": code,
            "reason": reason,
            "cause": cause,
        }
        self._push(self.disconnected)
        self.router.wake_writers()

    def _final_event_queued(self, stream_id: int) -> None:
        if opener_bit(stream_id) == self.peer_bit:
            self.final_queued[stream_id] = None
            self.quic.hold_stream(stream_id)

    def _maybe_forget(self, stream_id: int, stream: _Stream) -> None:
        if stream.drained and not stream.sending:
            del self.streams[stream_id]
            del self.router.streams[stream_id]
            # aioquic's H3 layer keeps WebTransport streams until both directions end,
            # which ours may never do in its eyes.
            forget_h3_stream(self.h3, stream_id)
            if opener_bit(stream_id) == self.peer_bit and stream_id not in self.final_queued:
                self._retire(stream_id)

    def _retire(self, stream_id: int) -> None:
        """A peer stream is done with: the peer may open another (WT_MAX_STREAMS)."""
        capsule = self.credit.retire_stream(unidirectional=is_unidirectional(stream_id))
        if capsule is not None:
            self._send_capsule(capsule)

    def _data_consumed(self, size: int) -> None:
        """``size`` more bytes of the session's streams are done with (WT_MAX_DATA)."""
        capsule = self.credit.consume_data(size)
        if capsule is not None:
            self._send_capsule(capsule)

    def _send_capsule(self, capsule: Capsule) -> None:
        if self.accepted and not self.finished:
            self._send_connect(self.protocol.send_capsule(capsule), end_stream=False)

    def _send_connect(self, data: bytes, *, end_stream: bool) -> None:
        self.h3.send_data(self.stream_id, data, end_stream)
        self.router.transmit_soon()

    # --- application -> network -------------------------------------------------------

    async def send(self, message: SendMessage) -> None:
        # Hot messages first; the last case is what mypy --strict checks exhaustiveness on.
        match message["type"]:
            case "webtransport.stream.send":
                await self._stream_send(
                    message["stream"], message["data"], message.get("end_stream", False)
                )
            case "webtransport.datagram.send":
                await self._datagram_send(message["data"])
            case "webtransport.stream.consumed":
                self._consumed(message["stream"], message["bytes"])
            case "webtransport.stream.open":
                await self._open(bool(message["bidirectional"]))
            case "webtransport.stream.reset":
                self._reset(message["stream"], message.get("code", 0))
            case "webtransport.stream.stop_sending":
                self._stop(message["stream"], message.get("code", 0))
            case "webtransport.accept":
                self._accept(message.get("subprotocol"), message.get("headers", ()))
            case "webtransport.reject":
                self._reject(
                    message.get("status", DEFAULT_REJECT_STATUS), message.get("headers", ())
                )
            case "webtransport.close":
                if self.accepted:
                    self._close(message.get("code", 0), message.get("reason", ""))
                else:
                    self._reject(DEFAULT_REJECT_STATUS, ())
            case "webtransport.drain":
                self._check_open()
                self._drain()
            case "webtransport.credit":
                self._credit_mode(message.get("returned_on"))
            case _:
                raise ValueError(unknown_message(message))

    def server_headers(self) -> Iterable[tuple[bytes, bytes]]:
        """Headers every response of this server carries besides the session's own (a
        web server's ``server`` and ``date``); none here."""
        return ()

    def _check_server(self, kind: str) -> None:
        if self.role == "client":
            raise RuntimeError(f"{kind} is for servers: the client's CONNECT opened this session")
        if self.accepted or self.finished:
            raise SessionGone("the session was already accepted or closed")

    def _accept(self, subprotocol: str | None, headers: Iterable[Any]) -> None:
        self._check_server("webtransport.accept")
        response = [(b":status", b"200"), *response_headers(self.draft)]
        if subprotocol is not None:
            if subprotocol not in self.subprotocols:
                raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
            response.append((b"wt-protocol", serialize_protocol(subprotocol)))
        response.extend((bytes(name).lower(), bytes(value)) for name, value in headers)
        response.extend(self.server_headers())
        self.h3.send_headers(self.stream_id, response)
        self.established()
        self.router.transmit_soon()

    def _reject(self, status: int, headers: Iterable[Any]) -> None:
        self._check_server("webtransport.reject")
        if 200 <= status < 300:
            raise ValueError(f"a rejection needs a non-2xx status, got {status}")
        self.finished = True
        self.protocol.reject()
        self.h3.send_headers(
            self.stream_id,
            [
                (b":status", b"%d" % status),
                *((bytes(name).lower(), bytes(value)) for name, value in headers),
                *self.server_headers(),
            ],
            end_stream=True,
        )
        self.terminate(0, "", reset=False, cause="rejected")

    def _close(self, code: int, reason: str, cause: CloseCause = "closed") -> None:
        """WT_CLOSE_SESSION, then FIN, then reset the session's streams."""
        if self.finished:
            raise SessionGone("the WebTransport session is already closed")
        capsule = self.protocol.close(code, reason)
        self.finished = True
        self._send_connect(capsule, end_stream=True)
        self.terminate(code, reason, cause=cause)

    def _drain(self) -> None:
        """WT_DRAIN_SESSION, once: asking twice changes nothing."""
        if not self.drain_sent:
            self.drain_sent = True
            self._send_connect(self.protocol.drain(), end_stream=False)

    def _check_open(self) -> None:
        if not self.accepted:
            raise RuntimeError("the session must be accepted before it is used")
        if self.finished:
            raise SessionGone("the WebTransport session is closed")

    async def _open(self, bidirectional: bool) -> None:
        """Queue the open; it happens as soon as the peer's stream credit allows, and the
        replies keep the order of the opens. Only a full queue makes ``send`` wait."""
        self._check_open()
        while len(self.pending_opens) >= PENDING_OPENS:
            await self.router.writable()
            self._check_open()
        self.pending_opens.append(bidirectional)
        self._open_pending()

    def _open_pending(self) -> None:
        """Open what the peer's credit allows, oldest first; WT_STREAMS_BLOCKED where not."""
        credit = self.peer_credit
        while self.pending_opens and not self.finished:
            unidirectional = not self.pending_opens[0]
            if not credit.may_open(unidirectional=unidirectional):
                blocked = credit.streams_blocked(unidirectional=unidirectional)
                if blocked is not None:
                    self._send_capsule(blocked)
                return
            credit.open_stream(unidirectional=unidirectional)
            self._open_now(self.pending_opens.pop(0))

    def _open_now(self, bidirectional: bool) -> None:
        stream_id = self.h3.create_webtransport_stream(
            self.stream_id, is_unidirectional=not bidirectional
        )
        self.streams[stream_id] = _Stream(
            receiving=bidirectional, sending=True, drained=not bidirectional
        )
        self.router.streams[stream_id] = self
        self.router.transmit_soon()
        self._push(
            {
                "type": "webtransport.stream.opened",
                "stream": stream_id,
                "bidirectional": bidirectional,
            }
        )

    def _known(self, stream_id: int, *, write: bool) -> _Stream | None:
        """The stream's record, ``None`` for a stream of this session that has ended
        (the app learns why from events); ``ValueError`` for any other id."""
        self._check_open()
        unidirectional = is_unidirectional(stream_id)
        ours = opener_bit(stream_id) != self.peer_bit
        if unidirectional and ours != write:
            mode = "write-only" if ours else "read-only"
            opener = "server" if opener_bit(stream_id) else "client"
            raise ValueError(f"stream {stream_id} is a {opener} unidirectional stream: {mode}")
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream
        first_own = self.first_own_uni if unidirectional else self.first_own_bidi
        if stream_id == self.stream_id or (ours and stream_id < first_own):
            raise ValueError(f"stream {stream_id} is not a WebTransport stream of this session")
        if ours:
            opened = stream_id < self.quic.get_next_available_stream_id(unidirectional)
        else:
            opened = stream_id < (self.next_peer_uni if unidirectional else self.next_peer_bidi)
        if not opened:
            raise ValueError(f"stream {stream_id} was never opened")
        return None

    def _reset(self, stream_id: int, code: int) -> None:
        stream = self._known(stream_id, write=True)
        http3_code = app_to_http3(code)
        if stream is None or not stream.sending:
            return
        self.quic.reset_stream(stream_id, http3_code)
        stream.sending = False
        self._maybe_forget(stream_id, stream)
        self.router.transmit_soon()

    def _credit_mode(self, returned_on: object) -> None:
        if returned_on != "consumed":
            raise ValueError(
                f'webtransport.credit needs returned_on="consumed", got {returned_on!r}'
            )
        if not self.accepted and not self.finished:
            raise RuntimeError("the session must be accepted before it is used")
        self.consumed_mode = True

    def _stop(self, stream_id: int, code: int) -> None:
        stream = self._known(stream_id, write=False)
        http3_code = app_to_http3(code)
        if self.consumed_mode:
            self._discard(stream_id)
        if stream is None or not stream.receiving:
            return
        with contextlib.suppress(ValueError):  # finished; its FIN event is on the way
            self.quic.stop_stream(stream_id, http3_code)
        stream.receiving = False
        self.router.transmit_soon()

    async def _stream_send(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self._known(stream_id, write=True)
        if stream is None or not stream.sending:
            return
        quic = self.quic
        quic_stream = quic.stream_table.get(stream_id)
        if quic_stream is None or sender_reset(quic_stream.sender):
            return  # the peer's STOP_SENDING reset it; its event is on the way
        sender = quic_stream.sender
        credit = self.peer_credit
        size = len(data)
        while credit.sendable(size) < size:
            # Send what the peer's WebTransport credit allows, then wait for more.
            part = credit.sendable(size)
            if part:
                credit.send_data(part)
                quic.send_stream_data(stream_id, data[:part], False)
                data = data[part:]
                size -= part
                self.router.transmit_soon()
            blocked = credit.data_blocked()
            if blocked is not None:
                self._send_capsule(blocked)
            await self.router.writable()
            if self.finished:
                raise SessionGone("the WebTransport session ended before the data could be sent")
            if not stream.sending or sender_reset(sender):
                return  # reset meanwhile (the peer's STOP_SENDING or the app's own reset)
        credit.send_data(size)
        quic.send_stream_data(stream_id, data, end_stream)
        self.router.transmit_soon()
        if end_stream:
            stream.sending = False
            self._maybe_forget(stream_id, stream)
            return
        while (
            unsent_bytes(sender) > STREAM_HIGH_WATER
            and stream.sending
            and self.disconnected is None
        ):
            await self.router.writable()

    async def _datagram_send(self, data: bytes) -> None:
        self._check_open()
        if len(data) > self.max_datagram_size:
            raise ValueError(
                f"datagram of {len(data)} bytes exceeds max_datagram_size {self.max_datagram_size}"
            )
        while datagrams_pending(self.quic) >= DATAGRAM_HIGH_WATER:
            await self.router.writable()
            self._check_open()
        self.h3.send_datagram(self.stream_id, data)
        self.router.transmit_soon()
