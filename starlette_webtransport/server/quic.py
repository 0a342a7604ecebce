"""QUIC transport for hypercorn: a UDP server, a connection table and flow control.

hypercorn's own UDP path is correct for plain HTTP/3 but not for WebTransport load: it
queues at most ten packets and drops the rest (which QUIC then treats as congestion), it
transmits after every received packet, it re-creates a timer task on every transmit, and it
never enables QUIC DATAGRAM frames. We subclass its ``UDPServer`` and ``QuicProtocol`` so that
packets are read in batches, every connection that has something to say transmits once per
batch, timers are plain loop callbacks, and receive windows slide with what applications have
actually consumed instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, stream_is_client_initiated
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
)
from aioquic.quic.packet import (
    PACKET_TYPE_INITIAL,
    QuicFrameType,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.udp_server import UDPServer
from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.protocol.quic import QuicProtocol
from hypercorn.typing import AppWrapper, ConnectionState
from hypercorn.utils import parse_socket_addr

from ..protocol.errors import H3_INTERNAL_ERROR
from .h3 import WebTransportH3Protocol

log = logging.getLogger("starlette_webtransport.server")

MAX_DATAGRAM_FRAME_SIZE = 65536
"""Advertised ``max_datagram_frame_size``: without it browsers open sessions but silently
lose every datagram."""

CONNECTION_WINDOW = 4 * 1024 * 1024
"""Bytes a peer may have in flight on one connection beyond what applications consumed."""

STREAM_WINDOW = 1024 * 1024
"""Bytes a peer may have in flight on one stream beyond what the application consumed."""

MAX_STREAMS = 128
"""Concurrent streams per direction a peer may open on one connection."""

UDP_QUEUE_SIZE = 4096
"""Packets held between the socket and the QUIC state machine. Far larger than hypercorn's
ten so that bursts are not mistaken for congestion; bounded so a flood cannot grow memory."""


class WebTransportQuicConnection(QuicConnection):
    """aioquic's connection with receive windows that follow application consumption.

    aioquic doubles a window whenever half of it has been *received*, so a peer that sends
    faster than the application reads can grow the server's buffers without bound. Here a
    window is always "consumed + window size": data sitting in a session's queue holds the
    credit back until the app takes it. Non-WebTransport streams count as consumed on
    receipt, which gives them a plain sliding window.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unconsumed: dict[int, int] = {}
        self.unconsumed_total = 0

    def hold(self, stream_id: int, size: int) -> None:
        """Count ``size`` received bytes of a stream as waiting for the application."""
        self.unconsumed[stream_id] = self.unconsumed.get(stream_id, 0) + size
        self.unconsumed_total += size

    def release(self, stream_id: int, size: int) -> bool:
        """Count ``size`` bytes as consumed; True when new credit is worth sending now."""
        remaining = self.unconsumed.get(stream_id, 0) - size
        if remaining > 0:
            self.unconsumed[stream_id] = remaining
        else:
            self.unconsumed.pop(stream_id, None)
        self.unconsumed_total -= size
        limit = self._local_max_data
        consumed = limit.used - self.unconsumed_total
        if limit.value - consumed < CONNECTION_WINDOW // 2:
            return True
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        stream_consumed = stream.receiver.highest_offset - self.unconsumed.get(stream_id, 0)
        return stream.max_stream_data_local - stream_consumed < STREAM_WINDOW // 2

    def forget(self, stream_id: int) -> None:
        """The stream is gone: whatever it held no longer counts against the connection."""
        size = self.unconsumed.pop(stream_id, 0)
        self.unconsumed_total -= size

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        limit = self._local_max_data
        consumed = limit.used - self.unconsumed_total
        if limit.value - consumed < CONNECTION_WINDOW // 2:
            limit.value = consumed + CONNECTION_WINDOW
        for limit in (
            self._local_max_data,
            self._local_max_streams_bidi,
            self._local_max_streams_uni,
        ):
            if limit is not self._local_max_data and (
                limit.sent - limit.used >= limit.value - limit.sent
            ):
                continue
            if limit.value != limit.sent:
                buf = builder.start_frame(
                    limit.frame_type,
                    capacity=9,
                    handler=self._on_connection_limit_delivery,
                    handler_args=(limit,),
                )
                buf.push_uint_var(limit.value)
                limit.sent = limit.value

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        if not stream.max_stream_data_local or stream_id is None:
            return
        consumed = stream.receiver.highest_offset - self.unconsumed.get(stream_id, 0)
        if stream.max_stream_data_local - consumed < STREAM_WINDOW // 2:
            stream.max_stream_data_local = consumed + STREAM_WINDOW
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=17,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local


