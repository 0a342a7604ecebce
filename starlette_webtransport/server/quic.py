"""QUIC transport for hypercorn: a UDP server, a connection table and transmit scheduling.

hypercorn's own UDP path is correct for plain HTTP/3 but not for WebTransport load: it
queues at most ten packets and drops the rest (which QUIC then treats as congestion), it
transmits after every received packet, it re-creates a timer task on every transmit, and it
never enables QUIC DATAGRAM frames. We subclass its ``UDPServer`` and ``QuicProtocol`` so that
packets are read in batches and handled in the read callback itself (no task hop), a
connection whose packets woke no application transmits at once (as aioquic does), one whose
packets did transmits once, after those applications have answered, timers are plain loop
callbacks, and connections are
:class:`~starlette_webtransport.transport.WebTransportQuicConnection`, whose credit follows
what applications have actually consumed instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.h3.events import H3Event
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
)
from aioquic.quic.packet import (
    PACKET_TYPE_INITIAL,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.udp_server import UDPServer
from hypercorn.config import Config
from hypercorn.events import Event, RawData
from hypercorn.protocol.quic import QuicProtocol
from hypercorn.typing import AppWrapper, ConnectionState
from hypercorn.utils import parse_socket_addr

from ..protocol.errors import H3_INTERNAL_ERROR, H3_NO_ERROR
from ..transport import WebTransportQuicConnection, quic_configuration
from ..transport.internals import connection_limits, events_pending, raw_socket
from ..transport.limits import Limits
from .h3 import WebTransportH3Protocol
from .options import server_state

log = logging.getLogger("starlette_webtransport.server")

RECEIVE_BATCH = 64
"""Packets read from the socket per wake-up, beyond the one asyncio hands us."""

RECEIVE_SIZE = 65536
"""Read buffer: larger than any UDP payload, so no packet is ever truncated. asyncio's own
is 256 KiB, which glibc serves with an mmap and a munmap per read (about 20 µs, against
2 µs at 64 KiB)."""

EARLY_PACKETS = 4096
"""Packets held while the QUIC protocol is being set up, before it can take them."""

FLUSH_HOPS = 8
"""Loop turns a transmit may wait for the applications that received packets woke to
answer, so that the answer leaves with the acknowledgements in one packet: a session's
reader, its consumer and a task per stream are about three turns; a session setup through
Starlette about six."""


def limit_read_size(transport: asyncio.BaseTransport) -> bool:
    """Make asyncio's datagram transport read into a 64 KiB buffer instead of 256 KiB.

    ``max_size`` is the attribute its read path passes to ``recvfrom``; other event loops
    (uvloop) have none and size their buffers themselves. A test checks that asyncio still
    reads with it, so a Python that renames it fails a test instead of slowing down."""
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = RECEIVE_SIZE  # type: ignore[attr-defined]
        return True
    return False


EXHAUSTED_WINDOW = 64 * 1024
"""Initial connection window while the worker's receive budget is exhausted."""


