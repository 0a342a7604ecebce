"""Layer 2: the hypercorn adapter, ``serve()``/``run()``, the CLI and dev certificates."""

from ..transport.limits import Limits
from .options import ServeOptions, ServerState, free_port
from .run import run
from .serve import CERTIFICATE_HASH_PATH, install, serve

__all__ = [
    "CERTIFICATE_HASH_PATH",
    "Limits",
    "ServeOptions",
    "ServerState",
    "free_port",
    "install",
    "run",
    "serve",
]
