"""``run()``: the blocking entry point of the CLI, one process or a supervisor of several.

It sits above both :mod:`.serve` (one process) and :mod:`.supervisor` (``--workers``,
``--reload``), which each import only downwards, so neither imports the other.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from .options import ServeOptions
from .serve import serve_process
from .startup import configure_logging, hypercorn_logging
from .supervisor import supervise


def run(
    app: Any,
    options: ServeOptions | None = None,
    *,
    workers: int = 1,
    reload: bool = False,
    log_level: str = "info",
    **settings: Any,
) -> int:
    """Serve ``app`` (an app or a ``module:attr`` path) until SIGINT or SIGTERM.

    ``options`` and ``settings`` are those of ``serve()``. Prints ``certificate sha256:
    <hex>`` and a listening line, as the CLI contract says. Several workers share the port
    through SO_REUSEPORT, which keeps every QUIC connection (one UDP 4-tuple) on one process.
    """
    options = ServeOptions.of(options, **settings)
    configure_logging(log_level)
    options = dataclasses.replace(options, hypercorn=hypercorn_logging(dict(options.hypercorn)))
    if workers > 1 or reload:
        return supervise(app, options, workers=workers, reload=reload, log_level=log_level)
    return asyncio.run(serve_process(app, options))
