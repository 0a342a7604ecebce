"""Layer 2: the hypercorn adapter, ``serve()``/``run()``, the CLI and dev certificates."""

from ..transport.limits import Limits
from .serve import CERTIFICATE_HASH_PATH, ServerState, build_config, free_port, install, run, serve

__all__ = [
    "CERTIFICATE_HASH_PATH",
    "Limits",
    "ServerState",
    "build_config",
    "free_port",
    "install",
    "run",
    "serve",
]
