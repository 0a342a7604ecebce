"""Named groups of sessions and fan-out to them: :class:`Broadcast`.

A publish is encoded once, delivered to this process's members at once (an append to
each member's queue, never a wait on one), and handed to the backend for the other
processes, which deliver it to theirs. Presence lives in the backend, so every node
sees every member; a node refreshes its members' entries, so a node that dies takes its
members with it within the presence TTL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from ..session import WebTransportSession
from ..structured import DATAGRAM_HEADER, HEADER, Schema
from .backends import (
    MEMBER_DECODER,
    MEMBER_ENCODER,
    Backend,
    BackendUnavailableError,
    Envelope,
    backend_for_url,
)
from .delivery import DEFAULT_POLICIES, Delivery, DeliveryPolicy
from .member import Member
from .presence import MemberInfo, PresenceEvent, PresenceKind, PresenceWatch

log = logging.getLogger("starlette_webtransport.broadcast")

ENVIRONMENT_VARIABLE = "STARLETTE_WEBTRANSPORT_BROADCAST"
"""The backend URL :func:`default_broadcast` uses when :func:`configure` was not called
(an app served by plain hypercorn, say)."""
DEFAULT_PRESENCE_TTL = 15.0


class Broadcast:
    """Groups of sessions on one backend URL (``memory://`` or ``redis://host:port/db``).

    ``policies`` overrides the per delivery kind :class:`DeliveryPolicy`;
    ``presence_ttl`` bounds how long a member of a dead process stays listed. The URL
    may carry it too (``redis://host:6379/0?presence_ttl=5``), so a deployment sets it
    where it sets the URL (``--broadcast``).
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        policies: Mapping[Delivery, DeliveryPolicy] | None = None,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
    ) -> None:
        url, presence_ttl = _ttl_from_url(url, presence_ttl)
        if presence_ttl <= 0:
            raise ValueError(f"presence_ttl must be positive, got {presence_ttl}")
        self.url = url
        self.node_id = uuid.uuid4().hex[:12]
        self.presence_ttl = presence_ttl
        self._backend: Backend = backend_for_url(url, node_id=self.node_id, ttl=presence_ttl)
        self._policies = {**DEFAULT_POLICIES, **(policies or {})}
        self._groups: dict[str, dict[str, Member]] = {}
        self._members: dict[WebTransportSession, Member] = {}
        self._watches: dict[str, set[PresenceWatch]] = {}
        self._started: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<Broadcast {self.url} node={self.node_id} groups={len(self._groups)}>"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect the backend; ``join`` and ``publish`` call it, so this is optional."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._backend.start(self._receive))
        await asyncio.shield(self._started)

    async def close(self) -> None:
        """Stop every member's writers and disconnect; the hub can be started again."""
        for member in list(self._members.values()):
            member.stop()
        tasks = [member.task for member in self._members.values()]
        if tasks:
            await asyncio.wait(tasks)
        for task in self._background:
            task.cancel()
        await self._backend.close()
        self._started = None

    # --- membership ----------------------------------------------------------------------

    def member_id(self, session: WebTransportSession) -> str:
        return f"{self.node_id}:{session.session_id}"

    def groups_of(self, session: WebTransportSession) -> list[str]:
        member = self._members.get(session)
        return sorted(member.groups) if member is not None else []

    def local_members(self, group: str) -> list[Member]:
        return list(self._groups.get(group, {}).values())

    async def join(
        self, group: str, session: WebTransportSession, *, data: Mapping[str, Any] | None = None
    ) -> Member:
        """Add an accepted session to ``group``; it leaves by itself when it ends."""
        if not session.is_ready:
            raise RuntimeError(f"session {session.session_id} is not connected; accept() it first")
        await self.start()
        member = self._members.get(session)
        if member is None or not member.active:
            member = Member(session, self.member_id(session), self._policies, self._ended)
            self._members[session] = member
        if group in member.groups:
            return member
        member.groups[group] = dict(data or {})
        local = self._groups.setdefault(group, {})
        local[member.member_id] = member
        if len(local) == 1:
            await self._backend.subscribe(group)
        info = self._info(member, group)
        await self._guard(self._backend.add_member(info), "record a join")
        await self._announce(group, PresenceKind.JOIN, info)
        return member

    async def leave(self, group: str, session: WebTransportSession) -> None:
        member = self._members.get(session)
        if member is None or group not in member.groups:
            return
        info = self._info(member, group)
        del member.groups[group]
        await self._forget(group, member, info)
        if not member.groups:
            member.stop()

    def _ended(self, member: Member) -> None:
        """A member's session ended (or it left its last group): leave everything."""
        if self._members.get(member.session) is member:
            del self._members[member.session]
        for group in list(member.groups):
            info = self._info(member, group)
            del member.groups[group]
            self._spawn(self._forget(group, member, info))

    async def _forget(self, group: str, member: Member, info: MemberInfo) -> None:
        local = self._groups.get(group, {})
        if local.get(member.member_id) is member:
            del local[member.member_id]
        if not local:
            self._groups.pop(group, None)
            await self._guard(self._backend.unsubscribe(group), "unsubscribe")
        removed = await self._guard(self._backend.remove_member(info), "record a leave")
        if removed is not False:
            await self._announce(group, PresenceKind.LEAVE, info)

    def _info(self, member: Member, group: str) -> MemberInfo:
        return MemberInfo(member.member_id, group, self.node_id, member.groups.get(group, {}))

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self,
        group: str,
        message: bytes | msgspec.Struct,
        *,
        delivery: Delivery = Delivery.DATAGRAM,
        schema: Schema[Any] | None = None,
        exclude: WebTransportSession | str | None = None,
    ) -> int:
        """Send ``message`` to every member of ``group`` on every node, except ``exclude``
        (a session or member id: usually the sender). Returns the number of local members
        it was queued for; it waits on no member, only on handing it to the backend.

        A Struct needs the ``schema`` that frames it; it is encoded once, here, in the
        structured wire format of the delivery kind.
        """
        data = _encode(message, delivery, schema)
        excluded = (
            self.member_id(exclude) if isinstance(exclude, WebTransportSession) else exclude or ""
        )
        await self.start()
        queued = self._deliver(group, delivery, data, excluded)
        envelope = Envelope(self.node_id, delivery.value, excluded, data)
        await self._guard(self._backend.publish(group, envelope), "publish")
        return queued

    def _deliver(self, group: str, delivery: Delivery, data: bytes, excluded: str) -> int:
        queued = 0
        for member_id, member in self._groups.get(group, {}).items():
            if member_id != excluded:
                member.offer(delivery, data)
                queued += 1
        return queued

    def _receive(self, group: str, envelope: Envelope) -> None:
        """What another node published (called by the backend)."""
        if envelope.origin == self.node_id:
            return
        if envelope.kind in ("join", "leave"):
            info = MEMBER_DECODER.decode(envelope.payload)
            self._notify(group, PresenceEvent(PresenceKind(envelope.kind), info))
            return
        try:
            delivery = Delivery(envelope.kind)
        except ValueError:
            log.warning("ignoring a broadcast of unknown kind %r on %r", envelope.kind, group)
            return
        self._deliver(group, delivery, envelope.payload, envelope.exclude)

    # --- presence ------------------------------------------------------------------------

    async def members(self, group: str) -> list[MemberInfo]:
        """Everyone in ``group`` on every node (this node's only, with ``memory://``)."""
        await self.start()
        everyone = await self._backend.members(group)
        if everyone is None:
            everyone = [self._info(member, group) for member in self.local_members(group)]
        return sorted(everyone, key=lambda info: info.member_id)

    def watch(self, group: str) -> PresenceWatch:
        """Join and leave events of ``group`` from every node, from now on."""
        watch = PresenceWatch(group, self._unwatch)
        self._watches.setdefault(group, set()).add(watch)
        return watch

    def _unwatch(self, watch: PresenceWatch) -> None:
        watches = self._watches.get(watch.group, set())
        watches.discard(watch)
        if not watches:
            self._watches.pop(watch.group, None)

    def _notify(self, group: str, event: PresenceEvent) -> None:
        for watch in self._watches.get(group, ()):
            watch._deliver(event)

    async def _announce(self, group: str, kind: PresenceKind, info: MemberInfo) -> None:
        self._notify(group, PresenceEvent(kind, info))
        envelope = Envelope(self.node_id, kind.value, "", MEMBER_ENCODER.encode(info))
        await self._guard(self._backend.publish(group, envelope), "announce presence")

    # --- plumbing ------------------------------------------------------------------------

    async def _guard(self, call: Any, what: str) -> Any:
        """Run a backend call; an unreachable backend is logged (by the backend, once
        per outage) and costs only the other nodes' share of this call."""
        try:
            return await call
        except BackendUnavailableError as exc:
            log.debug("broadcast could not %s: %s", what, exc)
            return None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _ttl_from_url(url: str, default: float) -> tuple[str, float]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ttls = [value for name, value in query if name == "presence_ttl"]
    if not ttls:
        return url, default
    try:
        ttl = float(ttls[-1])
    except ValueError:
        raise ValueError(f"presence_ttl={ttls[-1]!r} in {url!r} is not a number") from None
    rest = urlencode([(name, value) for name, value in query if name != "presence_ttl"])
    if not parts.netloc:  # memory://?presence_ttl=...
        return f"{parts.scheme}://", ttl
    return urlunsplit(parts._replace(query=rest)), ttl


