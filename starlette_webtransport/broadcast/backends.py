"""What the broadcast hub needs from the engine that links processes, and the
in-process backend.

The hub delivers every publish to its own members itself, at once, so a backend only
carries messages to *other* processes (and presence to and from them). That is what
keeps local delivery working while Redis is away, and what makes ``memory://`` a
backend that has nothing to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec

from .presence import MemberInfo


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """One publish or presence change as it travels between processes (msgpack)."""

    origin: str
    """The publishing hub's node id: a hub ignores its own envelopes."""
    kind: str
    """A :class:`~.Delivery` value, or ``"join"``/``"leave"`` for presence."""
    exclude: str
    """Member id that must not receive it (the sender), or ``""``."""
    payload: bytes
    """The encoded message, or for presence the msgpack of the :class:`MemberInfo`."""


ENVELOPE_ENCODER = msgspec.msgpack.Encoder()
ENVELOPE_DECODER = msgspec.msgpack.Decoder(Envelope)
MEMBER_ENCODER = msgspec.msgpack.Encoder()
MEMBER_DECODER = msgspec.msgpack.Decoder(MemberInfo)

Receiver = Callable[[str, Envelope], None]
"""``receiver(group, envelope)``: how a backend hands the hub what other nodes sent."""


class Backend(Protocol):
    """The cross-process half of a :class:`~.Broadcast`."""

    url: str

    async def start(self, receiver: Receiver) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, group: str) -> None:
        """The first local member joined ``group``: receive what others publish to it."""
        ...

    async def unsubscribe(self, group: str) -> None: ...

    async def publish(self, group: str, envelope: Envelope) -> None:
        """Send to the other nodes; raises :class:`BackendUnavailableError` if it cannot."""
        ...

    async def add_member(self, info: MemberInfo) -> None: ...

    async def remove_member(self, info: MemberInfo) -> bool:
        """Forget a member; ``True`` if it was there (so exactly one node announces
        its leave)."""
        ...

    async def members(self, group: str) -> list[MemberInfo] | None:
        """Everyone in ``group`` on every node, or ``None`` if the backend keeps no
        presence beyond this process."""
        ...


class BackendUnavailableError(ConnectionError):
    """The engine between processes cannot be reached; local delivery still works."""


class MemoryBackend:
    """``memory://``: one process, no service; groups end at the process boundary."""

    url = "memory://"

    async def start(self, receiver: Receiver) -> None:
        return None

    async def close(self) -> None:
        return None

    async def subscribe(self, group: str) -> None:
        return None

    async def unsubscribe(self, group: str) -> None:
        return None

    async def publish(self, group: str, envelope: Envelope) -> None:
        return None

    async def add_member(self, info: MemberInfo) -> None:
        return None

    async def remove_member(self, info: MemberInfo) -> bool:
        return True

    async def members(self, group: str) -> list[MemberInfo] | None:
        return None


def backend_for_url(url: str, **options: Any) -> Backend:
    """``memory://`` or ``redis://host:port/db`` (``rediss://`` for TLS)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        if url.rstrip("/") != "memory:":
            raise ValueError(f"the memory backend takes no address: use memory://, not {url!r}")
        return MemoryBackend()
    if scheme in ("redis", "rediss"):
        from .redis import RedisBackend  # only a Redis URL needs the redis package

        return RedisBackend(url, **options)
    raise ValueError(f"unknown broadcast backend {url!r}: use memory:// or redis://host:port/db")


def now() -> float:
    """Presence expiry times are wall-clock seconds, comparable across machines."""
    return time.time()
