"""A WebTransport client on aioquic: the server adapter's mirror image.

The session API in :mod:`starlette_webtransport.session` talks only ASGI messages, so
a client is "a server for the client end": :class:`_SessionChannel` implements the
server side of ``docs/asgi-webtransport.md`` over an outgoing QUIC connection, and the
same :class:`~starlette_webtransport.session.WebTransportSession` that apps use on the
server runs on top of it with ``role: "client"``.

Memory stays bounded against a server that sends faster than the application reads,
and nothing is dropped to get there: stream data counts as consumed only when the
session receives it, and QUIC credit slides with consumption (per stream, per
connection, and for the number of streams the server may open), so unread data never
exceeds the connection window and unread streams never exceed the stream credit. Only
received datagrams, unreliable anyway, go to a bounded queue that drops the oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import size_uint_var
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection, Setting
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.tls import AlertDescription

from ..asgi import SPEC_VERSION, Message, is_client_initiated, is_unidirectional
from ..protocol.capsules import Capsule, MaxData, MaxStreams
from ..protocol.errors import (
    WT_SESSION_GONE,
    ProtocolError,
    app_to_http3,
    http3_to_app,
)
from ..protocol.settings import (
    DRAFT02_HEADER,
    Draft,
    FlowControlLimits,
    client_settings,
    negotiate_draft,
    serialize_protocol,
    uses_flow_control,
)
from ..protocol.state import SessionClosed, SessionDraining, SessionProtocol
from ..server.certs import describe_certificate
from ..server.h3 import SessionGone
from ..server.quic import CONNECTION_WINDOW, STREAM_WINDOW, WebTransportQuicConnection
from ..session import SessionConfig, SessionRejectedError, WebTransportSession

MAX_DATAGRAM_FRAME_SIZE = 65536
"""Advertised ``max_datagram_frame_size``: servers may send us datagrams only if we set it."""

STREAM_HIGH_WATER = 1024 * 1024
"""Unacknowledged bytes on one stream above which ``stream.send`` waits."""

DATAGRAM_HIGH_WATER = 256
"""Datagrams queued in QUIC above which ``datagram.send`` waits for the congestion window."""

DATAGRAM_QUEUE_SIZE = 1024
"""Received datagrams held for a slow reader before the oldest is dropped."""

WT_CREDIT = FlowControlLimits()
"""WebTransport-level credit (draft-07 and later) granted to the server: advertised in
SETTINGS, then renewed with WT_MAX_DATA / WT_MAX_STREAMS as the application consumes, so
a server that enforces it never stalls on a client that keeps reading."""

_SHORT_HEADER_OVERHEAD = 1 + 4 + 16
"""A short-header packet's first byte, longest packet number and AEAD tag; the peer's
connection id comes on top."""

_URL_SAFE = "!$%&'()*+,/:;=?@~"
"""Left as they are in a path or query; anything else (spaces, non-ASCII) is
percent-encoded, as browsers do."""

_session_ids = itertools.count(1)


class WebTransportConnectError(ConnectionError):
    """No session: the QUIC handshake, the certificate, the server's SETTINGS or its
    answer to the CONNECT failed."""


class WebTransportRejectedError(SessionRejectedError, WebTransportConnectError):
    """The server answered the CONNECT with a non-2xx ``status``. Also the
    :class:`~starlette_webtransport.session.SessionRejectedError` that the in-process
    test client raises, so one ``except`` serves both."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        SessionRejectedError.__init__(self, status, headers)


