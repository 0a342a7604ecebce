"""A Python WebTransport client: the same session API as the server side, over aioquic."""

from .connection import WebTransportConnectError, connect

__all__ = ["WebTransportConnectError", "connect"]
