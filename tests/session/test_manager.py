"""SessionManager with many sessions, limits, cleanup and shutdown."""

from __future__ import annotations

import asyncio

import pytest
from _session_helpers import RawServer, make_scope, settle

from starlette_webtransport.session import (
    SessionLimitError,
    SessionManager,
    SessionState,
    WebTransportSession,
)


async def make_session(index: int, *, accept: bool = True) -> tuple[WebTransportSession, RawServer]:
    server = RawServer()
    session = WebTransportSession(make_scope(session_id=f"s{index}"), server.receive, server.send)
    if accept:
        server.push({"type": "webtransport.connect"})
        await session.accept()
    return session, server


async def test_many_sessions() -> None:
    async with SessionManager.create(max_sessions=500) as manager:
        pairs = [await make_session(i) for i in range(300)]
        for session, _ in pairs:
            assert await manager.add_session(session=session) == session.session_id
        unaccepted, _ = await make_session(999, accept=False)
        await manager.add_session(session=unaccepted)
        assert manager.get_session_count() == 301
        assert await manager.get_session(session_id="s42") is pairs[42][0]
        assert await manager.get_session(session_id="nope") is None
        for _, server in pairs[:100]:
            server.push({"type": "webtransport.disconnect", "code": 0, "reason": ""})
        await settle()
        for session, _ in pairs[100:150]:
            await session.close()
        for _, server in pairs[150:170]:
            server.push({"type": "webtransport.drain"})
        await settle()
        by_state = {
            state: len(await manager.get_sessions_by_state(state=state)) for state in SessionState
        }
        assert by_state == {
            SessionState.CONNECTING: 1,
            SessionState.CONNECTED: 130,
            SessionState.DRAINING: 20,
            SessionState.CLOSING: 0,
            SessionState.CLOSED: 150,
        }
        stats = await manager.get_stats()
        assert stats["states"]["closed"] == 150 and stats["active_sessions"] == 301
        assert stats["peak_sessions"] == 301 and stats["total_added"] == 301
        assert await manager.cleanup_closed_sessions() == 150
        assert await manager.cleanup_closed_sessions() == 0
        assert manager.get_session_count() == 151
        removed = await manager.remove_session(session_id="s200")
        assert removed is pairs[200][0] and not removed.is_closed
        assert await manager.remove_session(session_id="s200") is None
        assert len(await manager.get_all_sessions()) == 150
        stats = await manager.get_stats()
        assert (stats["total_removed"], stats["total_cleaned_up"]) == (151, 150)
    # Leaving the block closed every remaining session.
    assert manager.get_session_count() == 0
    assert all(s.is_closed for s, _ in pairs if s is not removed)
    assert unaccepted.is_closed
    stats = await manager.get_stats()
    assert stats["total_closed_by_manager"] == 150 and not stats["running"]
    await removed.close()


async def test_limits_and_misuse() -> None:
    manager = SessionManager(max_sessions=2)
    session, _ = await make_session(1)
    with pytest.raises(RuntimeError, match="async with"):
        await manager.add_session(session=session)
    async with manager:
        with pytest.raises(RuntimeError, match="already running"):
            await manager.__aenter__()
        await manager.add_session(session=session)
        with pytest.raises(ValueError, match="already managed"):
            await manager.add_session(session=session)
        await manager.add_session(session=(await make_session(2))[0])
        with pytest.raises(SessionLimitError, match="max_sessions=2"):
            await manager.add_session(session=(await make_session(3))[0])
    with pytest.raises(ValueError):
        SessionManager(max_sessions=0)
    with pytest.raises(ValueError):
        SessionManager(session_cleanup_interval=0)


async def test_cleanup_task_removes_closed_sessions() -> None:
    async with SessionManager(session_cleanup_interval=0.01) as manager:
        session, server = await make_session(1)
        await manager.add_session(session=session)
        server.push({"type": "webtransport.disconnect", "code": 1, "reason": ""})
        for _ in range(100):
            if manager.get_session_count() == 0:
                break
            await asyncio.sleep(0.01)
        assert manager.get_session_count() == 0
        stats = await manager.get_stats()
        assert stats["cleanup_runs"] >= 1 and stats["total_cleaned_up"] == 1
