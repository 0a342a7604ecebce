"""Development certificates are replaced before they expire, and new connections use them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from starlette_webtransport.client import WebTransportConnectError, connect
from starlette_webtransport.server import devcert
from starlette_webtransport.session import WebTransportSession
from starlette_webtransport.testing.server import running_server


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    if scope["type"] == "webtransport":
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await session.wait_closed()


async def test_certificate_rotates_before_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devcert, "ROTATION_CHECK_INTERVAL", 0.05)
    async with running_server(app) as server:
        old = server.certificate_sha256
        url = f"https://127.0.0.1:{server.port}/"
        async with connect(url, certificate_hashes=[old]):
            pass
        server.certificate_not_after = datetime.now(UTC)  # as if 13 days had passed
        async with asyncio.timeout(10):
            while server.certificate_generation == 0:
                await asyncio.sleep(0.05)
        new = server.certificate_sha256
        assert new != old
        assert server.certificate_not_after is not None
        assert server.certificate_not_after > datetime.now(UTC)
        async with connect(url, certificate_hashes=[new]) as session:
            assert session.is_ready
        with pytest.raises(WebTransportConnectError):
            async with connect(url, certificate_hashes=[old]):
                pass
