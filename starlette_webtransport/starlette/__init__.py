"""Starlette and FastAPI integration: WebTransport routes, endpoints and middleware.

``docs/starlette.md`` explains the design and shows complete apps. FastAPI-specific
pieces live in :mod:`starlette_webtransport.starlette.fastapi`, so that this package
does not import FastAPI.
"""

from .connection import WebTransportConnection
from .dependencies import Depends
from .endpoints import StructuredEndpoint, WebTransportEndpoint
from .exceptions import INTERNAL_ERROR_CODE, WebTransportException
from .middleware import AuthenticationMiddleware, OriginMiddleware, TrustedHostMiddleware
from .routing import (
    JAVASCRIPT_PATH,
    WebTransportRoute,
    enable_webtransport,
    javascript_mount,
    webtransport_route,
)

__all__ = [
    "INTERNAL_ERROR_CODE",
    "JAVASCRIPT_PATH",
    "AuthenticationMiddleware",
    "Depends",
    "OriginMiddleware",
    "StructuredEndpoint",
    "TrustedHostMiddleware",
    "WebTransportConnection",
    "WebTransportEndpoint",
    "WebTransportException",
    "WebTransportRoute",
    "enable_webtransport",
    "javascript_mount",
    "webtransport_route",
]
