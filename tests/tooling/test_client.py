"""The Python client against a raw aioquic WebTransport server on loopback.

The server below is written directly on ``aioquic.asyncio.serve`` and aioquic's own
``H3Connection(enable_webtransport=True)``, independent of our hypercorn adapter, so the
client is checked against a second implementation of the wire protocol. Its behaviour
is chosen by the request path.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

from starlette_webtransport.client import (
    WebTransportConnectError,
    WebTransportRejectedError,
    connect,
    connection,
)
from starlette_webtransport.client.connection import STREAM_HIGH_WATER
from starlette_webtransport.protocol.capsules import (
    CapsuleParser,
    CloseSession,
    DrainSession,
    MaxData,
    MaxStreams,
    encode_capsule,
)
from starlette_webtransport.protocol.errors import app_to_http3, http3_to_app
from starlette_webtransport.protocol.settings import (
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
    SETTINGS_WT_MAX_SESSIONS,
    FlowControlLimits,
)
from starlette_webtransport.server.certs import DevCertificate
from starlette_webtransport.server.devcert import make_dev_certificate
from starlette_webtransport.session import (
    DatagramTooLargeError,
    SessionConfig,
    SessionRejectedError,
    StreamResetError,
    StreamStoppedError,
)
from starlette_webtransport.transport import STREAM_WINDOW

FLOOD_SIZE = 3 * 1024 * 1024
BIG_STREAM = 300 * 1024
"""More than the session's default stream_buffer_size (256 KiB), at which a session on a
1.0 server would stop its reader."""
SMALL_STREAMS = 300
CREDIT_DATA = 200 * 1024
CREDIT_STREAMS = 10


@dataclass
class Record:
    """What the raw server saw, for the tests to inspect."""

    requests: list[dict[bytes, bytes]] = field(default_factory=list)
    capsules: list[Any] = field(default_factory=list)
    connect_fin: asyncio.Event = field(default_factory=asyncio.Event)
    received: dict[int, int] = field(default_factory=dict)
    resets: list[tuple[int, int]] = field(default_factory=list)
    stops: list[tuple[int, int]] = field(default_factory=list)
    flood_stream: int | None = None
    protocols: list[RawWebTransportServer] = field(default_factory=list)


class Draft13H3Connection(H3Connection):
    """Also offers draft-13 (WT_MAX_SESSIONS) with credit of its own, so that the session
    has WebTransport flow control."""

    def _get_local_settings(self) -> dict[int, int]:
        return {
            **super()._get_local_settings(),
            SETTINGS_WT_MAX_SESSIONS: 1,
            SETTINGS_WT_INITIAL_MAX_DATA: 16 * 1024 * 1024,
            SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI: 100,
            SETTINGS_WT_INITIAL_MAX_STREAMS_UNI: 100,
        }


class RawWebTransportServer(QuicConnectionProtocol):
    def __init__(
        self, *args: Any, record: Record, webtransport: bool, draft13: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.record = record
        self.webtransport = webtransport
        self.draft13 = draft13
        self.h3: H3Connection | None = None
        self.session: int | None = None
        self.path = b""
        self.own_bidi: set[int] = set()
        self.uni_echo: dict[int, int] = {}
        self.parser = CapsuleParser()
        self.session_finished = False
        self.credit_queue: list[int] = []
        """Sizes of the streams /credit still has to send, within the client's credit."""
        self.credit_stream: int | None = None
        self.credit_sent = self.credit_opened = 0
        record.protocols.append(self)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            h3_class = Draft13H3Connection if self.draft13 else H3Connection
            self.h3 = h3_class(self._quic, enable_webtransport=self.webtransport)
        if self.h3 is None:
            return
        if isinstance(event, StreamDataReceived) and event.stream_id in self.own_bidi:
            # aioquic's H3 layer would parse the reply on our own stream as frames.
            self.record.received[event.stream_id] = self.record.received.get(
                event.stream_id, 0
            ) + len(event.data)
            return
        if isinstance(event, StreamReset):
            self.record.resets.append((event.stream_id, event.error_code))
            if event.stream_id & 0x2 == 0 and event.stream_id != self.session:
                self._quic.reset_stream(event.stream_id, event.error_code)  # mirror it back
        elif isinstance(event, StopSendingReceived):
            self.record.stops.append((event.stream_id, event.error_code))
        for h3_event in self.h3.handle_event(event):
            self.h3_event_received(h3_event)
        if self.credit_queue:
            self.send_within_credit()

    def h3_event_received(self, event: Any) -> None:
        assert self.h3 is not None
        if isinstance(event, HeadersReceived) and self.session is None:
            self.connect_received(event)
        elif isinstance(event, DataReceived) and event.stream_id == self.session:
            self.record.capsules.extend(self.parser.feed(event.data))
            self.send_within_credit()
            if event.stream_ended:
                self.record.connect_fin.set()
                if not self.session_finished:
                    self.session_finished = True
                    self.h3.send_data(event.stream_id, b"", end_stream=True)
        elif isinstance(event, WebTransportStreamDataReceived):
            self.stream_received(event)
        elif isinstance(event, DatagramReceived) and self.path == b"/many":
            for _ in range(SMALL_STREAMS):
                small = self.h3.create_webtransport_stream(event.stream_id, is_unidirectional=True)
                self._quic.send_stream_data(small, b"x", end_stream=True)
        elif isinstance(event, DatagramReceived):
            self.h3.send_datagram(event.stream_id, event.data)

    def connect_received(self, event: HeadersReceived) -> None:
        assert self.h3 is not None
        headers = dict(event.headers)
        self.record.requests.append(headers)
        self.path = headers[b":path"]
        stream_id = event.stream_id
        if self.path == b"/reject":
            self.h3.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
            return
        response = [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        if b"wt-available-protocols" in headers:
            first = headers[b"wt-available-protocols"].split(b",")[0].strip()
            response.append((b"wt-protocol", first))
        self.h3.send_headers(stream_id, response)
        self.session = stream_id
        quic = self._quic
        if self.path == b"/close":
            self.h3.send_data(stream_id, encode_capsule(CloseSession(7, "bye")), end_stream=True)
            self.session_finished = True
        elif self.path == b"/drain":
            self.h3.send_data(stream_id, encode_capsule(DrainSession()), end_stream=False)
        elif self.path == b"/push":
            uni = self.h3.create_webtransport_stream(stream_id, is_unidirectional=True)
            quic.send_stream_data(uni, b"uni hello", end_stream=True)
            bidi = self.h3.create_webtransport_stream(stream_id)
            self.own_bidi.add(bidi)
            quic.send_stream_data(bidi, b"bidi hello")
        elif self.path == b"/many":
            uni = self.h3.create_webtransport_stream(stream_id, is_unidirectional=True)
            quic.send_stream_data(uni, bytes(BIG_STREAM))
            self.record.flood_stream = uni
        elif self.path == b"/credit":
            self.credit_queue = [CREDIT_DATA, *[1] * CREDIT_STREAMS]
            self.send_within_credit()
        elif self.path == b"/flood":
            uni = self.h3.create_webtransport_stream(stream_id, is_unidirectional=True)
            quic.send_stream_data(uni, bytes(FLOOD_SIZE), end_stream=True)
            self.record.flood_stream = uni

    def send_within_credit(self) -> None:
        """Send what /credit has left as far as the client's WebTransport credit (its
        SETTINGS, then its WT_MAX_DATA / WT_MAX_STREAMS) allows."""
        assert self.h3 is not None
        settings = self.h3.received_settings
        if settings is None:
            return  # the CONNECT overtook the client's SETTINGS; they are on the way
        data_limit = settings[SETTINGS_WT_INITIAL_MAX_DATA]
        uni_limit = settings[SETTINGS_WT_INITIAL_MAX_STREAMS_UNI]
        for capsule in self.record.capsules:
            if isinstance(capsule, MaxData):
                data_limit = max(data_limit, capsule.maximum)
            elif isinstance(capsule, MaxStreams) and not capsule.bidirectional:
                uni_limit = max(uni_limit, capsule.maximum)
        while self.credit_queue and self.session is not None:
            if self.credit_stream is None:
                if self.credit_opened >= uni_limit:
                    return
                self.credit_opened += 1
                self.credit_stream = self.h3.create_webtransport_stream(
                    self.session, is_unidirectional=True
                )
            size = self.credit_queue[0]
            part = min(size, data_limit - self.credit_sent)
            if part < size and not part:
                return
            self._quic.send_stream_data(self.credit_stream, bytes(part), end_stream=part == size)
            self.credit_sent += part
            if part == size:
                self.credit_queue.pop(0)
                self.credit_stream = None
            else:
                self.credit_queue[0] -= part

    def stream_received(self, event: WebTransportStreamDataReceived) -> None:
        assert self.h3 is not None
        stream_id = event.stream_id
        self.record.received[stream_id] = self.record.received.get(stream_id, 0) + len(event.data)
        quic = self._quic
        if self.path == b"/stop":
            quic.stop_stream(stream_id, app_to_http3(9))

        elif self.path == b"/sink":
            pass
        elif stream_id & 0x2 == 0:
            quic.send_stream_data(stream_id, event.data, event.stream_ended)
        else:
            if stream_id not in self.uni_echo:
                self.uni_echo[stream_id] = self.h3.create_webtransport_stream(
                    event.session_id, is_unidirectional=True
                )
            quic.send_stream_data(self.uni_echo[stream_id], event.data, event.stream_ended)

    def peer_stream_window(self, stream_id: int) -> int:
        """How far the client lets us send on ``stream_id`` (all of it once aioquic
        discarded the stream, which means everything was sent and acknowledged)."""
        stream = self._quic._streams.get(stream_id)
        return FLOOD_SIZE if stream is None else int(stream.max_stream_data_remote)


@dataclass
class RawServer:
    port: int
    certificate: DevCertificate
    certfile: Path
    record: Record

    def url(self, path: str = "/echo") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @property
    def pin(self) -> list[bytes]:
        return [self.certificate.sha256]


@asynccontextmanager
async def raw_server(
    tmp_path: Path, *, webtransport: bool = True, draft13: bool = False
) -> AsyncIterator[RawServer]:
    files = make_dev_certificate(directory=tmp_path)
    certificate, certfile = files.certificate, files.certfile
    configuration = QuicConfiguration(
        is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536
    )
    configuration.load_cert_chain(files.certfile, files.keyfile)
    record = Record()

    def create_protocol(*args: Any, **kwargs: Any) -> RawWebTransportServer:
        return RawWebTransportServer(
            *args, record=record, webtransport=webtransport, draft13=draft13, **kwargs
        )

    server: QuicServer = await serve(
        "127.0.0.1", 0, configuration=configuration, create_protocol=create_protocol
    )
    port = server._transport.get_extra_info("sockname")[1]
    try:
        yield RawServer(port=port, certificate=certificate, certfile=certfile, record=record)
    finally:
        server.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RawServer]:
    async with raw_server(tmp_path) as running:
        yield running


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` for up to five seconds (the raw server has no events to await)."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


# --- establishing sessions ---------------------------------------------------------------


async def test_pinned_session_reports_scope(server: RawServer) -> None:
    async with connect(server.url("/echo?x=1"), certificate_hashes=server.pin) as session:
        assert session.role == "client"
        assert session.is_ready
        assert session.path == "/echo"
        assert session.query_params["x"] == "1"
        assert session.headers["sec-webtransport-http3-draft"] == "draft02"
        extension = session.scope["extensions"]["webtransport"]
        assert extension["draft"] == "draft02"  # aioquic offers only ENABLE_WEBTRANSPORT
        assert extension["stream_id"] == 0
        assert 1100 < session.datagrams.max_datagram_size < 1200


async def test_connect_request_carries_what_servers_key_on(server: RawServer) -> None:
    async with connect(
        server.url("/echo"),
        certificate_hashes=server.pin,
        origin="https://example.test",
        protocols=["chat.v2", "chat.v1"],
        headers={"X-Token": "abc"},
    ) as session:
        assert session.protocol == "chat.v2"
    request = server.record.requests[0]
    assert request[b":method"] == b"CONNECT"
    assert request[b":protocol"] == b"webtransport"
    assert request[b":scheme"] == b"https"
    assert request[b":authority"] == f"127.0.0.1:{server.port}".encode()
    assert request[b":path"] == b"/echo"
    assert request[b"sec-webtransport-http3-draft02"] == b"1"
    assert request[b"origin"] == b"https://example.test"
    assert request[b"wt-available-protocols"] == b'"chat.v2", "chat.v1"'
    assert request[b"x-token"] == b"abc"
    settings = server.record.protocols[0].h3.received_settings  # type: ignore[union-attr]
    assert settings is not None
    assert settings[0x2B603742] == 1  # ENABLE_WEBTRANSPORT (draft-02), what Chrome sends
    assert settings[0x33] == 1  # H3_DATAGRAM
    assert settings[0x14E9CD29] == 1  # WT_MAX_SESSIONS (draft-13)
    assert settings[0x2C7CF000] == 1  # WT_ENABLED (draft-15)
    assert 0x8 not in settings  # ENABLE_CONNECT_PROTOCOL is the server's to send


async def test_path_and_query_are_percent_encoded(server: RawServer) -> None:
    async with connect(
        server.url("/echo wt/ü?q=a b&r=1"), certificate_hashes=server.pin
    ) as session:
        assert session.path == "/echo wt/ü"
        assert session.query_params["q"] == "a b"
    assert server.record.requests[0][b":path"] == b"/echo%20wt/%C3%BC?q=a%20b&r=1"


async def test_ca_verification_with_cafile(server: RawServer) -> None:
    async with connect(server.url(), cafile=server.certfile) as session:
        assert session.is_ready


async def test_verification_is_on_by_default(server: RawServer) -> None:
    with pytest.raises(WebTransportConnectError, match="QUIC connection closed"):
        async with connect(server.url(), timeout=5):
            pass


async def test_wrong_pin_is_refused(server: RawServer) -> None:
    wrong = hashlib.sha256(b"another certificate").digest()
    with pytest.raises(WebTransportConnectError, match="is not pinned"):
        async with connect(server.url(), certificate_hashes=[wrong]):
            pass
    assert server.record.requests == []


async def test_non_2xx_raises_with_status(server: RawServer) -> None:
    with pytest.raises(WebTransportRejectedError) as caught:
        async with connect(server.url("/reject"), certificate_hashes=server.pin):
            pass
    assert caught.value.status == 404
    # The in-process test client raises SessionRejectedError; one except serves both.
    assert isinstance(caught.value, SessionRejectedError)
    assert isinstance(caught.value, WebTransportConnectError)


async def test_server_without_webtransport_settings(tmp_path: Path) -> None:
    async with raw_server(tmp_path, webtransport=False) as plain:
        with pytest.raises(WebTransportConnectError, match="does not offer WebTransport"):
            async with connect(plain.url(), certificate_hashes=plain.pin):
                pass
        assert plain.record.requests == []


async def test_timeout_when_nobody_answers(tmp_path: Path) -> None:
    async with raw_server(tmp_path) as running:
        url = running.url()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match=r"within 0\.5 s"):
        async with connect(url, verify=False, timeout=0.5):
            pass
    assert loop.time() - started < 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:1/", "https://"),
        ("https://127.0.0.1:1/#frag", "fragment"),
        ("https://user:pw@127.0.0.1:1/", "credentials"),
    ],
)
async def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with connect(url):
            pass


async def test_pinning_excludes_ca_options() -> None:
    with pytest.raises(ValueError, match="replace CA verification"):
        async with connect("https://127.0.0.1:1/", certificate_hashes=[bytes(32)], verify=False):
            pass
    with pytest.raises(ValueError, match="32-byte"):
        async with connect("https://127.0.0.1:1/", certificate_hashes=[b"short"]):
            pass


# --- streams and datagrams ---------------------------------------------------------------


async def test_bidirectional_echo(server: RawServer) -> None:
    async with connect(server.url(), certificate_hashes=server.pin) as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"ping " * 1000, end_stream=True)
        assert await stream.read() == b"ping " * 1000


async def test_unidirectional_echo_arrives_on_a_server_stream(server: RawServer) -> None:
    async with connect(server.url(), certificate_hashes=server.pin) as session:
        stream = await session.create_unidirectional_stream()
        await stream.write(b"one way", end_stream=True)
        async for incoming in session.incoming_streams():
            assert incoming.stream_id & 0x3 == 0x3  # server-initiated unidirectional
            assert await incoming.read() == b"one way"
            break


async def test_server_opened_streams(server: RawServer) -> None:
    async with connect(server.url("/push"), certificate_hashes=server.pin) as session:
        received: dict[int, bytes] = {}
        bidi = None
        async for incoming in session.incoming_streams():
            if incoming.stream_id & 0x2:
                received[incoming.stream_id] = await incoming.read()
            else:
                bidi = incoming
                received[incoming.stream_id] = await incoming.readexactly(len(b"bidi hello"))
            if len(received) == 2:
                break
        assert sorted(received.values()) == [b"bidi hello", b"uni hello"]
        assert bidi is not None
        await bidi.write(b"reply on a server stream")
        await eventually(lambda: server.record.received.get(bidi.stream_id) == 24)


async def test_datagram_echo_and_size_limit(server: RawServer) -> None:
    async with connect(server.url(), certificate_hashes=server.pin) as session:
        datagrams = session.datagrams
        largest = datagrams.max_datagram_size
        with pytest.raises(DatagramTooLargeError):
            await datagrams.send(bytes(largest + 1))
        # An oversized datagram would block aioquic's queue: the ones after it must flow.
        await datagrams.send(b"x" * largest)
        assert await asyncio.wait_for(datagrams.receive(), 5) == b"x" * largest
        await datagrams.send(b"small")
        assert await asyncio.wait_for(datagrams.receive(), 5) == b"small"


async def test_reset_codes_both_ways(server: RawServer) -> None:
    async with connect(server.url(), certificate_hashes=server.pin) as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"data")
        assert await stream.readexactly(4) == b"data"
        await stream.reset(1234)
        # The raw server mirrors a reset back with the same HTTP/3 code.
        with pytest.raises(StreamResetError) as caught:
            await asyncio.wait_for(stream.read(), 5)
        assert caught.value.code == 1234
    assert (stream.stream_id, app_to_http3(1234)) in server.record.resets


async def test_peer_stop_sending_is_reported(server: RawServer) -> None:
    async with connect(server.url("/stop"), certificate_hashes=server.pin) as session:
        stream = await session.create_bidirectional_stream()
        await stream.write(b"anyone there?")
        with pytest.raises(StreamStoppedError) as caught:
            async with asyncio.timeout(5):
                while True:
                    await stream.write(b"more")
                    await asyncio.sleep(0.01)
        assert caught.value.code == 9


async def test_stop_sending_from_client_carries_mapped_code(server: RawServer) -> None:
    async with connect(server.url("/push"), certificate_hashes=server.pin) as session:
        async for incoming in session.incoming_streams():
            if not incoming.stream_id & 0x2:
                await incoming.stop_sending(77)
                break
        await eventually(lambda: len(server.record.stops) == 1)
    [(_, code)] = server.record.stops
    assert http3_to_app(code) == 77


# --- session lifecycle -------------------------------------------------------------------


async def test_client_close_sends_capsule_then_fin(server: RawServer) -> None:
    async with connect(server.url(), certificate_hashes=server.pin) as session:
        await session.close(code=42, reason="done here")
        await asyncio.wait_for(server.record.connect_fin.wait(), 5)
    assert server.record.capsules == [CloseSession(42, "done here")]


async def test_leaving_the_context_closes_with_code_zero(server: RawServer) -> None:
    async with connect(server.url(), certificate_hashes=server.pin):
        pass
    await eventually(lambda: server.record.capsules == [CloseSession(0, "")])


async def test_server_close_reaches_the_session(server: RawServer) -> None:
    async with connect(server.url("/close"), certificate_hashes=server.pin) as session:
        await asyncio.wait_for(session.wait_closed(), 5)
        assert session.close_code == 7
        assert session.close_reason == "bye"
        # The client answers the server's close with its own FIN.
        await asyncio.wait_for(server.record.connect_fin.wait(), 5)
    assert server.record.capsules == []


# --- backpressure and memory -------------------------------------------------------------


async def test_send_waits_while_the_stream_buffer_is_full(server: RawServer) -> None:
    size = STREAM_HIGH_WATER * 5 // 2
    async with connect(server.url("/sink"), certificate_hashes=server.pin) as session:
        stream = await session.create_unidirectional_stream()
        await stream.write(bytes(size))
        # write() returned only once at most STREAM_HIGH_WATER bytes were unacknowledged,
        # so the server must already hold the rest.
        assert server.record.received[stream.stream_id] >= size - STREAM_HIGH_WATER


async def test_unread_data_is_bounded_by_flow_control(server: RawServer) -> None:
    async with connect(server.url("/flood"), certificate_hashes=server.pin) as session:
        await eventually(lambda: server.record.flood_stream is not None)
        flood = server.record.flood_stream
        assert flood is not None
        protocol = server.record.protocols[0]
        await asyncio.sleep(0.5)  # give a fast sender every chance; the app reads nothing
        assert protocol.peer_stream_window(flood) <= 2 * STREAM_WINDOW
        assert server.record.received == {}
        async for incoming in session.incoming_streams():
            data = await asyncio.wait_for(incoming.read(), 30)
            break
        assert len(data) == FLOOD_SIZE


async def test_an_unread_server_stream_holds_back_no_other_stream(server: RawServer) -> None:
    """A server stream the app leaves unread keeps its data's credit and nothing else:
    the server's 300 small streams that follow are delivered meanwhile, none refused, and
    the big stream is intact when the app reads it at last (spec 1.1, consumed credit)."""
    config = SessionConfig(max_streams=1000, max_incoming_streams=1000)
    async with connect(
        server.url("/many"), certificate_hashes=server.pin, config=config
    ) as session:
        channel = session.protocol_handler.receive.__self__  # type: ignore[attr-defined]
        streams = session.incoming_streams()
        big = await anext(streams)
        async with asyncio.timeout(5):
            while channel.quic.unconsumed.get(big.stream_id, 0) < BIG_STREAM:
                await asyncio.sleep(0.01)
        await session.datagrams.send(b"go")  # the server opens its small streams
        async with asyncio.timeout(20):
            for _ in range(SMALL_STREAMS):
                small = await anext(streams)
                assert await small.read() == b"x"
            while channel.quic.unconsumed != {big.stream_id: BIG_STREAM}:  # read: released
                await asyncio.sleep(0.01)
        assert await big.readexactly(BIG_STREAM) == bytes(BIG_STREAM)
        assert server.record.stops == []  # every stream was delivered, none refused


async def test_send_enforces_the_contract(server: RawServer) -> None:
    """The errors ``send`` owes the session, checked on the raw ASGI channel."""
    async with connect(server.url("/push"), certificate_hashes=server.pin) as session:
        send = session.protocol_handler.send
        server_uni = None
        async for incoming in session.incoming_streams():
            if incoming.stream_id & 0x2:
                server_uni = incoming.stream_id
                break
        assert server_uni is not None
        own_uni = await session.create_unidirectional_stream()

        def stream_send(stream: int) -> dict[str, Any]:
            return {"type": "webtransport.stream.send", "stream": stream, "data": b"x"}

        with pytest.raises(ValueError, match="read-only"):
            await send(stream_send(server_uni))
        with pytest.raises(ValueError, match="write-only"):
            await send({"type": "webtransport.stream.stop_sending", "stream": own_uni.stream_id})
        with pytest.raises(ValueError, match="not a WebTransport stream"):
            await send(stream_send(0))  # the CONNECT stream
        with pytest.raises(ValueError, match="never opened"):
            await send(stream_send(400))
        with pytest.raises(ValueError, match="application error codes"):
            await send(
                {"type": "webtransport.stream.reset", "stream": own_uni.stream_id, "code": 2**32}
            )
        largest = session.datagrams.max_datagram_size
        with pytest.raises(
            ValueError, match=f"{largest + 1} bytes exceeds max_datagram_size {largest}"
        ):
            await send({"type": "webtransport.datagram.send", "data": bytes(largest + 1)})
        with pytest.raises(RuntimeError, match="for servers"):
            await send({"type": "webtransport.accept"})
        await session.close()
        with pytest.raises(OSError):
            await send(stream_send(own_uni.stream_id))


async def test_webtransport_credit_is_renewed_as_the_app_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = FlowControlLimits(max_data=64 * 1024, max_streams_bidi=4, max_streams_uni=4)
    monkeypatch.setattr(connection, "WT_CREDIT", small)
    async with (
        raw_server(tmp_path, draft13=True) as server,
        connect(server.url("/credit"), certificate_hashes=server.pin) as session,
    ):
        assert session.scope["extensions"]["webtransport"]["draft"] == "draft13"
        received = []
        async with asyncio.timeout(10):
            async for incoming in session.incoming_streams():
                received.append(len(await incoming.read()))
                if len(received) == 1 + CREDIT_STREAMS:
                    break
        assert sorted(received) == [1] * CREDIT_STREAMS + [CREDIT_DATA]
        await eventually(lambda: any(isinstance(c, MaxStreams) for c in server.record.capsules))
    settings = server.record.protocols[0].h3.received_settings  # type: ignore[union-attr]
    assert settings is not None
    assert (settings[0x2B61], settings[0x2B64], settings[0x2B65]) == (64 * 1024, 4, 4)
    data_grants = [c.maximum for c in server.record.capsules if isinstance(c, MaxData)]
    assert data_grants == sorted(data_grants)
    assert data_grants[-1] >= CREDIT_DATA + 32 * 1024  # consumed plus at least half a window
    stream_grants = [c for c in server.record.capsules if isinstance(c, MaxStreams)]
    assert all(not grant.bidirectional for grant in stream_grants)
    assert stream_grants[-1].maximum >= 1 + CREDIT_STREAMS + 2
