"""pytest fixtures for WebTransport apps (registered through the ``pytest11`` entry point).

Two ways to test, as with Starlette's TestClient and a live server:

- ``webtransport_test_client(app)``: in memory, no network; fast unit tests of app logic.
- ``webtransport_server(app)`` + ``webtransport_client(server, path)``: our real hypercorn
  server on a free loopback port and the real QUIC client, pinned to a fresh development
  certificate; for anything that depends on the transport (datagram sizes, flow control,
  resets on the wire, browsers' view of the handshake).

The fixtures are factories returning async context managers, so one test can run several
servers or sessions, and everything is shut down when its block exits.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ..client import connect
from ..server.devcert import DevCertificateFiles, make_dev_certificate
from ..session import WebTransportSession
from .client import ASGIApp, WebTransportTestClient
from .server import running_server

CertificateFiles = DevCertificateFiles
"""A development certificate and where its PEM files are."""


@dataclass(frozen=True)
class LiveServer:
    """A server started by ``webtransport_server``."""

    host: str
    port: int
    certificate_hash: bytes
    """SHA-256 of the server certificate's DER, for ``certificate_hashes`` pinning."""

    @property
    def url(self) -> str:
        """``https://host:port``; append the session's path."""
        return f"https://{self.host}:{self.port}"


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[LiveServer]]
ClientFactory = Callable[..., contextlib.AbstractAsyncContextManager[WebTransportSession]]


@pytest.fixture
def webtransport_certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A fresh certificate browsers and our client accept by hash, written to a temp dir."""
    return make_dev_certificate(directory=tmp_path_factory.mktemp("webtransport"))


@pytest.fixture
def webtransport_server(webtransport_certificate: CertificateFiles) -> ServerFactory:
    """``async with webtransport_server(app, **serve_options) as server:`` serves ``app``
    with :func:`~starlette_webtransport.server.serve` on a free 127.0.0.1 port.

    ``serve_options`` go to ``serve()`` (``graceful_timeout``, ``root_path``, hypercorn
    settings); the certificate is ``webtransport_certificate`` unless ``certfile`` and
    ``keyfile`` are given.
    """

    @contextlib.asynccontextmanager
    async def start(app: Any, **serve_options: Any) -> AsyncIterator[LiveServer]:
        serve_options.setdefault("certfile", webtransport_certificate.certfile)
        serve_options.setdefault("keyfile", webtransport_certificate.keyfile)
        async with running_server(app, host="127.0.0.1", port=0, **serve_options) as state:
            yield LiveServer(
                host="127.0.0.1", port=state.port, certificate_hash=state.certificate_sha256
            )

    return start


@pytest.fixture
def webtransport_client() -> ClientFactory:
    """``async with webtransport_client(server, "/path", **connect_options) as session:``
    opens a client session to a ``webtransport_server``, pinned to its certificate.

    ``connect_options`` go to :func:`starlette_webtransport.client.connect` (``headers``,
    ``origin``, ``protocols``, ``timeout``, ``config``).
    """

    def open_session(
        server: LiveServer, path: str = "/", **connect_options: Any
    ) -> contextlib.AbstractAsyncContextManager[WebTransportSession]:
        if not path.startswith("/"):
            raise ValueError(f"the path must start with '/', got {path!r}")
        connect_options.setdefault("certificate_hashes", [server.certificate_hash])
        return connect(server.url + path, **connect_options)

    return open_session


@pytest.fixture
def webtransport_test_client() -> Callable[..., WebTransportTestClient]:
    """``webtransport_test_client(app, **options).connect(path)``: the in-process client
    (:class:`~starlette_webtransport.testing.WebTransportTestClient`), no network."""

    def create(app: ASGIApp, **options: Any) -> WebTransportTestClient:
        return WebTransportTestClient(app, **options)

    return create
