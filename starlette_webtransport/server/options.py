"""What a server is told (:class:`ServeOptions`) and what it tells back (:class:`ServerState`).

``serve()``, ``run()``, the supervisor of ``--workers``/``--reload`` and the CLI all take one
:class:`ServeOptions`, the way hypercorn passes one ``Config`` around, so a new setting is
added in one place. The running server's state travels to the adapter on a
:class:`WebTransportConfig`, a hypercorn ``Config`` that declares it, so the adapter reads a
typed attribute instead of looking one up by name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hypercorn.config import Config

from ..transport.limits import Limits, ReceiveBudget

DEFAULT_GRACEFUL_TIMEOUT = 5.0

UNUSED_WORKER_CLASS = (
    "hypercorn's worker_class has no effect here: serve() runs in the caller's event loop "
    "(e.g. uvloop.run(serve(app))) and run() and the CLI in asyncio's "
    "(docs/performance.md, uvloop)"
)
"""Only hypercorn's own ``run()`` reads ``worker_class``; ours call its ``worker_serve``
directly, so the setting would be accepted and silently ignored."""


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How to serve: listeners, certificate, shutdown grace, limits, rooms' backend.

    ``host``/``port`` configure both the TCP and the UDP listeners, because browsers learn
    of HTTP/3 from the ``Alt-Svc`` header of a TCP response and then connect to the same
    port over UDP. Without ``certfile``/``keyfile`` the server makes a development
    certificate. ``hypercorn`` holds any other setting of hypercorn's ``Config``.
    """

    host: str | Sequence[str] = "127.0.0.1"
    port: int = 4433
    """0 picks a port free for both TCP and UDP."""
    http_port: int | None = None
    """Also serve plain HTTP (no TLS) on this TCP port."""
    certfile: str | os.PathLike[str] | None = None
    keyfile: str | os.PathLike[str] | None = None
    root_path: str = ""
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    """Seconds sessions get to finish after shutdown begins before they are closed."""
    limits: Limits = field(default_factory=Limits)
    broadcast: str | None = None
    """``memory://`` or ``redis://host:port/db``: the process's default broadcast hub."""
    publish_certificate_hash: bool | None = None
    """Serve the certificate's hash at ``CERTIFICATE_HASH_PATH``; by default only when the
    server makes its own development certificate."""
    hypercorn: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together")

    @classmethod
    def of(cls, options: ServeOptions | None = None, /, **settings: Any) -> ServeOptions:
        """``options`` (or the defaults) with ``settings`` applied: names of this class's
        fields replace them, any other name is a setting of hypercorn's ``Config``. This is
        what lets ``serve(app, port=0, workers=2)`` keep taking plain keywords."""
        options = cls() if options is None else options
        names = {f.name for f in dataclasses.fields(cls)}
        ours = {name: value for name, value in settings.items() if name in names}
        theirs = {name: value for name, value in settings.items() if name not in names}
        if theirs:
            ours["hypercorn"] = {**ours.get("hypercorn", options.hypercorn), **theirs}
        return dataclasses.replace(options, **ours) if ours else options

    @property
    def hosts(self) -> list[str]:
        return [self.host] if isinstance(self.host, str) else list(self.host)

    @property
    def development(self) -> bool:
        """The server makes its own certificate."""
        return self.certfile is None

    @property
    def publishes_hash(self) -> bool:
        """Whether the certificate's hash is served at ``CERTIFICATE_HASH_PATH``."""
        if self.publish_certificate_hash is None:
            return self.development
        return self.publish_certificate_hash

    def binds(self, port: int | None = None) -> list[str]:
        """``host:port`` for every host, IPv6 addresses in brackets."""
        return format_binds(self.hosts, self.port if port is None else port)

    def http_binds(self) -> list[str]:
        return [] if self.http_port is None else format_binds(self.hosts, self.http_port)

    def config(self, state: ServerState | None = None) -> WebTransportConfig:
        """A hypercorn ``Config`` with TCP and UDP listeners on the same addresses."""
        config = WebTransportConfig()
        config.webtransport_state = state
        port = free_port(self.hosts[0]) if self.port == 0 else self.port
        config.bind = config.quic_bind = self.binds(port)
        config.insecure_bind = self.http_binds()
        config.root_path = self.root_path
        config.graceful_timeout = self.graceful_timeout
        if self.certfile is not None and self.keyfile is not None:
            config.certfile = os.fspath(self.certfile)
            config.keyfile = os.fspath(self.keyfile)
        for name, value in self.hypercorn.items():
            if not hasattr(config, name):
                raise TypeError(f"hypercorn's Config has no setting {name!r}")
            if name == "worker_class" and value != config.worker_class:
                raise ValueError(UNUSED_WORKER_CLASS)
            setattr(config, name, value)
        return config


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
    limits: Limits = field(default_factory=Limits)
    budget: ReceiveBudget = field(default_factory=lambda: ReceiveBudget(Limits().receive_memory))
    """Received bytes waiting for the apps of this worker, against ``limits.receive_memory``."""
    draining: bool = False
    """Shutdown has begun: new CONNECTs get 503 (docs/asgi-webtransport.md, section 10)."""
    udp_buffers: list[tuple[int, int]] = field(default_factory=list)
    """(SO_RCVBUF, SO_SNDBUF) the kernel granted each UDP socket, as getsockopt reports them."""


class WebTransportConfig(Config):
    """hypercorn's ``Config`` with the state of the server it configures, one per server."""

    webtransport_state: ServerState | None = None


def server_state(config: Config) -> ServerState | None:
    """The state ``serve()`` put on ``config``; None for a plain hypercorn ``Config``."""
    return config.webtransport_state if isinstance(config, WebTransportConfig) else None


def format_bind(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets, as hypercorn's binds are written."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_binds(hosts: Sequence[str], port: int) -> list[str]:
    return [format_bind(host, port) for host in hosts]


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