def _encode(
    message: bytes | msgspec.Struct, delivery: Delivery, schema: Schema[Any] | None
) -> bytes:
    if isinstance(message, bytes | bytearray | memoryview):
        if schema is not None:
            raise TypeError("schema= frames Structs; bytes are sent as they are")
        return bytes(message)
    if schema is None:
        raise TypeError(f"publishing a {type(message).__name__} needs schema= to frame it")
    type_id, payload = schema.encode(message)
    if delivery is Delivery.DATAGRAM:
        return DATAGRAM_HEADER.pack(type_id) + payload
    return HEADER.pack(type_id, len(payload)) + payload


_default: Broadcast | None = None


def configure(url: str, **options: Any) -> Broadcast:
    """Make the process's default hub use ``url`` (``serve(broadcast=...)`` calls this)."""
    global _default
    if _default is not None and _default._members:
        raise RuntimeError("the default broadcast already has members; configure it first")
    _default = Broadcast(url, **options)
    return _default


def default_broadcast() -> Broadcast:
    """The process's hub: as configured, else ``$STARLETTE_WEBTRANSPORT_BROADCAST``, else
    ``memory://``. Apps that serve rooms use this so the server's option reaches them."""
    global _default
    if _default is None:
        _default = Broadcast(os.environ.get(ENVIRONMENT_VARIABLE) or "memory://")
    return _default
