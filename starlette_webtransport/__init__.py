"""WebTransport (HTTP/3) sessions for Starlette and FastAPI apps, served by hypercorn.

The common names are importable from here, but lazily: importing
``starlette_webtransport.protocol`` (the sans-I/O core) must not pull in the server, the
session layer or Starlette, so each layer stays importable without the ones above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "WebTransportSession": "session",
    "WebTransportStream": "session",
    "WebTransportSendStream": "session",
    "WebTransportReceiveStream": "session",
    "WebTransportDatagramTransport": "session",
    "SessionManager": "session",
    "SessionStats": "session",
    "SessionState": "session",
    "SessionConfig": "session",
    "serve_streams": "session",
    "WebTransportRoute": "starlette",
    "WebTransportEndpoint": "starlette",
    "StructuredEndpoint": "starlette",
    "enable_webtransport": "starlette",
    "serve": "server",
    "run": "server",
    "connect": "client",
    "Schema": "structured",
    "StructuredStream": "structured",
    "StructuredDatagramTransport": "structured",
}

__all__ = [
    "__version__",
    "Schema",
    "SessionConfig",
    "SessionManager",
    "SessionState",
    "SessionStats",
    "StructuredDatagramTransport",
    "StructuredEndpoint",
    "StructuredStream",
    "WebTransportDatagramTransport",
    "WebTransportEndpoint",
    "WebTransportReceiveStream",
    "WebTransportRoute",
    "WebTransportSendStream",
    "WebTransportSession",
    "WebTransportStream",
    "connect",
    "enable_webtransport",
    "run",
    "serve",
    "serve_streams",
]

if TYPE_CHECKING:
    from .client import connect
    from .server import run, serve
    from .session import (
        SessionConfig,
        SessionManager,
        SessionState,
        SessionStats,
        WebTransportDatagramTransport,
        WebTransportReceiveStream,
        WebTransportSendStream,
        WebTransportSession,
        WebTransportStream,
        serve_streams,
    )
    from .starlette import (
        StructuredEndpoint,
        WebTransportEndpoint,
        WebTransportRoute,
        enable_webtransport,
    )
    from .structured import Schema, StructuredDatagramTransport, StructuredStream


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'starlette_webtransport' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
