"""Serve an ASGI app over TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3 + WebTransport).

One host/port pair configures both listeners because that is what browsers expect: they
learn of HTTP/3 from the ``Alt-Svc`` header of a TCP response and then connect to the same
port over UDP. Everything hypercorn offers beyond that passes through
``ServeOptions.hypercorn``. ``run()`` (:mod:`.run`), the CLI's blocking entry point, sits
above this module and :mod:`.supervisor`, so neither of those two imports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import hypercorn.asyncio.run as hypercorn_run
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.utils import load_application

from ..transport.limits import ReceiveBudget
from .certs import load_certificate
from .devcert import (
    CERTIFICATE_HASH_PATH,
    CertificateHashApp,
    rotate_certificates,
    use_dev_certificate,
)
from .options import ServeOptions, ServerState, format_bind, free_port
from .quic import WebTransportUDPServer
from .startup import freeze_startup_heap, print_banner

__all__ = [
    "CERTIFICATE_HASH_PATH",
    "ServeOptions",
    "ServerState",
    "free_port",
    "install",
    "serve",
    "serve_process",
]

log = logging.getLogger("starlette_webtransport.server")


def install() -> None:
    """Make hypercorn's asyncio worker use our UDP server.

    ``worker_serve`` looks ``UDPServer`` up in its module at call time, so replacing that
    one name is enough to route every QUIC socket through the WebTransport adapter; TCP
    listeners and the rest of hypercorn stay untouched.
    """
    hypercorn_run.UDPServer = WebTransportUDPServer  # type: ignore[attr-defined]


async def serve(
    app: Any,
    options: ServeOptions | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    state: ServerState | None = None,
    **settings: Any,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns (default: SIGINT or SIGTERM).

    ``options`` say how (:class:`ServeOptions`); ``settings`` are the same options as
    keywords (``serve(app, port=0, limits=Limits(...))``), and any other keyword is a
    setting of hypercorn's ``Config``. ``state`` receives what the running server exposes.

    ``publish_certificate_hash`` serves the certificate's hash at ``CERTIFICATE_HASH_PATH``,
    by default only when the server makes its own development certificate; the supervisor
    of ``--workers``/``--reload`` sets it, as it makes one certificate for all its workers
    and passes it as a file.

    On shutdown, new CONNECTs are answered 503 and open WebTransport sessions are asked
    to drain (WT_DRAIN_SESSION to the peer, ``webtransport.drain`` to the app); sessions
    still open after ``graceful_timeout`` are closed, then hypercorn stops. ``limits``
    bound what peers can make the server hold (``docs/reliability.md``).

    ``broadcast`` (``memory://`` or ``redis://host:port/db``) configures the process's
    default hub, ``starlette_webtransport.broadcast.default_broadcast()``, which rooms use
    (``docs/broadcast.md``); ``run()`` passes it on to every worker.
    """
    options = ServeOptions.of(options, **settings)
    install()
    hub = None
    if options.broadcast is not None:
        from ..broadcast import configure  # only servers with rooms load the layer

        hub = configure(options.broadcast)
    if state is None:
        state = ServerState(certificate_sha256=b"", binds=[])
    state.limits = options.limits
    state.budget = ReceiveBudget(state.limits.receive_memory)
    config = options.config(state)
    development = options.development
    if development:
        use_dev_certificate(config, state, options.hosts)
    else:
        assert config.certfile is not None
        loaded = load_certificate(Path(config.certfile))
        state.certificate_sha256 = loaded.sha256
        state.certificate_not_after = loaded.not_after if options.publishes_hash else None
    if options.publishes_hash:
        app = CertificateHashApp(app, state)
    sockets = config.create_sockets()
    state.binds = [format_bind(*sock.getsockname()[:2]) for sock in sockets.quic_sockets]
    state.port = int(sockets.quic_sockets[0].getsockname()[1])

    trigger = shutdown_trigger if shutdown_trigger is not None else _signal_trigger()

    async def _shutdown() -> None:
        await trigger()
        state.draining = True
        await _drain(state, config.graceful_timeout)

    rotation = (
        asyncio.create_task(rotate_certificates(config, options.hosts, state))
        if development
        else None
    )
    try:
        await hypercorn_run.worker_serve(
            ASGIWrapper(app), config, sockets=sockets, shutdown_trigger=_shutdown
        )
    finally:
        if rotation is not None:
            rotation.cancel()
        if hub is not None:
            await hub.close()


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


async def serve_process(
    app: Any, options: ServeOptions, *, on_ready: Callable[[ServerState], object] | None = None
) -> int:
    """Serve until shut down; once listening, print the CLI's banner, or hand the state
    to ``on_ready`` instead (a worker tells its supervisor, which prints for all).

    ``app`` may be a ``module:attr`` path, as the CLI and worker processes pass it."""
    if isinstance(app, str):
        app = load_application(app, 0)
        app = app.app  # load_application wraps ASGI apps; serve() wraps again
    state = ServerState(certificate_sha256=b"", binds=[])
    task = asyncio.create_task(serve(app, options, state=state))
    ready = asyncio.create_task(state.ready.wait())
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if ready in done:
        freeze_startup_heap()
        if on_ready is not None:
            on_ready(state)
        else:
            print_banner(state.certificate_sha256, state.binds, options)
    else:
        ready.cancel()
    await task
    return 0
