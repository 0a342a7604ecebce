"""Test helpers for WebTransport apps: an in-process client that needs no network."""

from .client import WebTransportTestClient

__all__ = ["WebTransportTestClient"]
