"""``redis://host:port/db``: groups shared by every process and machine on one Redis.

Messages travel on Redis pub/sub, one channel per group, subscribed while this node has
members in it. Presence is a sorted set per group scored by expiry time, which each node
refreshes for its own members every third of the TTL; any node that finds an expired
entry removes it and announces the leave, so a member of a dead process is gone within
one TTL plus one refresh period.

Redis going away must not stop local delivery, so nothing here is awaited by a publish:
envelopes wait in a bounded outbound queue for the publisher task, and are dropped (and
counted) while Redis is unreachable. The listener logs the loss once, retries with a
capped backoff, and on return resubscribes and rewrites this node's presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .backends import (
    ENVELOPE_DECODER,
    ENVELOPE_ENCODER,
    MEMBER_DECODER,
    MEMBER_ENCODER,
    BackendUnavailableError,
    Envelope,
    Receiver,
    now,
)
from .presence import MemberInfo

log = logging.getLogger("starlette_webtransport.broadcast")

OUTBOUND_QUEUE_SIZE = 10_000
"""Envelopes waiting for Redis; past that the oldest are dropped."""
PUBLISH_BATCH = 512
"""Envelopes sent per pipeline round trip."""
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
"""Seconds between attempts to reach Redis again; the last repeats."""
STARTUP_WAIT = 3.0
"""Seconds ``start()`` waits for the first connection attempt."""
_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
CLOSE_TIMEOUT = 2.0
"""Seconds ``close()`` keeps cancelling the backend's tasks before it leaves them."""


