"""A bare WebTransport peer on aioquic for adapter tests.

The library's client (``starlette_webtransport.client``) only produces valid traffic; these
tests also need to send what a broken or hostile peer sends (malformed capsules, bare FINs,
resets with odd codes, abrupt disconnects) and to see the server's raw QUIC/H3 events.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, H3Stream
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StopSendingReceived, StreamReset

from starlette_webtransport.protocol.errors import app_to_http3


class RawPeer(QuicConnectionProtocol):
    h3_class: type[H3Connection] = H3Connection
    """Subclass with another ``_get_local_settings`` to speak another draft."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = self.h3_class(self._quic, enable_webtransport=True)
        self.events: asyncio.Queue[H3Event | QuicEvent] = asyncio.Queue()
        self.stream_data: dict[int, bytearray] = {}
        self.stream_ended: dict[int, asyncio.Event] = {}
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.resets: dict[int, int] = {}
        self.stops: dict[int, int] = {}
        self.connect_data = bytearray()
        self.session_id: int | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self.resets[event.stream_id] = event.error_code
            self.events.put_nowait(event)
        elif isinstance(event, StopSendingReceived):
            self.stops[event.stream_id] = event.error_code
            self.events.put_nowait(event)
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, WebTransportStreamDataReceived):
                self.stream_data.setdefault(h3_event.stream_id, bytearray()).extend(h3_event.data)
                if h3_event.stream_ended:
                    self._ended(h3_event.stream_id).set()
            elif isinstance(h3_event, DatagramReceived):
                self.datagrams.put_nowait(h3_event.data)
            elif isinstance(h3_event, DataReceived) and h3_event.stream_id == self.session_id:
                self.connect_data.extend(h3_event.data)
                if h3_event.stream_ended:
                    self._ended(h3_event.stream_id).set()
            else:
                self.events.put_nowait(h3_event)

    def _ended(self, stream_id: int) -> asyncio.Event:
        return self.stream_ended.setdefault(stream_id, asyncio.Event())

    def reserve_session(self) -> int:
        """Take the next bidirectional stream id for a CONNECT to send later, so that
        streams of that session can be sent before it (they name it by this id)."""
        stream_id = self._quic.get_next_available_stream_id()
        self._quic._get_or_create_stream_for_send(stream_id)
        self.session_id = stream_id
        return stream_id

    async def open_session(
        self,
        path: str,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        timeout: float = 5.0,
        stream_id: int | None = None,
    ) -> tuple[int, dict[bytes, bytes]]:
        """Send the extended CONNECT (on ``stream_id`` if it was reserved); return the
        stream id and the response headers."""
        if stream_id is None:
            stream_id = self._quic.get_next_available_stream_id()
        self.session_id = stream_id
        self.h3.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"webtransport"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", path.encode()),
                (b"sec-webtransport-http3-draft02", b"1"),
                (b"origin", b"https://localhost"),
                *(headers or []),
            ],
        )
        self.transmit()
        while True:
            event = await asyncio.wait_for(self.events.get(), timeout)
            if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                return stream_id, dict(event.headers)

    def open_stream(self, *, unidirectional: bool = False) -> int:
        assert self.session_id is not None
        stream_id = self.h3.create_webtransport_stream(
            self.session_id, is_unidirectional=unidirectional
        )
        if not unidirectional:  # aioquic keeps no state for its own bidi WT streams
            stream = self.h3._stream[stream_id] = H3Stream(stream_id)
            stream.frame_type = FrameType.WEBTRANSPORT_STREAM
            stream.session_id = self.session_id
        self.transmit()
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._quic.send_stream_data(stream_id, data, end_stream)
        self.transmit()

    def send_connect_data(self, data: bytes, end_stream: bool = False) -> None:
        assert self.session_id is not None
        self.h3.send_data(self.session_id, data, end_stream)
        self.transmit()

    def reset(self, stream_id: int, code: int) -> None:
        self._quic.reset_stream(stream_id, app_to_http3(code))
        self.transmit()

    def stop(self, stream_id: int, code: int) -> None:
        self._quic.stop_stream(stream_id, app_to_http3(code))
        self.transmit()

    def send_datagram(self, data: bytes) -> None:
        assert self.session_id is not None
        self.h3.send_datagram(self.session_id, data)
        self.transmit()

    async def read_stream(self, stream_id: int, timeout: float = 5.0) -> bytes:
        await asyncio.wait_for(self._ended(stream_id).wait(), timeout)
        return bytes(self.stream_data.get(stream_id, b""))

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def raw_peer(
    port: int,
    *,
    host: str = "127.0.0.1",
    peer_class: type[RawPeer] = RawPeer,
    **quic_options: Any,
) -> AsyncIterator[RawPeer]:
    """A connected peer; ``quic_options`` go to its ``QuicConfiguration`` (a browser's
    packet size as ``max_datagram_size``, say)."""
    options: dict[str, Any] = {"max_datagram_frame_size": 65536, **quic_options}
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, **options)
    configuration.verify_mode = ssl.CERT_NONE
    async with connect(
        host, port, configuration=configuration, create_protocol=peer_class, wait_connected=True
    ) as peer:
        assert isinstance(peer, RawPeer)
        yield peer
