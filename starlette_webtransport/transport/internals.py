"""Every private name of aioquic (and of asyncio) the package relies on, in one place.

aioquic's public API does not reach far enough for WebTransport: its H3 layer keeps per-stream
state we must drop ourselves, and credit that follows what applications consume needs its
flow-control state. So the package reads and overrides a few private names; this module is
the only one that touches them (``tests/transport/test_internals.py`` scans the package for
strays), and the tuples below name them all, so that an aioquic upgrade is this one file to
audit. The same test checks every name against the installed aioquic, on real connections,
and fails with the missing name when a release drops or renames one.

Per release (``pyproject.toml`` pins ``aioquic>=1.7,<1.8``):

- 1.7.0, 1.7.1, 1.7.2: every name below exists, and the code of every aioquic method we
  override or call is the same in all three (``AUDITED_CODE``; the test compares it).
- 1.6 and earlier (back to 1.2): no ``_stream_limit`` nor ``_stream_is_discarded``, and
  stream credit grew by doubling MAX_STREAMS (``_write_connection_limits``) instead of
  coming back as streams are discarded, which our credit rules and override build on.
  The package does not run there.

To allow a new release: run the test against it. For each method ``AUDITED_CODE`` reports
as changed, read the release's code beside ours (the overrides mirror aioquic's bodies in
``transport/quic.py`` and ``transport/h3.py``), then record its new fingerprint.

The helpers are plain functions (no wrapper objects) because several sit on per-packet and
per-write paths.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection, H3Stream
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import END_STATES, Limit, QuicConnection
from aioquic.quic.packet_builder import QuicDeliveryHandler
from aioquic.quic.stream import QuicStream, QuicStreamSender
from aioquic.tls import Epoch
from cryptography import x509

QUIC_CONNECTION_OVERRIDES = (
    "_serialize_transport_parameters",  # advertise a smaller max_datagram_frame_size
    "_write_connection_limits",  # MAX_DATA / MAX_STREAMS from consumed data, not received
    "_write_stream_limits",  # MAX_STREAM_DATA likewise
)
"""``QuicConnection`` methods :class:`~.quic.WebTransportQuicConnection` overrides."""

QUIC_CONNECTION_METHODS = (
    "_on_connection_limit_delivery",
    "_on_max_stream_data_delivery",
    "_stream_is_discarded",
    "_stream_limit",
)
"""``QuicConnection`` private methods we call."""

QUIC_CONNECTION_ATTRIBUTES = (
    "_close_at",
    "_close_event",
    "_configuration",
    "_datagrams_pending",
    "_events",
    "_handshake_complete",
    "_local_max_data",
    "_local_max_streams_bidi",
    "_local_max_streams_uni",
    "_max_datagram_size",
    "_peer_cid",
    "_remote_max_datagram_frame_size",
    "_spaces",
    "_state",
    "_streams",
)
"""``QuicConnection`` private instance attributes we read (``_streams``, ``_configuration``
and the three limits' fields are also written)."""

H3_CONNECTION_OVERRIDES = ("_get_local_settings",)
"""``H3Connection`` methods :class:`~.h3.WebTransportH3Connection` overrides (our SETTINGS)."""

H3_CONNECTION_ATTRIBUTES = ("_stream",)
"""``H3Connection`` private instance attributes we read and write (its stream table)."""

STREAM_SENDER_ATTRIBUTES = ("_buffer", "_reset_error_code")
"""``QuicStreamSender`` private instance attributes we read."""

TLS_CONTEXT_ATTRIBUTES = ("_peer_certificate",)
"""``aioquic.tls.Context`` private instance attributes we read."""

PROTOCOL_METHODS = ("_transmit_soon",)
"""``aioquic.asyncio.QuicConnectionProtocol`` private methods the client calls."""

PROTOCOL_ATTRIBUTES = ("_closed", "_timer", "_transmit_task")
"""``QuicConnectionProtocol`` private instance attributes the client reads and writes."""

DATAGRAM_TRANSPORT_ATTRIBUTES = ("_sock",)
"""asyncio's datagram transport: its raw socket, read by the server's batched receive."""


AUDITED_CODE = {
    "QuicConnection._serialize_transport_parameters": "0837d8ca00d0741b",
    "QuicConnection._write_connection_limits": "68c4b3636ae35cfd",
    "QuicConnection._write_stream_limits": "f3979ce7fdff68a4",
    "QuicConnection._on_connection_limit_delivery": "63a7a3e6d6843421",
    "QuicConnection._on_max_stream_data_delivery": "f6d770b90751bca8",
    "QuicConnection._stream_is_discarded": "fee9f1144e5a53ff",
    "QuicConnection._stream_limit": "eae20b55f704fada",
    "H3Connection._get_local_settings": "1c5e489bfa887923",
    "QuicConnectionProtocol._transmit_soon": "22ef310e4e51f3b7",
}
"""The code of each aioquic private method we override or call, as audited (aioquic 1.7.0
to 1.7.2): the start of the SHA-256 of its source with docstring and annotations dropped
(``fingerprint`` in ``tests/transport/test_internals.py``)."""


# --- QuicConnection: flow control ------------------------------------------------------


def connection_limits(quic: QuicConnection) -> tuple[Limit, Limit, Limit]:
    """MAX_DATA, MAX_STREAMS (bidi) and MAX_STREAMS (uni) as we grant them; aioquic updates
    these objects in place."""
    return quic._local_max_data, quic._local_max_streams_bidi, quic._local_max_streams_uni


def stream_limit(quic: QuicConnection, stream_id: int) -> Limit:
    """The MAX_STREAMS limit (ours or the peer's) that counts ``stream_id``."""
    return quic._stream_limit(stream_id)


def connection_limit_delivered(quic: QuicConnection) -> QuicDeliveryHandler:
    """aioquic's delivery handler for a MAX_DATA / MAX_STREAMS frame (it resends on loss)."""
    return quic._on_connection_limit_delivery


def stream_limit_delivered(quic: QuicConnection) -> QuicDeliveryHandler:
    """aioquic's delivery handler for a MAX_STREAM_DATA frame (it resends on loss)."""
    return quic._on_max_stream_data_delivery


def replace_stream_table(quic: QuicConnection, table: dict[int, QuicStream]) -> None:
    """Give ``quic`` our stream table (aioquic only ever indexes, iterates and pops it)."""
    quic._streams = table


# --- QuicConnection: streams and datagrams ---------------------------------------------


def stream_discarded(quic: QuicConnection, stream_id: int) -> bool:
    """``stream_id`` was opened and aioquic has discarded its state since."""
    return quic._stream_is_discarded(stream_id)


def sender_reset(sender: QuicStreamSender) -> bool:
    """The sending side was reset (by us, or for the peer's STOP_SENDING)."""
    return sender._reset_error_code is not None


def unsent_bytes(sender: QuicStreamSender) -> int:
    """Bytes written to the stream that aioquic has not had acknowledged yet."""
    return len(sender._buffer)


def datagrams_pending(quic: QuicConnection) -> int:
    """DATAGRAM frames queued in aioquic and not sent yet."""
    return len(quic._datagrams_pending)


def events_pending(quic: QuicConnection) -> bool:
    """aioquic has events queued that ``next_event`` has not returned yet."""
    return bool(quic._events)


def packet_room(quic: QuicConnection) -> int:
    """Bytes of a packet left after the peer's connection id (the current path's size)."""
    return quic._max_datagram_size - len(quic._peer_cid.cid)


def peer_max_datagram_frame_size(quic: QuicConnection) -> int | None:
    """The peer's ``max_datagram_frame_size``; None: it takes no DATAGRAM frames."""
    return quic._remote_max_datagram_frame_size


# --- QuicConnection: state, timers, acknowledgements -----------------------------------


def ended(quic: QuicConnection) -> bool:
    """The connection is closing, draining or terminated."""
    return quic._state in END_STATES


def handshake_complete(quic: QuicConnection) -> bool:
    return quic._handshake_complete


def idle_timeout_due(quic: QuicConnection, now: float) -> bool:
    """``handle_timer(now)`` is about to end the connection for its idle timeout."""
    close_at = quic._close_at
    return close_at is not None and now >= close_at and quic._close_event is None


def ack_now(quic: QuicConnection, now: float) -> None:
    """Let a delayed 1-RTT acknowledgement go out with the next packet."""
    space = quic._spaces.get(Epoch.ONE_RTT)
    if space is not None and space.ack_at is not None and space.ack_at > now:
        space.ack_at = now


def swap_configuration(quic: QuicConnection, configuration: QuicConfiguration) -> None:
    """Replace the configuration ``quic`` reads from (``quic.configuration`` is read-only)."""
    quic._configuration = configuration


# --- H3Connection ------------------------------------------------------------------------


def h3_stream(h3: H3Connection, stream_id: int) -> H3Stream | None:
    return h3._stream.get(stream_id)


def remember_h3_stream(h3: H3Connection, stream: H3Stream) -> None:
    h3._stream[stream.stream_id] = stream


def forget_h3_stream(h3: H3Connection, stream_id: int) -> None:
    """Drop the H3 layer's state of a stream; it would otherwise keep it until both
    directions end, which for a WebTransport stream may be never in its eyes."""
    h3._stream.pop(stream_id, None)


# --- TLS and asyncio ---------------------------------------------------------------------


def peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer presented in the handshake."""
    return quic.tls._peer_certificate


def raw_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """asyncio's datagram transport's own non-blocking socket (``get_extra_info("socket")``
    is a wrapper that warns on reads); None for a transport without one."""
    raw = getattr(transport, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


# --- QuicConnectionProtocol (the client's asyncio driver) ------------------------------


def schedule_transmit(protocol: QuicConnectionProtocol) -> Callable[[], None]:
    """The protocol's "transmit on the next loop pass" (coalesces many writes)."""
    return protocol._transmit_soon


def stop_protocol_timers(protocol: QuicConnectionProtocol) -> None:
    """Cancel the protocol's pending timer and transmit: its socket is gone."""
    for handle in (protocol._timer, protocol._transmit_task):
        if handle is not None:
            handle.cancel()
    protocol._timer = protocol._transmit_task = None


def protocol_closed(protocol: QuicConnectionProtocol) -> asyncio.Event:
    """Set once the connection terminated; ``wait_closed()`` waits on it."""
    return protocol._closed