class _ClientQuicConnection(WebTransportQuicConnection):
    """Receive windows that follow consumption (see the base class), and stream credit too.

    aioquic lets the server open a new stream as soon as an earlier one has finished
    arriving, so a server could pile up any number of small finished streams that the
    application has not read. Here a server stream gives back its credit only once the
    application has taken its last event, so at most the initial credit (128 per
    direction) of server streams wait, and none is ever refused or lost.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = {False: self._local_max_streams_bidi, True: self._local_max_streams_uni}
        self._stream_limits = limits
        self._granted = {kind: limit.value for kind, limit in limits.items()}
        """Credit the application's consumption allows."""
        self._aioquic_value = dict(self._granted)
        """What aioquic would allow (it adds one per stream it discards); never exceeded,
        because aioquic enforces its own count."""
        self._assigned = dict(self._granted)

    def retire_peer_stream(self, stream_id: int) -> None:
        self._granted[is_unidirectional(stream_id)] += 1

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        for kind, limit in self._stream_limits.items():
            self._aioquic_value[kind] += limit.value - self._assigned[kind]
            limit.value = max(limit.sent, min(self._aioquic_value[kind], self._granted[kind]))
            self._assigned[kind] = limit.value
        super()._write_connection_limits(builder, space)


class _ClientH3Connection(H3Connection):
    """aioquic's H3 connection sending the SETTINGS every server draft keys on.

    ENABLE_CONNECT_PROTOCOL is a server's promise to accept extended CONNECT; aioquic
    sends it from clients too, browsers do not.
    """

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        del settings[Setting.ENABLE_CONNECT_PROTOCOL]
        settings.update(client_settings(WT_CREDIT))
        return settings


@dataclass(slots=True)
class _Stream:
    receiving: bool
    """The application still gets this stream's data."""
    sending: bool
    """The application may still write it."""
    drained: bool
    """QUIC will deliver nothing more for it (FIN or reset received, or never readable).
    Until then the stream is remembered, so that late data is recognised and dropped."""