class _Connection:
    """One QUIC connection and its transmit scheduling."""

    __slots__ = (
        "address",
        "cids",
        "h3",
        "http",
        "http_task",
        "protocol",
        "quic",
        "timer",
        "timer_at",
    )

    def __init__(
        self, protocol: WebTransportQuicProtocol, quic: WebTransportQuicConnection, address: Any
    ) -> None:
        self.protocol = protocol
        self.address = address
        self.cids: list[bytes] = []
        """A handful at most (the peer's active_connection_id_limit): a list is a third of
        an empty set's size, and every connection has one."""
        self.h3: WebTransportH3Protocol | None = None
        self.http: deque[H3Event] | None = None
        """Ordinary HTTP/3 events waiting for hypercorn, which handles them in a task;
        made by the first (a WebTransport-only connection never has one)."""
        self.http_task: asyncio.Task[None] | None = None
        self.quic = quic
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None

    # Bound methods rather than partials: a third of the size, and one per connection.
    def answer(self) -> Awaitable[None]:
        return self.protocol._answer(self)

    def schedule(self) -> None:
        self.protocol._schedule(self)


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
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(app, config, context, task_group, state, server, send)
        self._on_idle = on_idle
        self.quic_config = build_quic_configuration(config)
        self.connections: dict[bytes, _Connection] = {}  # type: ignore[assignment]
        self._sendto = sendto
        self._received: set[_Connection] = set()
        """Connections fed packets whose events are not handled yet."""
        self._to_flush: set[_Connection] = set()
        """Connections to transmit for once the woken applications have answered."""
        self._flush_handle: asyncio.Handle | None = None
        self._hops = 0
        self._answered = False
        self._loop = asyncio.get_running_loop()
        self._state = server_state(config)
        self._limits: Limits = Limits() if self._state is None else self._state.limits
        self._certificate_generation = (
            0 if self._state is None else self._state.certificate_generation
        )

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData):
            self.datagram_received(event.data, event.address)
            self.process()

    def datagram_received(self, data: bytes, address: Any) -> None:
        """Feed one UDP payload to its connection; its events wait for :meth:`process`."""
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
            quic.keep_alive = self._limits.keep_alive
            connection = _Connection(self, quic, address)
            if self._state is not None:
                self._budget(connection)
            connection.cids = [header.destination_cid, quic.host_cid]
            self.connections[header.destination_cid] = connection
            self.connections[quic.host_cid] = connection
        if connection is not None:
            connection.quic.receive_datagram(data, address, now=self._loop.time())
            connection.address = address
            self._received.add(connection)

    def process(self) -> None:
        """Handle the events of every connection that received packets, right away."""
        while self._received:
            self._handle_events_safely(self._received.pop())

    def _handle_events_safely(self, connection: _Connection) -> None:
        """Handle ``connection``'s events, then transmit: at once if no application was
        woken, else once the woken ones have answered. One connection's failure (a bug, an
        app error escaping hypercorn) closes that connection only."""
        try:
            woke = self._handle_events(connection)
        except Exception:
            log.exception("error while handling a QUIC connection; closing it")
            connection.quic.close(error_code=H3_INTERNAL_ERROR, reason_phrase="internal error")
            woke = False
        if woke:
            self._schedule(connection)
            return
        self._transmit(connection)
        if connection.h3 is not None:
            connection.h3.router.wake_writers()  # acknowledgements may have freed capacity

    def _handle_events(self, connection: _Connection) -> bool:  # type: ignore[override]
        """True if an application may have been woken (data for a session, a new one)."""
        quic = connection.quic
        woke = False
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
                    connection.address,
                    self.server,
                    quic,
                    connection.answer,
                )
            elif isinstance(event, ConnectionIdIssued):
                if event.connection_id not in connection.cids:
                    connection.cids.append(event.connection_id)
                self.connections[event.connection_id] = connection
            elif isinstance(event, ConnectionIdRetired):
                if event.connection_id in connection.cids:
                    connection.cids.remove(event.connection_id)
                self.connections.pop(event.connection_id, None)
            if connection.h3 is not None:
                http, routed = connection.h3.handle_nowait(event)
                woke = woke or routed
                if http:
                    if connection.http is None:
                        connection.http = deque(http)
                    else:
                        connection.http.extend(http)
                    if connection.http_task is None:
                        connection.http_task = self._loop.create_task(self._handle_http(connection))
            event = quic.next_event()
        return woke

    async def _handle_http(self, connection: _Connection) -> None:
        """hypercorn's part, ordinary HTTP/3 requests, in order, one task per connection."""
        try:
            while connection.http and connection.h3 is not None:
                await connection.h3.handle_http([connection.http.popleft()])
        except Exception:
            log.exception("error while handling an HTTP/3 request; closing the connection")
            connection.quic.close(error_code=H3_INTERNAL_ERROR, reason_phrase="internal error")
        finally:
            connection.http_task = None
        self._answer(connection)

    def _budget(self, connection: _Connection) -> None:
        """Count the connection's unread data against the worker's receive budget; while
        it is exhausted a new connection starts with a window just large enough for
        HTTP/3's control traffic and a CONNECT."""
        assert self._state is not None
        quic = connection.quic
        quic.budget = budget = self._state.budget
        quic.on_credit = connection.schedule
        if budget.exhausted():
            limit = connection_limits(quic)[0]
            limit.value = limit.sent = EXHAUSTED_WINDOW
            log.warning(
                "receive budget exhausted (%d bytes wait for apps): new connection gets "
                "a %d-byte window",
                budget.held,
                EXHAUSTED_WINDOW,
            )

    def _drop(self, connection: _Connection) -> None:
        connection.quic.settle()
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        for cid in connection.cids:
            self.connections.pop(cid, None)
        connection.cids = []
        if not self.connections:
            self._on_idle()

    def close_all(self) -> None:
        """Shutdown: close every QUIC connection (CONNECTION_CLOSE with H3_NO_ERROR)."""
        for connection in set(self.connections.values()):
            connection.quic.close(error_code=H3_NO_ERROR, reason_phrase="server shutting down")
            self._transmit(connection)

    def _schedule(self, connection: _Connection) -> None:
        """Transmit for ``connection`` once the applications its packets woke have
        answered (or after :data:`FLUSH_HOPS` loop turns): one packet instead of one with
        the acknowledgements now and another with the answer a few turns later."""
        self._to_flush.add(connection)
        if self._flush_handle is None:
            self._hops = 0
            self._flush_handle = self._loop.call_soon(self._flush_soon)

    def _answer(self, connection: _Connection) -> Awaitable[None]:
        """Something was queued to send on ``connection``: transmit at the next turn,
        where every send of this turn joins it."""
        self._answered = True
        self._to_flush.add(connection)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_soon)
        return _DONE

    def _flush_soon(self) -> None:
        if not self._answered and self._hops < FLUSH_HOPS:
            self._hops += 1
            self._flush_handle = self._loop.call_soon(self._flush_soon)
            return
        self._flush_handle = None
        self._answered = False
        to_flush, self._to_flush = self._to_flush, set()
        for connection in to_flush:
            self._transmit(connection)
            if connection.h3 is not None:
                connection.h3.router.wake_writers()
            if events_pending(connection.quic):
                self._handle_events_safely(connection)

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
        self._handle_events_safely(connection)

    async def send_all(self, connection: Any) -> None:
        self._transmit(connection)