def is_peer_stream(stream_id: int) -> bool:
    """Server view: was the stream opened by the client?"""
    return stream_is_client_initiated(stream_id)


class _Connection:
    """One QUIC connection and its transmit scheduling."""

    __slots__ = ("address", "cids", "h3", "quic", "timer", "timer_at")

    def __init__(self, quic: WebTransportQuicConnection, address: Any) -> None:
        self.address = address
        self.cids: set[bytes] = set()
        self.h3: WebTransportH3Protocol | None = None
        self.quic = quic
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None


class WebTransportQuicProtocol(QuicProtocol):
    """hypercorn's QUIC protocol with batched transmits, cheap timers and WebTransport."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: Any,
        task_group: TaskGroup,
        state: ConnectionState,
        server: tuple[str, int] | None,
        send: Callable[[Event], Awaitable[None]],
        sendto: Callable[[bytes, Any], None],
    ) -> None:
        super().__init__(app, config, context, task_group, state, server, send)
        self.quic_config = build_quic_configuration(config)
        self.connections: dict[bytes, _Connection] = {}  # type: ignore[assignment]
        self._sendto = sendto
        self._dirty: set[_Connection] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._loop = asyncio.get_running_loop()
        self._state = getattr(config, "webtransport_state", None)
        self._certificate_generation = (
            0 if self._state is None else self._state.certificate_generation
        )

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData):
            self.datagram_received(event.data, event.address)
            await self.process()

    def datagram_received(self, data: bytes, address: Any) -> None:
        """Feed one UDP payload to its connection; transmitting waits for :meth:`flush`."""
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except ValueError:
            return
        if header.version is not None and header.version not in self.quic_config.supported_versions:
            self._sendto(
                encode_quic_version_negotiation(
                    source_cid=header.destination_cid,
                    destination_cid=header.source_cid,
                    supported_versions=self.quic_config.supported_versions,
                ),
                address,
            )
            return
        connection = self.connections.get(header.destination_cid)
        if (
            connection is None
            and self._state is not None
            and self._state.certificate_generation != self._certificate_generation
        ):
            self._certificate_generation = self._state.certificate_generation
            self.quic_config = build_quic_configuration(self.config)
        if (
            connection is None
            and len(data) >= 1200
            and header.packet_type == PACKET_TYPE_INITIAL
            and not self.context.terminated.is_set()
        ):
            quic = WebTransportQuicConnection(
                configuration=self.quic_config,
                original_destination_connection_id=header.destination_cid,
            )
            connection = _Connection(quic, address)
            connection.cids = {header.destination_cid, quic.host_cid}
            self.connections[header.destination_cid] = connection
            self.connections[quic.host_cid] = connection
        if connection is not None:
            connection.quic.receive_datagram(data, address, now=self._loop.time())
            connection.address = address
            self._dirty.add(connection)

    async def process(self) -> None:
        """Handle the events of every connection that received packets, then transmit."""
        while self._dirty:
            connection = self._dirty.pop()
            await self._handle_events_safely(connection, connection.address)

    async def _handle_events_safely(self, connection: _Connection, client: Any) -> None:
        """One connection's failure (a bug, an app error escaping hypercorn) closes that
        connection only; every other connection on the socket keeps working."""
        try:
            await self._handle_events(connection, client)
        except Exception:
            log.exception("error while handling a QUIC connection; closing it")
            connection.quic.close(error_code=H3_INTERNAL_ERROR, reason_phrase="internal error")
            self._transmit(connection)

    async def _handle_events(self, connection: _Connection, client: Any = None) -> None:  # type: ignore[override]
        quic = connection.quic
        event: QuicEvent | None = quic.next_event()
        while event is not None:
            if isinstance(event, ConnectionTerminated):
                self._drop(connection)
            elif isinstance(event, ProtocolNegotiated):
                connection.h3 = WebTransportH3Protocol(
                    self.app,
                    self.config,
                    self.context,
                    self.task_group,
                    self.state,
                    client,
                    self.server,
                    quic,
                    lambda c=connection: self._schedule(c),  # type: ignore[misc]
                )
            elif isinstance(event, ConnectionIdIssued):
                connection.cids.add(event.connection_id)
                self.connections[event.connection_id] = connection
            elif isinstance(event, ConnectionIdRetired):
                connection.cids.discard(event.connection_id)
                self.connections.pop(event.connection_id, None)
            if connection.h3 is not None:
                await connection.h3.handle(event)
            event = quic.next_event()
        self._transmit(connection)
        if connection.h3 is not None:
            connection.h3.wake_writers()

    def _drop(self, connection: _Connection) -> None:
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        for cid in connection.cids:
            self.connections.pop(cid, None)
        connection.cids = set()

    def _schedule(self, connection: _Connection) -> Awaitable[None]:
        """Ask for a transmit at the end of this loop turn; many sends share one flush."""
        self._dirty.add(connection)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_soon)
        return _DONE

    def _flush_soon(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        for connection in dirty:
            self._transmit(connection)
            if connection.h3 is not None:
                connection.h3.wake_writers()
            if connection.quic._events:
                self._loop.create_task(self._handle_events_safely(connection, None))

    def _transmit(self, connection: _Connection) -> None:
        quic = connection.quic
        sendto = self._sendto
        for data, address in quic.datagrams_to_send(now=self._loop.time()):
            sendto(data, address)
        timer_at = quic.get_timer()
        if timer_at != connection.timer_at:
            if connection.timer is not None:
                connection.timer.cancel()
            connection.timer_at = timer_at
            connection.timer = (
                None
                if timer_at is None
                else self._loop.call_at(timer_at, self._on_timer, connection)
            )

    def _on_timer(self, connection: _Connection) -> None:
        connection.timer = None
        connection.timer_at = None
        connection.quic.handle_timer(now=self._loop.time())
        self._loop.create_task(self._handle_events_safely(connection, None))

    async def send_all(self, connection: Any) -> None:
        self._transmit(connection)


class _Done:
    """An awaitable that is already complete: scheduling a flush never has to suspend."""

    def __await__(self) -> Any:
        return iter(())


_DONE = _Done()


def build_quic_configuration(config: Config) -> QuicConfiguration:
    quic_config = QuicConfiguration(
        alpn_protocols=H3_ALPN,
        is_client=False,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        max_data=CONNECTION_WINDOW,
        max_stream_data=STREAM_WINDOW,
    )
    assert config.certfile is not None, "QUIC needs a certificate"
    quic_config.load_cert_chain(certfile=config.certfile, keyfile=config.keyfile)
    return quic_config


class WebTransportUDPServer(UDPServer):
    """hypercorn's UDP endpoint, reading packets in batches into the WebTransport protocol."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._packets: deque[tuple[bytes, Any]] = deque()
        self._wakeup: asyncio.Event = asyncio.Event()
        self.dropped_packets = 0

    def datagram_received(self, data: bytes, address: Any) -> None:
        if len(self._packets) >= UDP_QUEUE_SIZE:
            self.dropped_packets += 1
            return
        self._packets.append((data, address))
        self._wakeup.set()

    async def run(self) -> None:
        assert self.transport is not None
        transport = self.transport
        sock = transport.get_extra_info("socket")
        server = parse_socket_addr(sock.family, sock.getsockname())
        async with TaskGroup(self.loop) as task_group:
            protocol = WebTransportQuicProtocol(
                self.app,
                self.config,
                self.context,
                task_group,
                ConnectionState(self.state.copy()),
                server,
                self.protocol_send,
                transport.sendto,
            )
            self.protocol = protocol
            state = getattr(self.config, "webtransport_state", None)
            if state is not None:
                state.listening += 1
                if state.listening >= len(state.binds):
                    state.ready.set()
            packets = self._packets
            while not self.context.terminated.is_set() or not protocol.idle:
                if not packets:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), 1.0)
                    except TimeoutError:
                        continue
                while packets:
                    data, address = packets.popleft()
                    protocol.datagram_received(data, address)
                await protocol.process()
