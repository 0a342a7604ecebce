"""Serving a session's peer streams, each in an error domain of its own.

A session multiplexes independent streams, and what happens on one of them (the peer
resets it, stops reading it, or the app's code for it fails) is an event of that stream,
not of the session. The obvious code, an ``asyncio.TaskGroup`` with a task per stream,
gets this wrong: the first exception of any task cancels all the others and ends the
session, and the group it raises makes even an ordinary disconnect look like a crash.
:func:`serve_streams` is that loop written once, the robust way, so that the code users
copy from the docs survives its streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..asgi import SessionEnd
from .constants import INTERNAL_ERROR_CODE
from .exceptions import SessionClosedError, StreamResetError, StreamStoppedError
from .session import WebTransportSession
from .state import SessionState
from .stream import StreamType

__all__ = ["DatagramHandler", "StreamHandler", "serve_streams"]

logger = logging.getLogger(__name__)

StreamHandler = Callable[[StreamType], Awaitable[object]]
"""``async def on_stream(stream)``: owns one peer stream, bidirectional
(:class:`~.stream.WebTransportStream`) or unidirectional
(:class:`~.stream.WebTransportReceiveStream`)."""
DatagramHandler = Callable[[bytes], Awaitable[object] | None]
"""``on_datagram(data)``, a plain function or a coroutine function."""

_PRUNE_AT = 64
"""Finished handler tasks ``serve_streams`` may hold on to before it drops them."""

_eager_task: Callable[..., asyncio.Task[None]] | None = getattr(asyncio, "eager_task_factory", None)
"""Python 3.12+: a handler's task runs its first step at once, inside the reader's turn,
so a stream whose request is all there (a small request/response) is answered without a
loop turn of its own; it becomes an ordinary task at its first wait. Before 3.12 a task
starts in the next turn."""

_QUIET = (StreamResetError, StreamStoppedError, SessionEnd)
"""What ends a handler without a log line: the peer gave the stream up, or the session
ended. Neither is the app's fault, and both happen in every healthy deployment."""


async def serve_streams(
    session: WebTransportSession,
    on_stream: StreamHandler,
    *,
    on_datagram: DatagramHandler | None = None,
) -> None:
    """Run ``on_stream(stream)`` for every stream the peer opens, each in a task of its
    own, and ``on_datagram(data)`` for every datagram, until the session ends.

    Each stream is its own error domain; nothing a handler does ends the session:

    - the peer's RESET_STREAM or STOP_SENDING (``StreamResetError``,
      ``StreamStoppedError``) or the session's end (``SessionClosedError``) ends that
      handler quietly; what is left open of its stream is aborted with code 0;
    - any other exception is logged once, with its traceback, the path and the stream id
      (logger ``starlette_webtransport.session.tasks``), and only that stream is aborted
      (:meth:`~.stream.WebTransportStream.abort`: RESET_STREAM and STOP_SENDING) with
      :data:`~.constants.INTERNAL_ERROR_CODE` (``0x102``).

    ``on_datagram`` is called once per received datagram, in order, one at a time; an
    exception from it (say ``DatagramTooLargeError`` when echoing) is logged once per
    exception type and the next datagram is handled as usual. A handler that wants the
    whole session to end says so with ``await session.close(code=..., reason=...)``.

    The tasks belong to this call, so nothing outlives the session: when it ends, the
    handlers still running are cancelled (those blocked on the session have already seen
    ``SessionClosedError``) and this returns. Call it after ``accept()``.
    """
    if session.state is SessionState.CONNECTING:
        raise RuntimeError("serve_streams() needs an accepted session; call accept() first")
    handlers = _Handlers(session, on_stream, on_datagram)
    streams = session._stream_set
    streams.serve_incoming(handlers)
    if on_datagram is not None:
        session.datagrams._when_arrived(handlers.datagram_arrived)
    try:
        reader = session._read_here()  # this task reads, if the reader task has not started
        if reader is not None:
            await reader
        await session._closed_event.wait()
    finally:
        # Unless a later serve_streams() call on the session took them over.
        if streams._on_incoming is handlers:
            streams.serve_incoming(None)
        if session.datagrams._on_arrival == handlers.datagram_arrived:
            session.datagrams._when_arrived(None)
        await handlers.finish()


