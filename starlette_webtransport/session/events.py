"""Session and stream events.

Handlers run in registration order, synchronously with the session: an async handler is
awaited before the session processes its next ASGI event. That keeps events ordered and
lets a handler apply backpressure; long work belongs in a task the handler starts. A
handler that raises is logged and does not disturb the session or the other handlers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import WebTransportSession

logger = logging.getLogger("starlette_webtransport.session")


class EventType(StrEnum):
    SESSION_READY = "session.ready"
    """The session is CONNECTED (accepted, or initialized in the client role)."""
    SESSION_DRAINING = "session.draining"
    """The peer sent WT_DRAIN_SESSION."""
    SESSION_CLOSED = "session.closed"
    """``data``: ``code``, ``reason``, ``by`` (``"local"``, ``"peer"`` or ``"error"``)."""
    SESSION_HEALTH = "session.health"
    """From ``monitor_health()`` when it finds issues; ``data["issues"]`` lists them."""
    STREAM_OPENED = "stream.opened"
    """A stream was created; ``data``: ``stream``, ``initiator`` (``"local"``/``"peer"``)."""
    STREAM_CLOSED = "stream.closed"
    """Both sides of a stream are done; ``data``: ``stream``."""
    STREAM_RESET = "stream.reset"
    """The peer reset a stream; ``data``: ``stream``, ``code``."""
    STREAM_STOPPED = "stream.stop_sending"
    """The peer sent STOP_SENDING; ``data``: ``stream``, ``code``."""
    STREAM_REFUSED = "stream.refused"
    """A peer stream was refused by the stream limits; ``data``: ``stream_id``."""
    DATAGRAM_RECEIVED = "datagram.received"
    """``data``: ``size``."""
    DATAGRAM_DROPPED = "datagram.dropped"
    """The receive queue was full and its oldest datagram was dropped; ``data``: ``size``."""


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    session: WebTransportSession
    data: Mapping[str, Any] = field(default_factory=dict)


EventHandler = Callable[[Event], Awaitable[None] | None]


class EventEmitter:
    """Handler registry keyed by :class:`EventType`."""

    def __init__(self) -> None:
        self._handlers: dict[EventType, list[EventHandler]] = {}

    def on(self, name: str, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every event called ``name``."""
        self._handlers.setdefault(_event_type(name), []).append(handler)

    def off(self, name: str, handler: EventHandler) -> None:
        """Remove one registration of ``handler``; ``ValueError`` if there is none, which
        catches removing a different function object than the one registered."""
        handlers = self._handlers.get(_event_type(name), [])
        if handler not in handlers:
            raise ValueError(f"{handler!r} is not registered for event {name!r}")
        handlers.remove(handler)

    def _has_handlers(self, event_type: EventType) -> bool:
        return bool(self._handlers.get(event_type))

    async def _dispatch(self, event: Event) -> None:
        for handler in list(self._handlers.get(event.type, ())):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("handler %r for event %r raised", handler, event.type.value)


def _event_type(name: str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        known = ", ".join(e.value for e in EventType)
        raise ValueError(f"unknown event {name!r}; known events: {known}") from None
