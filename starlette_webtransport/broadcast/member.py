"""One session's side of the broadcast: its queues, its writers and its groups.

A member lives exactly as long as its session (or until it leaves its last group): its
writer tasks belong to a ``TaskGroup`` in the member's own task, which ends when the
session closes, so nothing a member started outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..session import (
    DatagramTooLargeError,
    SessionClosedError,
    StreamError,
    WebTransportSendStream,
    WebTransportSession,
)
from .delivery import (
    SLOW_CONSUMER_CODE,
    SLOW_CONSUMER_REASON,
    STREAM_WRITE_BATCH,
    Delivery,
    DeliveryPolicy,
    SlowConsumer,
)

log = logging.getLogger("starlette_webtransport.broadcast")


class _Lane:
    """A member's bounded queue for one delivery kind, emptied by one writer task."""

    def __init__(self, member: Member, delivery: Delivery, policy: DeliveryPolicy) -> None:
        self.member = member
        self.delivery = delivery
        self.policy = policy
        self.queue: deque[bytes] = deque()
        self.ready = asyncio.Event()
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self.task: asyncio.Task[None] | None = None
        self._stream: WebTransportSendStream | None = None

    def offer(self, data: bytes) -> None:
        """Queue ``data`` without waiting; a full queue applies the policy."""
        if len(self.queue) >= self.policy.queue_size:
            if self.policy.on_full is SlowConsumer.DROP_NEWEST:
                self.dropped += 1
                return
            if self.policy.on_full is SlowConsumer.CLOSE:
                self.member._close_slow(self.delivery)
                return
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(data)
        self.ready.set()

    async def run(self) -> None:
        session = self.member.session
        while True:
            while not self.queue:
                if self.member._stopping.is_set():
                    return
                self.ready.clear()
                await self.ready.wait()
            try:
                await self._write()
            except SessionClosedError:
                return
            except (StreamError, DatagramTooLargeError) as exc:
                self.failed += 1  # one lost message; the lane goes on
                log.debug("broadcast to session %s failed: %s", session.session_id, exc)

    async def _write(self) -> None:
        session = self.member.session
        if self.delivery is Delivery.DATAGRAM:
            await session.datagrams.send(self.queue.popleft())
            self.delivered += 1
        elif self.delivery is Delivery.UNI_STREAM:
            stream = await session.create_unidirectional_stream()
            await stream.write(self.queue.popleft(), end_stream=True)
            self.delivered += 1
        else:
            batch = [self.queue.popleft()]
            size = len(batch[0])
            while self.queue and size + len(self.queue[0]) <= STREAM_WRITE_BATCH:
                size += len(self.queue[0])
                batch.append(self.queue.popleft())
            if self._stream is None:
                self._stream = await session.create_unidirectional_stream()
            try:
                await self._stream.write(b"".join(batch))
            except StreamError:
                self._stream = None  # the peer stopped it: the next message opens another
                self.failed += len(batch) - 1
                raise
            self.delivered += len(batch)

    async def finish(self) -> None:
        """FIN the member's stream, if the session outlives the membership; a peer that
        does not read gets one second, not a hold on the member's task."""
        if self._stream is not None:
            with contextlib.suppress(SessionClosedError, StreamError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._stream.close()


class Member:
    """A session in one or more groups of a :class:`~.Broadcast`."""

    def __init__(
        self,
        session: WebTransportSession,
        member_id: str,
        policies: dict[Delivery, DeliveryPolicy],
        on_end: Callable[[Member], None],
    ) -> None:
        self.session = session
        self.member_id = member_id
        self.groups: dict[str, dict[str, Any]] = {}
        """Group name -> the presence data given at join."""
        self._policies = policies
        self._on_end = on_end
        self._lanes: dict[Delivery, _Lane] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._closing = False
        self.task = asyncio.create_task(self._live(), name=f"broadcast member {member_id}")

    def __repr__(self) -> str:
        return f"<Member {self.member_id} groups={sorted(self.groups)}>"

    @property
    def active(self) -> bool:
        return not self._stopping.is_set()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per delivery kind: messages queued, delivered, dropped by the policy, failed."""
        return {
            lane.delivery.value: {
                "queued": len(lane.queue),
                "delivered": lane.delivered,
                "dropped": lane.dropped,
                "failed": lane.failed,
            }
            for lane in self._lanes.values()
        }

    def offer(self, delivery: Delivery, data: bytes) -> None:
        if self._stopping.is_set():
            return
        lane = self._lanes.get(delivery)
        if lane is None:
            lane = self._lanes[delivery] = _Lane(self, delivery, self._policies[delivery])
            self._start(lane)
        lane.offer(data)

    def _start(self, lane: _Lane) -> None:
        """Start the lane's writer in the member's task group (once that group exists:
        a message published right after ``join()`` waits in the queue until then)."""
        if self._tasks is not None and lane.task is None:
            name = f"broadcast {lane.delivery.value} writer for {self.member_id}"
            lane.task = self._tasks.create_task(lane.run(), name=name)

    def stop(self) -> None:
        """End the member: its writers stop, and what they had queued is discarded."""
        self._stopping.set()
        for lane in self._lanes.values():
            lane.queue.clear()

    def _close_slow(self, delivery: Delivery) -> None:
        if self._closing or self._tasks is None:
            return
        self._closing = True
        log.warning(
            "closing session %s: its %s broadcast queue is full (slow consumer)",
            self.session.session_id,
            delivery.value,
        )
        self._tasks.create_task(self._close_session())

    async def _close_session(self) -> None:
        with contextlib.suppress(SessionClosedError, OSError):
            await self.session.close(code=SLOW_CONSUMER_CODE, reason=SLOW_CONSUMER_REASON)
        self.stop()

    async def _live(self) -> None:
        closed = asyncio.ensure_future(self.session.wait_closed())
        closed.add_done_callback(lambda _: self.stop())
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                for lane in self._lanes.values():
                    self._start(lane)
                await self._stopping.wait()
                for lane in self._lanes.values():
                    if lane.task is not None:
                        lane.task.cancel()  # a write blocked on a stalled peer ends here
            for lane in self._lanes.values():
                await lane.finish()
        except Exception:
            log.exception("broadcast member %s failed", self.member_id)
        finally:
            self._tasks = None
            closed.cancel()
            self._on_end(self)
