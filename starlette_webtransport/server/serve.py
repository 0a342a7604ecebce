"""Serve an ASGI app over TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3 + WebTransport).

One host/port pair configures both listeners because that is what browsers expect: they
learn of HTTP/3 from the ``Alt-Svc`` header of a TCP response and then connect to the same
port over UDP. Everything hypercorn offers beyond that passes through ``hypercorn_options``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypercorn.asyncio.run as hypercorn_run
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.utils import load_application

from .certs import DevCertificate, generate_certificate, load_certificate, write_certificate
from .quic import WebTransportUDPServer

log = logging.getLogger("starlette_webtransport.server")

DEFAULT_GRACEFUL_TIMEOUT = 5.0


CERTIFICATE_HASH_PATH = "/_webtransport/certificate-hash"
"""Where a server using a development certificate publishes its hash (JSON), so a local
page can pass it to ``serverCertificateHashes`` without copying it by hand."""

ROTATE_BEFORE = timedelta(days=2)
"""Development certificates are replaced this long before they expire (they live 13 days,
and browsers refuse pinned certificates valid for 14 days or more)."""


ROTATION_CHECK_INTERVAL = 3600.0
"""Seconds between looks at the certificate's expiry (a suspended laptop wakes late)."""


@dataclass
class ServerState:
    """What a running server exposes to the code that started it."""

    certificate_sha256: bytes
    binds: list[str]
    certificate_not_after: datetime | None = None
    certificate_generation: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    listening: int = 0
    port: int = 0
    """The UDP (HTTP/3) port, for pages served from another port."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the last open session ends (used to finish draining early)."""
    sessions: set[Any] = field(default_factory=set)


def install() -> None:
    """Make hypercorn's asyncio worker use our UDP server.

    ``worker_serve`` looks ``UDPServer`` up in its module at call time, so replacing that
    one name is enough to route every QUIC socket through the WebTransport adapter; TCP
    listeners and the rest of hypercorn stay untouched.
    """
    hypercorn_run.UDPServer = WebTransportUDPServer  # type: ignore[attr-defined]


def _binds(host: str | Sequence[str], port: int) -> list[str]:
    hosts = [host] if isinstance(host, str) else list(host)
    return [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both TCP and UDP on ``host``, as one server needs both."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port free for both TCP and UDP on {host}")


def build_config(
    *,
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 4433,
    http_port: int | None = None,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    root_path: str = "",
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    **hypercorn_options: Any,
) -> Config:
    """A hypercorn ``Config`` with TCP and UDP listeners on the same addresses."""
    if (certfile is None) != (keyfile is None):
        raise ValueError("certfile and keyfile go together")
    config = Config()
    if port == 0:
        port = free_port(host if isinstance(host, str) else host[0])
    binds = _binds(host, port)
    config.bind = binds
    config.quic_bind = binds
    if http_port is not None:
        config.insecure_bind = _binds(host, http_port)
    config.root_path = root_path
    config.graceful_timeout = graceful_timeout
    if certfile is not None and keyfile is not None:
        config.certfile = os.fspath(certfile)
        config.keyfile = os.fspath(keyfile)
    for name, value in hypercorn_options.items():
        if not hasattr(config, name):
            raise TypeError(f"hypercorn's Config has no setting {name!r}")
        setattr(config, name, value)
    return config


def _make_dev_certificate(config: Config, hosts: Sequence[str]) -> DevCertificate:
    directory = Path(tempfile.mkdtemp(prefix="starlette-webtransport-"))
    extra = [h for h in hosts if h not in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "::")]
    certificate = generate_certificate(hosts=("localhost", "127.0.0.1", "::1", *extra))
    certfile, keyfile = write_certificate(certificate, directory)
    config.certfile, config.keyfile = str(certfile), str(keyfile)
    return certificate


async def _rotate_certificates(config: Config, hosts: Sequence[str], state: ServerState) -> None:
    """Keep a development certificate pinnable: replace it before it expires.

    New QUIC connections pick the new certificate up (see ``certificate_generation``);
    open ones keep the one they were set up with.
    """
    while True:
        assert state.certificate_not_after is not None
        remaining = state.certificate_not_after - ROTATE_BEFORE - datetime.now(UTC)
        if remaining.total_seconds() > 0:
            await asyncio.sleep(min(remaining.total_seconds(), ROTATION_CHECK_INTERVAL))
            continue
        certificate = _make_dev_certificate(config, hosts)
        state.certificate_sha256 = certificate.sha256
        state.certificate_not_after = certificate.not_after
        state.certificate_generation += 1
        log.info("development certificate rotated: sha256 %s", certificate.sha256_hex)


