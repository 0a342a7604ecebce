"""Who is in a group, and the join/leave events local code can watch."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import msgspec

WATCH_QUEUE_SIZE = 1024
"""Events a watcher can fall behind by; past that the oldest are dropped (and counted)."""


class MemberInfo(msgspec.Struct, frozen=True):
    """A member of a group, as every node sees it."""

    member_id: str
    """``<node id>:<session id>``: unique across processes and machines."""
    group: str
    node: str
    data: dict[str, Any] = {}
    """What the joining code passed as ``data=`` (a name, a colour...)."""


class PresenceKind(enum.Enum):
    JOIN = "join"
    LEAVE = "leave"


class PresenceEvent(msgspec.Struct, frozen=True):
    kind: PresenceKind
    member: MemberInfo


class PresenceWatch:
    """``async with hub.watch(group) as events: async for event in events: ...``

    Events queue in a bounded deque so a watcher that stops iterating cannot make the
    hub hold more than :data:`WATCH_QUEUE_SIZE` events for it.
    """

    def __init__(self, group: str, on_close: Callable[[PresenceWatch], None]) -> None:
        self.group = group
        self.dropped = 0
        self._events: deque[PresenceEvent] = deque()
        self._arrived = asyncio.Event()
        self._closed = False
        self._on_close = on_close

    def _deliver(self, event: PresenceEvent) -> None:
        if len(self._events) >= WATCH_QUEUE_SIZE:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)
        self._arrived.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._arrived.set()
            self._on_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[PresenceEvent]:
        return self

    async def __anext__(self) -> PresenceEvent:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        return self._events.popleft()
