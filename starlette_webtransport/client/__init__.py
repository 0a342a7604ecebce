"""A Python WebTransport client: the same session API as the server side, over aioquic."""

from .connection import WebTransportConnectError, WebTransportRejectedError, connect

__all__ = ["WebTransportConnectError", "WebTransportRejectedError", "connect"]