class _Handlers:
    """The handler tasks of one ``serve_streams`` call: an object with slots rather than
    closures or an ``asyncio.TaskGroup`` (whose set, frames and callbacks cost close to a
    kilobyte per idle session). A task group's one other service, cancelling the rest
    when a task fails, is what ``serve_streams`` must not do: handlers catch their own
    exceptions, so only ``finish`` ends them."""

    __slots__ = ("on_datagram", "on_stream", "prune_at", "session", "tasks")

    def __init__(
        self,
        session: WebTransportSession,
        on_stream: StreamHandler,
        on_datagram: DatagramHandler | None,
    ) -> None:
        self.session = session
        self.on_stream = on_stream
        self.on_datagram = on_datagram
        self.tasks: list[asyncio.Task[None]] | None = None
        """To cancel when the session ends, made by the first. Finished ones are pruned
        now and then rather than by a done callback, which would cost a loop callback per
        stream."""
        self.prune_at = _PRUNE_AT

    def __call__(self, stream: StreamType) -> None:
        """A stream arrived: called by the session's reader as it admits the stream, so
        the handler's task starts there, with no consumer task in between. The object is
        the callback itself, where a bound method would cost every session 64 bytes."""
        name = f"webtransport-session-{self.session.session_id}-stream-{stream._stream_id}"
        self._start(_serve_stream(self.session, self.on_stream, stream), name)

    def datagram_arrived(self) -> None:
        """The pump starts with the first datagram: a session that never gets one (most)
        costs no task for it."""
        assert self.on_datagram is not None
        name = f"webtransport-session-{self.session.session_id}-datagrams"
        self._start(_serve_datagrams(self.session, self.on_datagram), name)

    async def finish(self) -> None:
        """Cancel the handlers still running and wait until every one has ended, as a task
        group's exit would: nothing outlives the call, even when it is cancelled itself
        (then the cancellation is raised once they have ended)."""
        pending = [task for task in self.tasks or () if not task.done()]
        for task in pending:
            task.cancel()
        cancelled = False
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                cancelled = True
            pending = [task for task in pending if not task.done()]
        if cancelled:
            raise asyncio.CancelledError

    def _start(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        tasks = self.tasks
        if tasks is None:
            self.tasks = tasks = []
        elif len(tasks) >= self.prune_at:
            tasks[:] = [task for task in tasks if not task.done()]
            self.prune_at = max(_PRUNE_AT, 2 * len(tasks))
        loop = asyncio.get_running_loop()
        if _eager_task is None:
            tasks.append(loop.create_task(coroutine, name=name))
            return
        task = _eager_task(loop, coroutine, name=name)
        if not task.done():  # else it answered within this loop turn: nothing to track
            tasks.append(task)


async def _serve_stream(
    session: WebTransportSession, on_stream: StreamHandler, stream: StreamType
) -> None:
    try:
        await on_stream(stream)
    except Exception as exc:
        quiet = _only(exc, _QUIET)
        if not quiet:
            logger.error(
                "WebTransport stream handler failed (path %s, session %s, stream %d); the "
                "stream is aborted with code 0x%x and the session goes on",
                session.path,
                session.session_id,
                stream.stream_id,
                INTERNAL_ERROR_CODE,
                exc_info=exc,
            )
        if not session.is_closed:
            with contextlib.suppress(SessionClosedError):
                await stream.abort(0 if quiet else INTERNAL_ERROR_CODE)


async def _serve_datagrams(session: WebTransportSession, on_datagram: DatagramHandler) -> None:
    reported: set[type[BaseException]] = set()
    async for data in session.datagrams:
        try:
            result = on_datagram(data)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception as exc:
            if _only(exc, (SessionEnd,)):
                return  # e.g. an echo of a datagram that was queued when the session ended
            if _only(exc, _QUIET) or type(exc) in reported:
                continue
            reported.add(type(exc))
            logger.error(
                "WebTransport datagram handler failed (path %s, session %s); the session "
                "goes on, and further %s from it are not logged",
                session.path,
                session.session_id,
                type(exc).__name__,
                exc_info=exc,
            )


def _only(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """``exc`` is one of ``kinds``, or a group (nested or not) made only of them."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, kinds) for inner in exc.exceptions)
    return isinstance(exc, kinds)
