"""Test helpers for WebTransport apps: an in-process client that needs no network."""

from .client import ChannelClosedError, WebTransportTestClient

__all__ = ["ChannelClosedError", "WebTransportTestClient"]
