"""The session tests' live server: one fixture, shared by every file that drives the
session API over real QUIC (the harness and its helpers are in ``test_quic_session``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_quic_session import GRACE, Harness, Live

from starlette_webtransport.testing.plugin import ClientFactory, ServerFactory


@pytest.fixture
async def live(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> AsyncIterator[Live]:
    harness = Harness()
    async with webtransport_server(harness, graceful_timeout=GRACE) as server:
        yield Live(harness, server, webtransport_client)
