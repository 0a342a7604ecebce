"""Closing the Redis backend ends its tasks even when one swallowed a cancellation.

redis-py can swallow a ``CancelledError`` that lands inside a command (seen inside
``pipeline.execute()`` at shutdown); the publisher then went back to waiting for work, and a
worker of ``--workers 2 --broadcast redis://…`` never finished its shutdown (1 run in 5 of
the two-worker room page test hung until it was killed).
"""

from __future__ import annotations

import asyncio
import time

from starlette_webtransport.broadcast.redis import CLOSE_TIMEOUT, RedisBackend

from .conftest import RedisServer


async def test_close_ends_a_task_that_swallowed_the_first_cancellation(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url, node_id="node-a", ttl=5.0)
    await backend.start(lambda group, envelope: None)
    cancels = 0

    async def stubborn() -> None:
        """Swallows the first cancellation, as redis-py did, then waits like the publisher."""
        nonlocal cancels
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancels += 1
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    backend._tasks.append(task)
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(backend.close(), CLOSE_TIMEOUT + 3)
    assert task.cancelled() and cancels == 1
    assert time.monotonic() - started < CLOSE_TIMEOUT
    assert backend._tasks == []