class RedisBackend:
    def __init__(
        self, url: str, *, node_id: str, ttl: float, prefix: str = "starlette-webtransport:"
    ) -> None:
        self.url = url
        self.node_id = node_id
        self.ttl = ttl
        self.prefix = prefix
        self.dropped = 0
        """Envelopes not sent to other nodes because Redis was unreachable."""
        self._client: aioredis.Redis | None = None
        self._receiver: Receiver | None = None
        self._groups: set[str] = set()
        self._local: dict[tuple[str, str], MemberInfo] = {}
        self._outbound: deque[tuple[str, bytes]] = deque()
        self._pending = asyncio.Event()
        self._pubsub: Any = None
        self._up = False
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh_now = asyncio.Event()
        self._attempted = asyncio.Event()

    def _channel(self, group: str) -> str:
        return f"{self.prefix}group:{group}"

    def _presence_key(self, group: str) -> str:
        return f"{self.prefix}presence:{group}"

    def _info_key(self, group: str) -> str:
        return f"{self.prefix}info:{group}"

    async def start(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._pending, self._refresh_now, self._attempted = (asyncio.Event() for _ in range(3))
        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2.0, socket_timeout=5.0, retry=Retry(NoBackoff(), 1)
        )
        self._tasks = [
            asyncio.create_task(self._listen(), name="broadcast redis listener"),
            asyncio.create_task(self._publish_loop(), name="broadcast redis publisher"),
            asyncio.create_task(self._refresh_loop(), name="broadcast redis presence"),
        ]
        # The first members' presence should reach Redis, not wait for a refresh; a
        # Redis that is down at startup is logged and retried, it does not block.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STARTUP_WAIT):
                await self._attempted.wait()

    async def close(self) -> None:
        # Cancel until the tasks end: redis-py can swallow a cancellation that lands inside
        # a command (seen in pipeline.execute()), and the publisher would then wait for
        # work forever, holding the server's shutdown with it.
        pending = set(self._tasks)
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT
        while pending and asyncio.get_running_loop().time() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        if pending:
            log.warning("broadcast: %d Redis task(s) did not stop; left behind", len(pending))
        self._tasks = []
        if self._up and self._client is not None and self._local:
            with contextlib.suppress(*_ERRORS):
                await self._remove_all()
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        self._up = False

    # --- messages ------------------------------------------------------------------------

    async def subscribe(self, group: str) -> None:
        self._groups.add(group)
        if self._up and self._pubsub is not None:
            with contextlib.suppress(*_ERRORS):  # a lost connection resubscribes everything
                await self._pubsub.subscribe(self._channel(group))

    async def unsubscribe(self, group: str) -> None:
        self._groups.discard(group)
        if self._up and self._pubsub is not None:
            with contextlib.suppress(*_ERRORS):
                await self._pubsub.unsubscribe(self._channel(group))

    async def publish(self, group: str, envelope: Envelope) -> None:
        if not self._up:
            self.dropped += 1
            raise BackendUnavailableError(f"Redis at {self.url} is unreachable")
        if len(self._outbound) >= OUTBOUND_QUEUE_SIZE:
            self._outbound.popleft()
            self.dropped += 1
        self._outbound.append((self._channel(group), ENVELOPE_ENCODER.encode(envelope)))
        self._pending.set()

    async def _publish_loop(self) -> None:
        while True:
            while not self._outbound:
                self._pending.clear()
                await self._pending.wait()
            batch = [
                self._outbound.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbound)))
            ]
            assert self._client is not None
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except _ERRORS as exc:
                self.dropped += len(batch)
                self._failed("publish", exc)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            assert self._client is not None
            pubsub: Any = self._client.pubsub()  # its methods are untyped
            try:
                await pubsub.subscribe(
                    f"{self.prefix}node:{self.node_id}",  # keeps the connection subscribed
                    *(self._channel(group) for group in self._groups),
                )
                self._pubsub = pubsub
                self._up = True
                # Groups joined while that subscribe was in flight; from here on
                # subscribe() reaches this pubsub directly.
                if self._groups:
                    await pubsub.subscribe(*(self._channel(group) for group in self._groups))
                if attempt:
                    log.warning(
                        "broadcast: Redis at %s is back; resubscribed to %d group(s)",
                        self.url,
                        len(self._groups),
                    )
                self._refresh_now.set()
                self._attempted.set()
                attempt = 0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
            except _ERRORS as exc:
                if not self._attempted.is_set():
                    log.error("broadcast: cannot reach Redis at %s: %s; retrying", self.url, exc)
                self._attempted.set()
                self._lost(exc)
            finally:
                self._pubsub = None
                with contextlib.suppress(*_ERRORS):
                    await pubsub.aclose()
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1

    def _failed(self, what: str, exc: BaseException) -> None:
        """A command failed. Whether Redis is up is the listener's call (its connection
        sees a loss first and logs it once); this only says what was not done."""
        log.debug("broadcast: could not %s on Redis at %s: %s", what, self.url, exc)

    def _lost(self, exc: BaseException) -> None:
        """The listener's connection failed: Redis is down until it reconnects."""
        if self._up:
            log.error(
                "broadcast: lost Redis at %s (%s: %s); local members still receive local "
                "publishes, other processes' do not until it is back; reconnecting",
                self.url,
                type(exc).__name__,
                exc,
            )
        self._up = False
        self._outbound.clear()

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        group = channel.decode()[len(self.prefix) + len("group:") :]
        try:
            envelope = ENVELOPE_DECODER.decode(data)
        except ValueError as exc:  # msgspec.DecodeError and ValidationError are ValueErrors
            log.warning("broadcast: ignoring an undecodable message on %r: %s", group, exc)
            return
        assert self._receiver is not None
        self._receiver(group, envelope)

    # --- presence ------------------------------------------------------------------------

    async def add_member(self, info: MemberInfo) -> None:
        self._local[(info.group, info.member_id)] = info
        if self._up:
            try:
                await self._write_presence([info])
            except _ERRORS as exc:
                self._failed("record a join", exc)

    async def remove_member(self, info: MemberInfo) -> bool:
        self._local.pop((info.group, info.member_id), None)
        if not self._up:
            return True  # its entry expires; this node announces the leave locally
        assert self._client is not None
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(self._presence_key(info.group), info.member_id)
                pipe.hdel(self._info_key(info.group), info.member_id)
                removed, _ = await pipe.execute()
        except _ERRORS as exc:
            self._failed("record a leave", exc)
            return True
        return bool(removed)

    async def members(self, group: str) -> list[MemberInfo] | None:
        if not self._up or self._client is None:
            raise BackendUnavailableError(f"Redis at {self.url} is unreachable")
        try:
            ids = cast(
                list[bytes],
                await self._client.zrangebyscore(self._presence_key(group), now(), "+inf"),
            )
            if not ids:
                return []
            infos = cast(list[bytes | None], await self._client.hmget(self._info_key(group), ids))
        except _ERRORS as exc:
            self._failed("list members", exc)
            raise BackendUnavailableError(f"Redis at {self.url} is unreachable: {exc}") from exc
        return [MEMBER_DECODER.decode(data) for data in infos if data is not None]

    async def _write_presence(self, infos: list[MemberInfo]) -> None:
        assert self._client is not None
        expires = now() + self.ttl
        async with self._client.pipeline(transaction=False) as pipe:
            for info in infos:
                pipe.zadd(self._presence_key(info.group), {info.member_id: expires})
                pipe.hset(self._info_key(info.group), info.member_id, MEMBER_ENCODER.encode(info))
            await pipe.execute()

    async def _remove_all(self) -> None:
        assert self._client is not None
        async with self._client.pipeline(transaction=False) as pipe:
            for group, member_id in self._local:
                pipe.zrem(self._presence_key(group), member_id)
                pipe.hdel(self._info_key(group), member_id)
            await pipe.execute()

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ttl / 3):
                    await self._refresh_now.wait()
            self._refresh_now.clear()
            if not self._up:
                continue
            try:
                if self._local:
                    await self._write_presence(list(self._local.values()))
                for group in list(self._groups):
                    await self._expire(group)
            except _ERRORS as exc:
                self._failed("refresh presence", exc)

    async def _expire(self, group: str) -> None:
        """Remove members whose node stopped refreshing them, and announce each leave
        (ZREM's count makes exactly one node announce it)."""
        assert self._client is not None and self._receiver is not None
        key = self._presence_key(group)
        expired = cast(list[bytes], await self._client.zrangebyscore(key, "-inf", now()))
        for member_id in expired:
            if not await self._client.zrem(key, member_id):
                continue  # another node got there first
            data = cast(bytes | None, await self._client.hget(self._info_key(group), member_id))
            await self._client.hdel(self._info_key(group), member_id)
            if data is None:
                continue
            info = MEMBER_DECODER.decode(data)
            envelope = Envelope(info.node, "leave", "", data)
            log.info("broadcast: %s left %r (its node stopped refreshing it)", member_id, group)
            self._receiver(group, envelope)
            self._outbound.append((self._channel(group), ENVELOPE_ENCODER.encode(envelope)))
            self._pending.set()
