"""Fixtures that run the structured tests over any transport that provides streams.

Every stream and datagram test takes the ``connection`` fixture, an object with
``reset_error`` (the exception class the streams raise on a peer's reset),
``open_stream_pair()`` (a new bidirectional stream: ``near`` opened by one peer, ``far``
the same stream as the other peer accepts it; ``near`` writes first, so a real server
has announced the stream before ``far`` reads), ``datagram_pair()`` and
``wait_stopped(near)`` (the code of the STOP_SENDING ``near``'s sending side received).
To run the tests over real QUIC, add a factory for such an object to
``CONNECTION_FACTORIES``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from .memory import memory_connection

CONNECTION_FACTORIES: dict[str, Callable[[], AbstractAsyncContextManager[Any]]] = {
    "memory": memory_connection,
}


@pytest.fixture(params=sorted(CONNECTION_FACTORIES))
async def connection(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async with CONNECTION_FACTORIES[request.param]() as conn:
        yield conn