class _Done:
    """An awaitable that is already complete: scheduling a flush never has to suspend."""

    def __await__(self) -> Any:
        return iter(())


_DONE = _Done()


def build_quic_configuration(config: Config) -> QuicConfiguration:
    state = server_state(config)
    limits = Limits() if state is None else state.limits
    quic_config = quic_configuration(is_client=False, idle_timeout=limits.idle_timeout)
    assert config.certfile is not None, "QUIC needs a certificate"
    quic_config.load_cert_chain(certfile=config.certfile, keyfile=config.keyfile)
    return quic_config


def size_socket_buffers(sock: socket.socket, limits: Limits) -> tuple[int, int]:
    """Ask for ``limits``' SO_RCVBUF/SO_SNDBUF and return what the kernel granted.

    The kernel's default receive buffer (about 200 KiB on Linux) overflows under a burst of
    handshakes, and each dropped packet costs a retransmission timeout. The kernel caps the
    request at ``net.core.rmem_max``/``wmem_max`` unless the process may force it
    (SO_RCVBUFFORCE, CAP_NET_ADMIN); Linux reports twice the size it books."""
    granted = []
    for option, force, size in (
        (socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None), limits.udp_receive_buffer),
        (socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None), limits.udp_send_buffer),
    ):
        if size:
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
                if force is not None and sock.getsockopt(socket.SOL_SOCKET, option) < size:
                    sock.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:
                pass  # not permitted to force: keep what the plain option gave
        granted.append(sock.getsockopt(socket.SOL_SOCKET, option))
    receive, send = granted
    log.info(
        "UDP socket buffers: receive %d bytes (asked %d), send %d bytes (asked %d)",
        receive,
        limits.udp_receive_buffer,
        send,
        limits.udp_send_buffer,
    )
    return receive, send


class WebTransportUDPServer(UDPServer):
    """hypercorn's UDP endpoint, handing packets in batches to the WebTransport protocol."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._early: deque[tuple[bytes, Any]] = deque(maxlen=EARLY_PACKETS)
        self._protocol: WebTransportQuicProtocol | None = None
        self._wakeup: asyncio.Event = asyncio.Event()
        self._socket: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        limit_read_size(transport)
        # asyncio's datagram transport reads one packet per loop iteration, which makes
        # every packet pay a whole pass of the loop and of our processing. The transport's
        # own non-blocking socket lets one wake-up read what is waiting.
        self._socket = raw_socket(transport)
        state = server_state(self.config)
        if self._socket is not None and state is not None:
            state.udp_buffers.append(size_socket_buffers(self._socket, state.limits))

    def datagram_received(self, data: bytes, address: Any) -> None:
        """Feed this packet and every other one waiting, then handle their events, all in
        asyncio's read callback: no queue, no task to wake."""
        protocol = self._protocol
        if protocol is None:
            self._early.append((data, address))
            return
        protocol.datagram_received(data, address)
        sock = self._socket
        if sock is not None:
            for _ in range(RECEIVE_BATCH):
                try:
                    data, address = sock.recvfrom(RECEIVE_SIZE)
                except OSError:  # BlockingIOError: nothing more waiting
                    break
                protocol.datagram_received(data, address)
        protocol.process()

    async def _wake_on(self, awaitable: Awaitable[object]) -> None:
        await awaitable
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
                self._wakeup.set,
            )
            self.protocol = self._protocol = protocol
            while self._early:
                protocol.datagram_received(*self._early.popleft())
            protocol.process()
            state = server_state(self.config)
            if state is not None:
                state.listening += 1
                if state.listening >= len(state.binds):
                    state.ready.set()
            terminated = self.context.terminated
            watcher = asyncio.ensure_future(self._wake_on(terminated.wait()))
            closing = False
            while not terminated.is_set() or not protocol.idle:
                if terminated.is_set() and not closing:
                    # Sessions were drained and closed already (serve()); what is left are
                    # QUIC connections, which would otherwise linger until they idle out.
                    closing = True
                    protocol.close_all()
                self._wakeup.clear()
                await self._wakeup.wait()
            watcher.cancel()
