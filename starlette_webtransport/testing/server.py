"""Run a real server inside a test's event loop.

Our own tests and users' tests (through the pytest plugin) talk real QUIC over loopback
to a real hypercorn; this is the one place that starts and stops such a server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..server.options import ServerState
from ..server.serve import serve

STARTUP_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def running_server(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, **serve_options: Any
) -> AsyncIterator[ServerState]:
    """Serve ``app`` on a free loopback port (TCP and UDP) until the block exits.

    Yields the :class:`ServerState` with ``port``, ``binds`` and ``certificate_sha256``
    (a fresh development certificate unless ``certfile``/``keyfile`` are given).
    """
    stop = asyncio.Event()
    state = ServerState(certificate_sha256=b"", binds=[])
    task = asyncio.create_task(
        serve(app, host=host, port=port, state=state, shutdown_trigger=stop.wait, **serve_options)
    )
    ready = asyncio.create_task(state.ready.wait())
    try:
        done, _ = await asyncio.wait(
            {task, ready}, timeout=STARTUP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()  # raises the startup error
            raise RuntimeError("the server stopped during startup")
        if ready not in done:
            raise TimeoutError("the server did not start listening in time")
        yield state
    finally:
        ready.cancel()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