class _CertificateHashApp:
    """Answers ``GET /_webtransport/certificate-hash`` and passes everything else on."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != CERTIFICATE_HASH_PATH:
            await self.app(scope, receive, send)
            return
        digest = self.state.certificate_sha256
        not_after = self.state.certificate_not_after
        body = json.dumps(
            {
                "algorithm": "sha-256",
                "hex": digest.hex(),
                "base64": base64.b64encode(digest).decode(),
                "notAfter": not_after.isoformat() if not_after else None,
                "port": self.state.port,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-store"),
                    (b"access-control-allow-origin", b"*"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def serve(
    app: Any,
    *,
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 4433,
    http_port: int | None = None,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    root_path: str = "",
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    state: ServerState | None = None,
    config: Config | None = None,
    **hypercorn_options: Any,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns (default: SIGINT or SIGTERM).

    On shutdown, open WebTransport sessions are asked to drain (WT_DRAIN_SESSION to the
    peer, ``webtransport.drain`` to the app); sessions still open after
    ``graceful_timeout`` are closed, then hypercorn stops.
    """
    install()
    hosts = [host] if isinstance(host, str) else list(host)
    if config is None:
        config = build_config(
            host=host,
            port=port,
            http_port=http_port,
            certfile=certfile,
            keyfile=keyfile,
            root_path=root_path,
            graceful_timeout=graceful_timeout,
            **hypercorn_options,
        )
    if state is None:
        state = ServerState(certificate_sha256=b"", binds=[])
    development = config.certfile is None
    if development:
        certificate = _make_dev_certificate(config, hosts)
        state.certificate_sha256 = certificate.sha256
        state.certificate_not_after = certificate.not_after
        app = _CertificateHashApp(app, state)
    else:
        assert config.certfile is not None
        state.certificate_sha256 = load_certificate(Path(config.certfile)).sha256
    sockets = config.create_sockets()
    state.binds = [_format(sock.getsockname()) for sock in sockets.quic_sockets]
    state.port = int(sockets.quic_sockets[0].getsockname()[1])
    config.webtransport_state = state  # type: ignore[attr-defined]

    trigger = shutdown_trigger if shutdown_trigger is not None else _signal_trigger()

    async def _shutdown() -> None:
        await trigger()
        await _drain(state, config.graceful_timeout)

    rotation = (
        asyncio.create_task(_rotate_certificates(config, hosts, state)) if development else None
    )
    try:
        await hypercorn_run.worker_serve(
            ASGIWrapper(app), config, sockets=sockets, shutdown_trigger=_shutdown
        )
    finally:
        if rotation is not None:
            rotation.cancel()


def print_listening(binds: Sequence[str]) -> None:
    for bind in binds:
        print(f"listening on https://{bind} (TCP and QUIC)", flush=True)


def _format(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _signal_trigger() -> Callable[[], Awaitable[object]]:
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    return event.wait


async def _drain(state: ServerState, grace: float) -> None:
    if not state.sessions:
        return
    log.info("draining %d WebTransport session(s)", len(state.sessions))
    state.idle.clear()
    for session in list(state.sessions):
        session.drain_for_shutdown()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.idle.wait(), grace)
    for session in list(state.sessions):
        session.close_for_shutdown()
    await asyncio.sleep(0)


def run(
    app: Any,
    *,
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 4433,
    http_port: int | None = None,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    workers: int = 1,
    reload: bool = False,
    log_level: str = "info",
    root_path: str = "",
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    **hypercorn_options: Any,
) -> int:
    """Blocking entry point used by the CLI; ``app`` is an app or a ``module:attr`` path.

    Prints ``certificate sha256: <hex>`` and a listening line, as the CLI contract says.
    Several workers share the port through SO_REUSEPORT, which keeps every QUIC connection
    (one UDP 4-tuple) on one process.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if log_level.lower() != "debug":
        # aioquic logs three INFO lines per connection: per-session noise that costs a
        # busy server measurable time (docs/performance.md); ``--log-level debug`` has it.
        logging.getLogger("quic").setLevel(max(logging.WARNING, logging.getLogger().level))
    if workers > 1 or reload:
        from .supervisor import supervise

        return supervise(
            app,
            workers=workers,
            reload=reload,
            serve_kwargs={
                "host": host,
                "port": port,
                "http_port": http_port,
                "certfile": certfile,
                "keyfile": keyfile,
                "root_path": root_path,
                "graceful_timeout": graceful_timeout,
                **hypercorn_options,
            },
        )
    return asyncio.run(
        _run_one(
            app,
            host=host,
            port=port,
            http_port=http_port,
            certfile=certfile,
            keyfile=keyfile,
            root_path=root_path,
            graceful_timeout=graceful_timeout,
            **hypercorn_options,
        )
    )


async def _run_one(
    app: Any, *, on_ready: Callable[[ServerState], object] | None = None, **kwargs: Any
) -> int:
    """Serve until shut down; once listening, print the CLI's banner, or hand the state
    to ``on_ready`` instead (a worker tells its supervisor, which prints for all)."""
    if isinstance(app, str):
        app = load_application(app, 0)
        app = app.app  # load_application wraps ASGI apps; serve() wraps again
    state = ServerState(certificate_sha256=b"", binds=[])
    task = asyncio.create_task(serve(app, state=state, **kwargs))
    ready = asyncio.create_task(state.ready.wait())
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if ready in done:
        if on_ready is not None:
            on_ready(state)
        else:
            print(f"certificate sha256: {state.certificate_sha256.hex()}", flush=True)
            print_listening(state.binds)
    else:
        ready.cancel()
    await task
    return 0
