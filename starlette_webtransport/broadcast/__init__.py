"""Rooms: named groups of sessions, fan-out to them, and presence, across processes.

Importable without the server, the client or the Starlette integration: it needs
sessions (``session``) and, for typed messages, ``structured``. ``docs/broadcast.md``
describes the API, the delivery kinds, the slow-consumer policy and the backends.
"""

from .backends import Backend, BackendUnavailableError, MemoryBackend, backend_for_url
from .delivery import (
    DEFAULT_POLICIES,
    SLOW_CONSUMER_CODE,
    SLOW_CONSUMER_REASON,
    Delivery,
    DeliveryPolicy,
    SlowConsumer,
)
from .hub import ENVIRONMENT_VARIABLE, Broadcast, configure, default_broadcast
from .member import Member
from .presence import MemberInfo, PresenceEvent, PresenceKind, PresenceWatch

__all__ = [
    "DEFAULT_POLICIES",
    "ENVIRONMENT_VARIABLE",
    "SLOW_CONSUMER_CODE",
    "SLOW_CONSUMER_REASON",
    "Backend",
    "BackendUnavailableError",
    "Broadcast",
    "Delivery",
    "DeliveryPolicy",
    "Member",
    "MemberInfo",
    "MemoryBackend",
    "PresenceEvent",
    "PresenceKind",
    "PresenceWatch",
    "SlowConsumer",
    "backend_for_url",
    "configure",
    "default_broadcast",
]
