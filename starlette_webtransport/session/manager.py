"""Many sessions in one place: lookup, filtering, bulk close and periodic cleanup.

The manager holds sessions until they are removed; a background task removes closed
ones every ``session_cleanup_interval`` seconds so a long-running server does not
accumulate them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from . import constants
from .exceptions import SessionLimitError
from .session import WebTransportSession
from .state import SessionState

logger = logging.getLogger("starlette_webtransport.session")


class SessionManager:
    """Use as ``async with SessionManager() as manager:``; leaving closes every session."""

    def __init__(
        self,
        *,
        max_sessions: int = constants.DEFAULT_MAX_SESSIONS,
        session_cleanup_interval: float = constants.DEFAULT_SESSION_CLEANUP_INTERVAL,
    ) -> None:
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive int, got {max_sessions!r}")
        if not session_cleanup_interval > 0:
            raise ValueError(
                f"session_cleanup_interval must be positive, got {session_cleanup_interval!r}"
            )
        self._max_sessions = max_sessions
        self._cleanup_interval = session_cleanup_interval
        self._sessions: dict[str, WebTransportSession] = {}
        self._lock = asyncio.Lock()
        self._cleanup_task: asyncio.Task[None] | None = None
        self._started_at: float | None = None
        self._total_added = 0
        self._total_removed = 0
        self._total_cleaned_up = 0
        self._total_closed = 0
        self._cleanup_runs = 0
        self._peak_sessions = 0

    @classmethod
    def create(
        cls,
        *,
        max_sessions: int = constants.DEFAULT_MAX_SESSIONS,
        session_cleanup_interval: float = constants.DEFAULT_SESSION_CLEANUP_INTERVAL,
    ) -> SessionManager:
        return cls(max_sessions=max_sessions, session_cleanup_interval=session_cleanup_interval)

    async def __aenter__(self) -> SessionManager:
        if self._cleanup_task is not None:
            raise RuntimeError("this SessionManager is already running")
        self._started_at = time.time()
        self._cleanup_task = asyncio.create_task(self._cleanup_loop(), name="session-cleanup")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def add_session(self, *, session: WebTransportSession) -> str:
        """Manage ``session``; :class:`SessionLimitError` at ``max_sessions``."""
        if self._cleanup_task is None:
            raise RuntimeError('enter the SessionManager with "async with" before adding sessions')
        async with self._lock:
            session_id = session.session_id
            if session_id in self._sessions:
                raise ValueError(f"session {session_id} is already managed")
            if len(self._sessions) >= self._max_sessions:
                raise SessionLimitError(
                    f"the manager already holds max_sessions={self._max_sessions} sessions"
                )
            self._sessions[session_id] = session
            self._total_added += 1
            self._peak_sessions = max(self._peak_sessions, len(self._sessions))
            return session_id

    async def remove_session(self, *, session_id: str) -> WebTransportSession | None:
        async with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None:
                self._total_removed += 1
            return session

    async def get_session(self, *, session_id: str) -> WebTransportSession | None:
        async with self._lock:
            return self._sessions.get(session_id)

    async def get_all_sessions(self) -> list[WebTransportSession]:
        async with self._lock:
            return list(self._sessions.values())

    def get_session_count(self) -> int:
        """Without taking the lock, so it is usable from synchronous code."""
        return len(self._sessions)

    async def get_sessions_by_state(self, *, state: SessionState) -> list[WebTransportSession]:
        async with self._lock:
            return [s for s in self._sessions.values() if s.state is state]

    async def cleanup_closed_sessions(self) -> int:
        """Remove the sessions that are closed; return how many."""
        async with self._lock:
            closed = [sid for sid, s in self._sessions.items() if s.is_closed]
            for session_id in closed:
                del self._sessions[session_id]
            self._total_removed += len(closed)
            self._total_cleaned_up += len(closed)
            return len(closed)

    async def close_all_sessions(self) -> None:
        """Close every managed session (concurrently) and remove them all."""
        async with self._lock:
            sessions = [s for s in self._sessions.values() if not s.is_closed]
            self._total_removed += len(self._sessions)
            self._sessions.clear()
        results = await asyncio.gather(
            *(session.close() for session in sessions), return_exceptions=True
        )
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("closing session %s failed: %r", session.session_id, result)
            else:
                self._total_closed += 1

    async def get_stats(self) -> dict[str, Any]:
        async with self._lock:
            states = Counter(session.state.value for session in self._sessions.values())
            return {
                "active_sessions": len(self._sessions),
                "max_sessions": self._max_sessions,
                "peak_sessions": self._peak_sessions,
                "total_added": self._total_added,
                "total_removed": self._total_removed,
                "total_cleaned_up": self._total_cleaned_up,
                "total_closed_by_manager": self._total_closed,
                "cleanup_runs": self._cleanup_runs,
                "states": {state.value: states.get(state.value, 0) for state in SessionState},
                "running": self._cleanup_task is not None,
                "uptime": 0.0 if self._started_at is None else time.time() - self._started_at,
            }

    async def shutdown(self) -> None:
        """Stop the cleanup task, then close and remove every session."""
        task, self._cleanup_task = self._cleanup_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        await self.close_all_sessions()

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            removed = await self.cleanup_closed_sessions()
            self._cleanup_runs += 1
            if removed:
                logger.debug("removed %d closed sessions", removed)
