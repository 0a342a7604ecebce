"""A WebTransport client on aioquic: the server adapter's mirror image.

The session API in :mod:`starlette_webtransport.session` talks only ASGI messages, so
a client is "a server for the client end": the shared
:class:`~starlette_webtransport.transport.SessionChannel` implements the server side of
``docs/asgi-webtransport.md`` over an outgoing QUIC connection, and the same
:class:`~starlette_webtransport.session.WebTransportSession` that apps use on the server
runs on top of it with ``role: "client"``. What is left here is the client's own part:
``connect()``, certificate pinning, the CONNECT request and its answer.

Memory stays bounded against a server that sends faster than the application reads, and
nothing is dropped to get there (see :mod:`starlette_webtransport.transport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import ErrorCode
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import AlertDescription

from ..asgi import make_scope
from ..protocol.settings import (
    DRAFT02_HEADER,
    Draft,
    FlowControlLimits,
    negotiate_draft,
    serialize_protocol,
)
from ..session import SessionConfig, SessionRejectedError, WebTransportSession
from ..transport import DATAGRAM_HIGH_WATER as DATAGRAM_HIGH_WATER
from ..transport import DATAGRAM_QUEUE_SIZE as DATAGRAM_QUEUE_SIZE
from ..transport import STREAM_HIGH_WATER as STREAM_HIGH_WATER
from ..transport import (
    WT_CREDIT,
    SessionChannel,
    SessionRouter,
    WebTransportH3Connection,
    WebTransportQuicConnection,
    quic_configuration,
)
from ..transport.internals import (
    peer_certificate,
    protocol_closed,
    schedule_transmit,
    stop_protocol_timers,
)
from ..transport.pinning import describe_certificate

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


class _ClientProtocol(QuicConnectionProtocol):
    """One QUIC connection carrying one WebTransport session."""

    def __init__(
        self,
        quic: WebTransportQuicConnection,
        certificate_hashes: Sequence[bytes] | None,
        credit: FlowControlLimits,
    ) -> None:
        super().__init__(quic)
        self.quic = quic
        self._certificate_hashes = certificate_hashes
        self._credit = credit
        self._router: SessionRouter | None = None
        self.channel: SessionChannel | None = None
        loop = asyncio.get_running_loop()
        self.settings_received: asyncio.Future[None] = loop.create_future()
        self.response: asyncio.Future[list[tuple[bytes, bytes]]] = loop.create_future()
        self.failure: WebTransportConnectError | None = None
        self._socket_closed = False

    @property
    def router(self) -> SessionRouter:
        if self._router is None:
            raise RuntimeError("HTTP/3 starts once the QUIC handshake has completed")
        return self._router

    def transmit(self) -> None:
        if self._socket_closed:
            return  # a late transmit_soon() or timer; sending would only log errors
        super().transmit()
        if self._router is not None:
            self._router.wake_writers()

    def open_session(self, request: list[tuple[bytes, bytes]], draft: Draft) -> SessionChannel:
        """Send the CONNECT; its channel is open once the 2xx arrives."""
        router = self.router
        stream_id = self.quic.get_next_available_stream_id()
        self.channel = SessionChannel(router, stream_id, draft, role="client")
        router.h3.send_headers(stream_id, request)
        self.transmit()
        return self.channel

    # --- QUIC events -----------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self._handshake_completed()
            return
        if isinstance(event, ConnectionTerminated):
            self._terminated(event)
            return
        router = self._router
        if router is None:
            return
        for h3_event in router.h3.handle_event(event):
            self._h3_event(router, h3_event)
        router.quic_event(event)
        if not self.settings_received.done() and router.h3.received_settings is not None:
            self.settings_received.set_result(None)

    def _h3_event(self, router: SessionRouter, event: H3Event) -> None:
        channel = self.channel
        if channel is None:
            return  # nothing can belong to a session before its CONNECT is sent
        if isinstance(event, HeadersReceived):
            if event.stream_id == channel.stream_id and not self.response.done():
                self._response_received(channel, event)
        elif isinstance(event, DataReceived) and not channel.accepted:
            return  # the body of a refusal
        else:
            router.h3_event(event)

    def _response_received(self, channel: SessionChannel, event: HeadersReceived) -> None:
        """Settle the session as the answer arrives: capsules may follow in the same
        packet, before ``connect()`` gets to run again."""
        status = _status(event.headers)
        if status is not None and 100 <= status < 200:
            return  # interim response
        self.response.set_result(event.headers)
        if status is not None and 200 <= status < 300:
            channel.established()
            if event.stream_ended:
                channel.connect_stream_data(b"", True)

    def _handshake_completed(self) -> None:
        hashes = self._certificate_hashes
        if hashes is not None:
            certificate = peer_certificate(self.quic)
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
        h3 = WebTransportH3Connection(self.quic, self._credit)
        self._router = SessionRouter(self.quic, h3, schedule_transmit(self))

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
        if self._router is not None:
            self._router.connection_lost()

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket_closed = True
        stop_protocol_timers(self)
        closed = protocol_closed(self)
        if not closed.is_set():
            self._terminated(
                ConnectionTerminated(
                    error_code=QuicErrorCode.INTERNAL_ERROR,
                    frame_type=None,
                    reason_phrase=f"UDP socket closed: {exc}" if exc else "UDP socket closed",
                )
            )
            closed.set()


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
    configuration = quic_configuration(is_client=True, server_name=target.host)
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
    credit: FlowControlLimits | None = None,
) -> AsyncIterator[WebTransportSession]:
    """Open a WebTransport session to ``url``; on exit close it and its connection.

    The server's certificate is verified against the system CAs, or ``cafile``; or, as
    browsers do with ``serverCertificateHashes``, only its SHA-256 is compared with
    ``certificate_hashes``. ``timeout`` bounds everything up to the server's 2xx. A
    non-2xx answer raises :class:`WebTransportConnectError` with its ``status``.

    ``credit`` is the WebTransport credit granted to a draft-07+ server in its SETTINGS
    (``transport.WT_CREDIT`` by default) and renewed as the session reads; the server's
    own credit is kept to either way.
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
                quic = WebTransportQuicConnection(configuration=configuration)
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _ClientProtocol(quic, hashes, WT_CREDIT if credit is None else credit),
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
) -> tuple[SessionChannel, list[tuple[bytes, bytes]]]:
    """Handshake, wait for the server's SETTINGS, send the CONNECT, read the answer."""
    with contextlib.suppress(ConnectionError):  # protocol.failure says why
        await protocol.wait_connected()
    if protocol.failure is not None:
        raise protocol.failure
    await protocol.settings_received
    draft = negotiate_draft(protocol.router.h3.received_settings or {})
    if draft is None:
        raise WebTransportConnectError(
            f"{target.authority} does not offer WebTransport in its HTTP/3 SETTINGS"
        )
    channel = protocol.open_session(request, draft)
    headers = await protocol.response
    if not channel.accepted:
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
    channel: SessionChannel,
    response_headers: list[tuple[bytes, bytes]],
    protocols: Sequence[str] | None,
    address: Any,
) -> dict[str, Any]:
    """The session's scope, seen from the client (docs/asgi-webtransport.md, section 1):
    ``headers`` are the server's response headers and ``client`` is the peer, as on the
    server side; ``server`` is our own address."""
    raw_path, _, query = target.path.encode("ascii").partition(b"?")
    local = transport.get_extra_info("sockname")
    local_address = (local[0], local[1]) if local else None
    remote_address = (address[0], address[1])
    return make_scope(
        path=unquote(raw_path.decode("ascii")),
        raw_path=raw_path,
        query_string=query,
        headers=response_headers,
        client=remote_address,
        server=local_address,
        subprotocols=list(protocols or ()),
        session_id=f"client-{next(_session_ids)}",
        stream_id=channel.stream_id,
        draft=str(channel.draft),
        max_datagram_size=channel.max_datagram_size,
        connection_id=channel.quic.host_cid.hex(),
        role="client",
    )
