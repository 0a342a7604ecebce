"""Sending the session's ``webtransport.stream.consumed`` reports (spec 1.1).

:class:`~.credit.ConsumedCounts` decides *what* is due; this decides *who sends it*, at
the least cost. Most apps answer what they read, so a due report rides on the app's next
send of the session (:meth:`ConsumedReporter.send_due`, called before it). What no send
carried by the end of the loop step that made it due goes through a reporter task, made
the first time one is needed: an idle session, or one whose app answers every stream,
never has one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from . import constants
from .credit import ConsumedCounts
from .signal import Signal

if TYPE_CHECKING:
    from ..asgi import SendMessage


class Session(Protocol):
    @property
    def session_id(self) -> str: ...
    @property
    def is_closed(self) -> bool: ...


class ConsumedReporter:
    """The reports of one session and the task that sends those no write carried."""

    __slots__ = (
        "_counts",
        "_kick_scheduled",
        "_send",
        "_session",
        "_wake",
        "due",
        "holding",
        "task",
    )

    def __init__(self, session: Session, send: Callable[[SendMessage], Awaitable[None]]) -> None:
        self._session = session
        self._send = send
        """The session's raw send: the server's ``OSError`` means the session is over."""
        self._counts = ConsumedCounts(constants.CONSUMED_REPORT_BYTES)
        self.due: Mapping[int, None] = self._counts.due_ids
        """Non-empty while a report is due: what every send of the session looks at
        before it goes, so an attribute rather than a call."""
        self._wake = Signal()
        """Wakes the reporter task when reports became due that no send carried."""
        self._kick_scheduled = False
        self.holding = False
        """Set while a handler's first step runs inside the reader's turn (see
        :meth:`~.streamset.StreamSet.announce`): that code decides about the kick."""
        self.task: asyncio.Task[None] | None = None

    def consumed(self, stream_id: int, size: int, *, flush: bool) -> None:
        """The app read or dropped ``size`` bytes of the stream; ``flush``: report now."""
        if self._counts.taken(stream_id, size, flush=flush) and not self.holding:
            self.kick_soon()

    def kick_soon(self) -> None:
        """Look for reports that no send carried one callback from now (:meth:`_kick`);
        one look serves every report that becomes due before it."""
        if not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def unread(self, stream_id: int, size: int) -> None:
        self._counts.restored(stream_id, size)

    def end(self) -> None:
        """The session ended: the server returns all credit by itself."""
        self._counts.clear()
        if self.task is not None:
            self.task.cancel()

    async def send_due(self) -> bool:
        """Send every due report; False once the server says the session is over. A
        report whose send was interrupted is due again."""
        counts = self._counts
        while self.due and (report := counts.pop_due()) is not None:
            stream_id, size = report
            try:
                await self._send(
                    {"type": "webtransport.stream.consumed", "stream": stream_id, "bytes": size}
                )
            except OSError:
                return False
            except BaseException:
                counts.requeue(stream_id, size)
                raise
        return True

    def _kick(self) -> None:
        """Reports became due during the last step: those no send carried meanwhile go
        through the reporter task. Deciding one callback later, rather than waking the
        task at once, spares a task step per stream where the app answers what it read."""
        self._kick_scheduled = False
        if not self.due or self._session.is_closed:
            return
        if self.task is None:
            self.task = asyncio.create_task(
                self._report(), name=f"webtransport-session-{self._session.session_id}-credit"
            )
        else:
            self._wake.set()

    async def _report(self) -> None:
        """A task of its own, so that reads never wait on ``send`` and a cancelled read
        loses nothing."""
        while True:
            if self.due:
                if not await self.send_due():
                    return
                continue
            self._wake.clear()
            await self._wake.wait()