class _SessionChannel:
    """The server side of the ASGI contract, for the client end of one session.

    Events wait in two queues: stream and control events in order, and datagrams in a
    bounded queue of their own so that a datagram flood neither grows memory nor delays
    stream data.
    """

    def __init__(self, connection: _ClientProtocol, stream_id: int, draft: Draft) -> None:
        self.connection = connection
        self.quic = connection.quic
        self.stream_id = stream_id
        self.draft = draft
        self.protocol = SessionProtocol()
        self.streams: dict[int, _Stream] = {}
        self.events: deque[Message] = deque()
        self.datagrams: deque[bytes] = deque()
        self.datagrams_dropped = 0
        self.waiter: asyncio.Future[None] | None = None
        self.established = False
        self.finished = False  # WT_CLOSE_SESSION or FIN sent: the app may send nothing more
        self.disconnected: Message | None = None
        self.max_datagram_size = 0
        # Our ids below these are not WebTransport streams (the CONNECT stream, HTTP/3's
        # control and QPACK streams); peer ids at or above these were never opened.
        self.first_own = {False: stream_id + 4, True: self.quic.get_next_available_stream_id(True)}
        self.next_peer = {False: 1, True: 3}
        # Server streams whose last event waits in the queue: they still hold stream credit.
        self.final_queued: set[int] = set()
        # WebTransport-level credit, renewed only if the draft has flow control.
        self.flow_control = uses_flow_control(draft)
        self.data_consumed = 0
        self.data_granted = WT_CREDIT.max_data
        self.streams_retired = {False: 0, True: 0}
        self.streams_granted = {False: WT_CREDIT.max_streams_bidi, True: WT_CREDIT.max_streams_uni}

    # --- network -> application -----------------------------------------------------

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
                self._consumed(message)
                return message
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _consumed(self, message: Message) -> None:
        """The session took ``message``: its data no longer holds flow-control credit, and
        a server stream whose last event it was gives the server credit for a new one."""
        kind = message["type"]
        if kind == "webtransport.stream.receive":
            stream_id = message["stream"]
            if message["data"]:
                if self.quic.release(stream_id, len(message["data"])):
                    self.connection.transmit_soon()
                self._data_consumed(len(message["data"]))
            final = message["end_stream"]
        elif kind == "webtransport.stream.reset":
            stream_id, final = message["stream"], True
        else:
            return
        if final and stream_id in self.final_queued:
            self.final_queued.discard(stream_id)
            if stream_id not in self.streams:
                self._retire(stream_id)

    def establish(self, max_datagram_size: int) -> None:
        """The server answered 2xx."""
        self.protocol.accept()
        self.established = True
        self.max_datagram_size = max_datagram_size

    def owns_bidi(self, stream_id: int) -> bool:
        """Our bidirectional streams carry no header in the server's direction, so their
        data must bypass aioquic's H3 parser, which would read it as HTTP/3 frames."""
        return is_client_initiated(stream_id) and stream_id in self.streams

    def stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            # QUIC delivers nothing for streams we forgot, so this is a new peer stream.
            refuse = self.disconnected is not None
            stream = self._peer_stream(stream_id, WT_SESSION_GONE if refuse else None)
        if end_stream:
            stream.drained = True
        if not stream.receiving:
            self._data_consumed(len(data))  # discarded, but the server spent credit on it
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

    def orphan_data(self, stream_id: int, end_stream: bool) -> None:
        """Data on a stream of another session: there is none on this connection."""
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self._peer_stream(stream_id, WT_SESSION_GONE)
        if end_stream:
            stream.drained = True
            self._maybe_forget(stream_id, stream)

    def _peer_stream(self, stream_id: int, refuse_with: int | None) -> _Stream:
        """Record a new server stream. One refused (it arrived after the session ended, or
        belongs to no session of ours) is never announced, and remembered until the
        server's reset or FIN so that its late data is recognised."""
        unidirectional = is_unidirectional(stream_id)
        self.next_peer[unidirectional] = max(self.next_peer[unidirectional], stream_id + 4)
        if refuse_with is None:
            stream = _Stream(receiving=True, sending=not unidirectional, drained=False)
        else:
            self.quic.stop_stream(stream_id, refuse_with)
            if not unidirectional:
                self.quic.reset_stream(stream_id, refuse_with)
            self.connection.transmit_soon()
            stream = _Stream(receiving=False, sending=False, drained=False)
        self.streams[stream_id] = stream
        return stream

    def stream_reset(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
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
        stream = self.streams.get(stream_id)
        if stream is None or not stream.sending:
            return
        stream.sending = False  # aioquic has already reset our side with the same code
        self._maybe_forget(stream_id, stream)
        self.connection.transmit_soon()
        self._push(
            {
                "type": "webtransport.stream.stop_sending",
                "stream": stream_id,
                "code": http3_to_app(error_code),
            }
        )

    def datagram(self, data: bytes) -> None:
        if self.disconnected is not None:
            return
        if len(self.datagrams) >= DATAGRAM_QUEUE_SIZE:
            self.datagrams.popleft()
            self.datagrams_dropped += 1
        self.datagrams.append(data)
        self._wake()

    def connect_stream_data(self, data: bytes, end_stream: bool) -> None:
        """Capsules from the server after its 2xx, and the FIN that ends the session."""
        if self.disconnected is not None:
            return
        try:
            events = self.protocol.receive_data(data, end_stream)
        except ProtocolError as exc:
            self.quic.reset_stream(self.stream_id, exc.http3_code)
            with contextlib.suppress(ValueError):  # aioquic discarded the finished stream
                self.quic.stop_stream(self.stream_id, exc.http3_code)
            self.finished = True
            self.terminate(0, f"protocol error: {exc}")
            return
        for event in events:
            if isinstance(event, SessionClosed):
                if not self.finished:
                    self.finished = True
                    self.connection.send_connect_data(b"", end_stream=True)
                self.terminate(event.code, event.reason)
            elif isinstance(event, SessionDraining):
                self._push({"type": "webtransport.drain"})

    def connection_lost(self) -> None:
        if self.disconnected is None:
            self.protocol.connection_lost()
            self.finished = True
            self.terminate(0, "", reset=False)

    def terminate(self, code: int, reason: str, *, reset: bool = True) -> None:
        """End the session: reset its streams (WT_SESSION_GONE) and tell the app last."""
        for stream_id, stream in list(self.streams.items()):
            if reset and stream.sending:
                self.quic.reset_stream(stream_id, WT_SESSION_GONE)
            if reset and not stream.drained:
                self.quic.stop_stream(stream_id, WT_SESSION_GONE)
            stream.sending = stream.receiving = False
            self._maybe_forget(stream_id, stream)
        self.connection.transmit_soon()
        self.disconnected = {"type": "webtransport.disconnect", "code": code, "reason": reason}
        self._push(self.disconnected)
        self.connection.wake_writers()

    def _retire(self, stream_id: int) -> None:
        """A server stream is done with: the server may open another."""
        self.quic.retire_peer_stream(stream_id)
        self.connection.transmit_soon()
        unidirectional = is_unidirectional(stream_id)
        self.streams_retired[unidirectional] += 1
        window = WT_CREDIT.max_streams_uni if unidirectional else WT_CREDIT.max_streams_bidi
        retired = self.streams_retired[unidirectional]
        if self.streams_granted[unidirectional] - retired < window // 2:
            self.streams_granted[unidirectional] = retired + window
            self._send_capsule(MaxStreams(not unidirectional, retired + window))

    def _data_consumed(self, size: int) -> None:
        self.data_consumed += size
        if self.data_granted - self.data_consumed < WT_CREDIT.max_data // 2:
            self.data_granted = self.data_consumed + WT_CREDIT.max_data
            self._send_capsule(MaxData(self.data_granted))

    def _send_capsule(self, capsule: Capsule) -> None:
        if self.flow_control and self.established and not self.finished:
            self.connection.send_connect_data(self.protocol.send_capsule(capsule), end_stream=False)

    def _final_event_queued(self, stream_id: int) -> None:
        if not is_client_initiated(stream_id):
            self.final_queued.add(stream_id)

    def _maybe_forget(self, stream_id: int, stream: _Stream) -> None:
        if stream.drained and not stream.sending:
            del self.streams[stream_id]
            self.connection.forget_h3_stream(stream_id)
            if not is_client_initiated(stream_id) and stream_id not in self.final_queued:
                self._retire(stream_id)

    # --- application -> network -----------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "webtransport.stream.send":
            await self._stream_send(
                message["stream"], message["data"], message.get("end_stream", False)
            )
        elif kind == "webtransport.datagram.send":
            await self._datagram_send(message["data"])
        elif kind == "webtransport.stream.open":
            self._open(bool(message["bidirectional"]))
        elif kind == "webtransport.stream.reset":
            self._reset(message["stream"], app_to_http3(message.get("code", 0)))
        elif kind == "webtransport.stream.stop_sending":
            self._stop(message["stream"], app_to_http3(message.get("code", 0)))
        elif kind == "webtransport.close":
            self.close(message.get("code", 0), message.get("reason", ""))
        elif kind == "webtransport.drain":
            self._check_open()
            self.connection.send_connect_data(self.protocol.drain(), end_stream=False)
        elif kind in ("webtransport.accept", "webtransport.reject"):
            raise RuntimeError(f"{kind} is for servers: connect() established this session")
        else:
            raise ValueError(f"unknown message type {kind!r}")

    def close(self, code: int = 0, reason: str = "") -> None:
        """WT_CLOSE_SESSION, then FIN, then reset the session's streams."""
        self._check_open()
        capsule = self.protocol.close(code, reason)
        self.finished = True
        self.connection.send_connect_data(capsule, end_stream=True)
        self.terminate(code, reason)

    def _check_open(self) -> None:
        if self.finished or self.disconnected is not None:
            raise SessionGone("the WebTransport session is closed")

    def _open(self, bidirectional: bool) -> None:
        self._check_open()
        stream_id = self.connection.h3.create_webtransport_stream(
            self.stream_id, is_unidirectional=not bidirectional
        )
        self.streams[stream_id] = _Stream(
            receiving=bidirectional, sending=True, drained=not bidirectional
        )
        self.connection.transmit_soon()
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
        ours = is_client_initiated(stream_id)
        if unidirectional and ours != write:
            mode = "write-only" if ours else "read-only"
            owner = "client" if ours else "server"
            raise ValueError(f"stream {stream_id} is a {owner} unidirectional stream: {mode}")
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream
        if ours and stream_id < self.first_own[unidirectional]:
            raise ValueError(f"stream {stream_id} is not a WebTransport stream of this session")
        if ours:
            opened = stream_id < self.quic.get_next_available_stream_id(unidirectional)
        else:
            opened = stream_id < self.next_peer[unidirectional]
        if not opened:
            raise ValueError(f"stream {stream_id} was never opened")
        return None

    def _reset(self, stream_id: int, code: int) -> None:
        stream = self._known(stream_id, write=True)
        if stream is None or not stream.sending:
            return
        self.quic.reset_stream(stream_id, code)
        stream.sending = False
        self._maybe_forget(stream_id, stream)
        self.connection.transmit_soon()

    def _stop(self, stream_id: int, code: int) -> None:
        stream = self._known(stream_id, write=False)
        if stream is None or not stream.receiving:
            return
        self.quic.stop_stream(stream_id, code)
        stream.receiving = False
        self.connection.transmit_soon()

    async def _stream_send(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        stream = self._known(stream_id, write=True)
        if stream is None or not stream.sending:
            return
        self.quic.send_stream_data(stream_id, data, end_stream)
        self.connection.transmit_soon()
        if end_stream:
            stream.sending = False
            self._maybe_forget(stream_id, stream)
            return
        while (
            stream.sending
            and self.disconnected is None
            and self.connection.buffered(stream_id) > STREAM_HIGH_WATER
        ):
            await self.connection.writable()

    async def _datagram_send(self, data: bytes) -> None:
        self._check_open()
        if len(data) > self.max_datagram_size:
            raise ValueError(
                f"datagram of {len(data)} bytes exceeds max_datagram_size {self.max_datagram_size}"
            )
        while self.connection.datagrams_pending() >= DATAGRAM_HIGH_WATER:
            await self.connection.writable()
            self._check_open()
        self.connection.h3.send_datagram(self.stream_id, data)
        self.connection.transmit_soon()


class _ClientProtocol(QuicConnectionProtocol):
    """One QUIC connection carrying one WebTransport session."""

    def __init__(
        self, quic: _ClientQuicConnection, certificate_hashes: Sequence[bytes] | None
    ) -> None:
        super().__init__(quic)
        self.quic = quic
        self._certificate_hashes = certificate_hashes
        self._h3: _ClientH3Connection | None = None
        self.channel: _SessionChannel | None = None
        loop = asyncio.get_running_loop()
        self.settings_received: asyncio.Future[None] = loop.create_future()
        self.response: asyncio.Future[list[tuple[bytes, bytes]]] = loop.create_future()
        self.failure: WebTransportConnectError | None = None
        self._writable: asyncio.Future[None] | None = None
        self._socket_closed = False

    @property
    def h3(self) -> _ClientH3Connection:
        if self._h3 is None:
            raise RuntimeError("HTTP/3 starts once the QUIC handshake has completed")
        return self._h3

    # --- plumbing used by the channel -------------------------------------------------

    def transmit_soon(self) -> None:
        """Many sends in one loop turn share one transmit."""
        self._transmit_soon()

    def transmit(self) -> None:
        if self._socket_closed:
            return  # a late transmit_soon() or timer; sending would only log errors
        super().transmit()
        self.wake_writers()

    async def writable(self) -> None:
        """Wait until acknowledgements or credit may have freed send capacity."""
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()
        await self._writable

    def wake_writers(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def buffered(self, stream_id: int) -> int:
        """Bytes of the stream not yet acknowledged by the peer."""
        stream = self.quic._streams.get(stream_id)
        return 0 if stream is None else len(stream.sender._buffer)

    def datagrams_pending(self) -> int:
        return len(self.quic._datagrams_pending)

    def forget_h3_stream(self, stream_id: int) -> None:
        """aioquic's H3 layer keeps per-stream state for WebTransport streams until both
        directions end, which ours may never do in its eyes."""
        if self._h3 is not None:
            self._h3._stream.pop(stream_id, None)

    def send_connect_data(self, data: bytes, *, end_stream: bool) -> None:
        assert self.channel is not None
        self.h3.send_data(self.channel.stream_id, data, end_stream)
        self.transmit_soon()

    def max_datagram_size(self, session_id: int) -> int:
        """The largest payload that fits one packet and the server's
        ``max_datagram_frame_size``: aioquic never sends a datagram too large for a packet,
        and keeps it at the head of its queue, blocking all later ones."""
        quic = self.quic
        packet = quic._max_datagram_size
        frame_room = packet - _SHORT_HEADER_OVERHEAD - len(quic._peer_cid.cid)
        room = frame_room - 1 - size_uint_var(frame_room)
        remote_limit = quic._remote_max_datagram_frame_size
        if remote_limit is None:
            return 0  # the server takes no DATAGRAM frames at all
        room = min(room, remote_limit - 1 - size_uint_var(remote_limit))
        return max(0, room - size_uint_var(session_id // 4))

    # --- QUIC events -----------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self._handshake_completed()
            return
        if isinstance(event, ConnectionTerminated):
            self._terminated(event)
            return
        h3 = self._h3
        if h3 is None:
            return
        channel = self.channel
        if channel is not None:
            if isinstance(event, StreamDataReceived) and channel.owns_bidi(event.stream_id):
                channel.stream_data(event.stream_id, event.data, event.end_stream)
                return
            if isinstance(event, StreamReset):
                if event.stream_id == channel.stream_id:
                    channel.connection_lost()
                else:
                    channel.stream_reset(event.stream_id, event.error_code)
                if channel.owns_bidi(event.stream_id):
                    return
            elif isinstance(event, StopSendingReceived):
                channel.stop_sending(event.stream_id, event.error_code)
        for h3_event in h3.handle_event(event):
            self._h3_event(h3_event)
        if not self.settings_received.done() and h3.received_settings is not None:
            self.settings_received.set_result(None)

    def _h3_event(self, event: H3Event) -> None:
        channel = self.channel
        if channel is None:
            return  # nothing can belong to a session before its CONNECT is sent
        if isinstance(event, WebTransportStreamDataReceived):
            if event.session_id == channel.stream_id:
                channel.stream_data(event.stream_id, event.data, event.stream_ended)
            else:
                channel.orphan_data(event.stream_id, event.stream_ended)
        elif isinstance(event, DatagramReceived):
            if event.stream_id == channel.stream_id:
                channel.datagram(event.data)
        elif isinstance(event, HeadersReceived):
            if event.stream_id == channel.stream_id and not self.response.done():
                self._response_received(channel, event)
        elif (
            isinstance(event, DataReceived)
            and event.stream_id == channel.stream_id
            and channel.established
        ):
            channel.connect_stream_data(event.data, event.stream_ended)

    def _response_received(self, channel: _SessionChannel, event: HeadersReceived) -> None:
        """Settle the session as the answer arrives: capsules may follow in the same
        packet, before ``connect()`` gets to run again."""
        status = _status(event.headers)
        if status is not None and 100 <= status < 200:
            return  # interim response
        self.response.set_result(event.headers)
        if status is not None and 200 <= status < 300:
            channel.establish(self.max_datagram_size(channel.stream_id))
            if event.stream_ended:
                channel.connect_stream_data(b"", True)

    def _handshake_completed(self) -> None:
        hashes = self._certificate_hashes
        if hashes is not None:
            certificate = self.quic.tls._peer_certificate
            assert certificate is not None
            info = describe_certificate(certificate)
            if info.sha256 not in hashes:
                self._fail(f"the server's certificate (sha256 {info.sha256_hex}) is not pinned")
                return
            if info.pinning_problems:
                self._fail(
                    "the pinned certificate is refused as browsers would refuse it: "
                    + "; ".join(info.pinning_problems)
                )
                return
        self._h3 = _ClientH3Connection(self.quic, enable_webtransport=True)

    def _fail(self, reason: str) -> None:
        self.failure = WebTransportConnectError(reason)
        self.quic.close(
            error_code=QuicErrorCode.CRYPTO_ERROR + AlertDescription.bad_certificate,
            reason_phrase=reason,
        )

    def _terminated(self, event: ConnectionTerminated) -> None:
        if self.failure is None:
            detail = f" ({event.reason_phrase})" if event.reason_phrase else ""
            self.failure = WebTransportConnectError(
                f"the QUIC connection closed with error {event.error_code:#x}{detail}"
            )
        for future in (self.settings_received, self.response):
            if not future.done():
                future.set_exception(self.failure)
                future.exception()  # retrieved: connect() may not be awaiting it
        if self.channel is not None:
            self.channel.connection_lost()
        self.wake_writers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket_closed = True
        for handle in (self._timer, self._transmit_task):
            if handle is not None:
                handle.cancel()
        self._timer = self._transmit_task = None
        if not self._closed.is_set():
            self._terminated(
                ConnectionTerminated(
                    error_code=QuicErrorCode.INTERNAL_ERROR,
                    frame_type=None,
                    reason_phrase=f"UDP socket closed: {exc}" if exc else "UDP socket closed",
                )
            )
            self._closed.set()


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    authority: str
    path: str


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"WebTransport URLs use https://, got {url!r}")
    if parts.fragment:
        raise ValueError(f"WebTransport URLs cannot have a fragment: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"WebTransport URLs cannot carry credentials: {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path = f"{path}?{quote(parts.query, safe=_URL_SAFE)}"
    return _Target(
        host=parts.hostname.encode("idna").decode("ascii"),
        port=parts.port or 443,
        authority=parts.netloc.encode("idna").decode("ascii"),
        path=path,
    )


def _request_headers(
    target: _Target,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    origin: str | None,
    protocols: Sequence[str] | None,
) -> list[tuple[bytes, bytes]]:
    request = [
        (b":method", b"CONNECT"),
        (b":protocol", b"webtransport"),
        (b":scheme", b"https"),
        (b":authority", target.authority.encode("ascii")),
        (b":path", target.path.encode("ascii")),
        (DRAFT02_HEADER + b"02", b"1"),
    ]
    if origin is not None:
        request.append((b"origin", origin.encode("ascii")))
    if protocols:
        offered = b", ".join(serialize_protocol(protocol) for protocol in protocols)
        request.append((b"wt-available-protocols", offered))
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in pairs:
        if name.startswith(":"):
            raise ValueError(f"pseudo-header {name!r} cannot be set; it comes from the URL")
        request.append((name.lower().encode("ascii"), value.encode("latin-1")))
    return request


def _quic_configuration(
    target: _Target,
    *,
    verify: bool,
    cafile: str | Path | None,
    certificate_hashes: Sequence[bytes] | None,
) -> QuicConfiguration:
    if certificate_hashes is not None:
        if cafile is not None or not verify:
            raise ValueError("certificate_hashes replace CA verification; drop cafile/verify")
        for digest in certificate_hashes:
            if len(digest) != hashlib.sha256().digest_size:
                raise ValueError(f"certificate hashes are 32-byte SHA-256 digests, got {digest!r}")
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=target.host,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
    )
    if certificate_hashes is not None or not verify:
        configuration.verify_mode = ssl.CERT_NONE
    elif cafile is not None:
        configuration.load_verify_locations(cafile=str(cafile))
    return configuration


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    verify: bool = True,
    cafile: str | Path | None = None,
    certificate_hashes: Sequence[bytes] | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    origin: str | None = None,
    protocols: Sequence[str] | None = None,
    timeout: float = 10.0,
    config: SessionConfig | None = None,
) -> AsyncIterator[WebTransportSession]:
    """Open a WebTransport session to ``url``; on exit close it and its connection.

    The server's certificate is verified against the system CAs, or ``cafile``; or, as
    browsers do with ``serverCertificateHashes``, only its SHA-256 is compared with
    ``certificate_hashes``. ``timeout`` bounds everything up to the server's 2xx. A
    non-2xx answer raises :class:`WebTransportConnectError` with its ``status``.
    """
    target = _parse_url(url)
    configuration = _quic_configuration(
        target, verify=verify, cafile=cafile, certificate_hashes=certificate_hashes
    )
    request = _request_headers(target, headers, origin, protocols)
    hashes = None if certificate_hashes is None else [bytes(h) for h in certificate_hashes]
    loop = asyncio.get_running_loop()
    transport: asyncio.DatagramTransport | None = None
    protocol: _ClientProtocol | None = None
    try:
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
                family, _, _, _, address = infos[0]
                quic = _ClientQuicConnection(configuration=configuration)
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _ClientProtocol(quic, hashes),
                    local_addr=("::" if family == socket.AF_INET6 else "0.0.0.0", 0),
                    family=family,
                )
                protocol.connect(address)
                channel, response_headers = await _establish(protocol, target, request)
        except TimeoutError:
            raise TimeoutError(f"no WebTransport session with {url} within {timeout} s") from None
        scope = _scope(transport, target, channel, response_headers, protocols, address)
        session = WebTransportSession(scope, channel.receive, channel.send, config=config)
        await session.initialize()
        try:
            yield session
        finally:
            await session.close()
    finally:
        if protocol is not None:
            protocol.transmit()  # once closing, aioquic sends nothing but CONNECTION_CLOSE
            protocol.close(error_code=ErrorCode.H3_NO_ERROR)
        if transport is not None:
            transport.close()


async def _establish(
    protocol: _ClientProtocol, target: _Target, request: list[tuple[bytes, bytes]]
) -> tuple[_SessionChannel, list[tuple[bytes, bytes]]]:
    """Handshake, wait for the server's SETTINGS, send the CONNECT, read the answer."""
    with contextlib.suppress(ConnectionError):  # protocol.failure says why
        await protocol.wait_connected()
    if protocol.failure is not None:
        raise protocol.failure
    await protocol.settings_received
    h3 = protocol.h3
    draft = negotiate_draft(h3.received_settings or {})
    if draft is None:
        raise WebTransportConnectError(
            f"{target.authority} does not offer WebTransport in its HTTP/3 SETTINGS"
        )
    stream_id = protocol.quic.get_next_available_stream_id()
    channel = protocol.channel = _SessionChannel(protocol, stream_id, draft)
    h3.send_headers(stream_id, request)
    protocol.transmit()
    headers = await protocol.response
    if not channel.established:
        status = _status(headers)
        if status is None:
            raise WebTransportConnectError(
                "the server's answer to the CONNECT has no valid :status"
            )
        raise WebTransportRejectedError(status, headers)
    return channel, [(name, value) for name, value in headers if not name.startswith(b":")]


def _status(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b":status":
            return int(value) if value.isdigit() else None
    return None


def _scope(
    transport: asyncio.DatagramTransport,
    target: _Target,
    channel: _SessionChannel,
    response_headers: list[tuple[bytes, bytes]],
    protocols: Sequence[str] | None,
    address: Any,
) -> dict[str, Any]:
    """The session's scope, seen from the client: ``headers`` are the server's response
    headers (what the peer said, as on the server side), ``server`` is the peer."""
    raw_path, _, query = target.path.encode("ascii").partition(b"?")
    local = transport.get_extra_info("sockname")
    local_address = (local[0], local[1]) if local else None
    remote_address = (address[0], address[1])
    return {
        "type": "webtransport",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "http_version": "3",
        "scheme": "https",
        "method": "CONNECT",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": response_headers,
        "client": local_address,
        "server": remote_address,
        "subprotocols": list(protocols or ()),
        "extensions": {
            "webtransport": {
                "role": "client",
                "session_id": f"client-{next(_session_ids)}",
                "stream_id": channel.stream_id,
                "draft": str(channel.draft),
                "max_datagram_size": channel.max_datagram_size,
                "connection": {
                    "id": channel.quic.host_cid.hex(),
                    "alpn": "h3",
                    "local": local_address,
                    "remote": remote_address,
                },
            }
        },
    }
