"""The session as a view of its ASGI scope, Starlette-style.

Everything here is read from the scope the server built (``docs/asgi-webtransport.md``
section 1) and never changes during the session: URL, headers, query, client, the
offered protocols, the connection's facts. :class:`ScopeView` is the base of
:class:`~.session.WebTransportSession`, which adds the session's life.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from starlette.datastructures import URL, Address, Headers, QueryParams, State

from ..asgi import ContractReceive, ContractSend, Receive, Scope, Send
from ..protocol.settings import parse_available_protocols


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Static facts about the QUIC connection the session rides on
    (``scope["extensions"]["webtransport"]["connection"]``). Several sessions may share
    one connection, and the server owns it, so this is information, not a handle."""

    id: str
    alpn: str | None
    local: tuple[str, int] | None
    remote: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class ASGIChannel:
    """What carries a session in this design, returned by ``protocol_handler``: the
    ASGI scope and the ``receive``/``send`` callables of the contract. Messages sent
    through it bypass the session's bookkeeping; it is there for introspection and
    for code that needs to know which server hosts the session."""

    scope: Scope
    receive: ContractReceive
    send: ContractSend
    spec_version: str | None
    draft: str | None


class ScopeView:
    """A ``webtransport`` scope's facts, checked once at construction."""

    def __init__(
        self, scope: Scope, receive: Receive | ContractReceive, send: Send | ContractSend
    ) -> None:
        if scope.get("type") != "webtransport":
            raise ValueError(f'expected a "webtransport" scope, got {scope.get("type")!r}')
        extension = scope.get("extensions", {}).get("webtransport")
        if not isinstance(extension, Mapping):
            raise ValueError(
                'the scope has no extensions["webtransport"]; see asgi-webtransport.md'
            )
        role = extension.get("role", "server")
        if role not in ("server", "client"):
            raise ValueError(
                f'extensions["webtransport"]["role"] must be "server" or "client", got {role!r}'
            )
        self._scope = scope
        # An app hands over the callables its server gave it, typed as Starlette types
        # them (any mapping); the server behind them speaks the contract, so from here on
        # mypy holds every message the session sends and reads to its TypedDicts. A cast
        # costs nothing at run time.
        self._receive = cast(ContractReceive, receive)
        self._send = cast(ContractSend, send)
        self._extension = extension
        self._role: str = role
        self._request_state: State | None = None

    @property
    def connection(self) -> ConnectionInfo | None:
        """The QUIC connection the session rides on, or ``None`` if the server gave none."""
        info = self._extension.get("connection")
        if not isinstance(info, Mapping):
            return None
        return ConnectionInfo(
            id=str(info.get("id", "")),
            alpn=info.get("alpn"),
            local=_address(info.get("local")),
            remote=_address(info.get("remote")),
        )

    @property
    def headers(self) -> Headers:
        """Server role: the CONNECT request's headers. Client role: the response's."""
        return Headers(scope=self._scope)

    @property
    def path(self) -> str:
        return str(self._scope["path"])

    @property
    def protocol_handler(self) -> ASGIChannel:
        return ASGIChannel(
            scope=self._scope,
            receive=self._receive,
            send=self._send,
            spec_version=self._scope.get("asgi", {}).get("spec_version"),
            draft=self._extension.get("draft"),
        )

    @property
    def scope(self) -> Scope:
        return self._scope

    @property
    def role(self) -> str:
        """``"server"`` or ``"client"``: who we are on the QUIC connection."""
        return self._role

    @property
    def url(self) -> URL:
        return URL(scope=self._scope)

    @property
    def path_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self._scope.get("path_params", {})
        return params

    @property
    def query_params(self) -> QueryParams:
        return QueryParams(self._scope["query_string"])

    @property
    def client(self) -> Address | None:
        """The peer's address (``scope["client"]``)."""
        client = self._scope.get("client")
        return None if client is None else Address(client[0], client[1])

    @property
    def request_state(self) -> State:
        """Starlette's ``request.state`` for this session (``scope["state"]``, filled by the
        server from the lifespan state); named so because ``state`` is the SessionState."""
        if self._request_state is None:
            self._request_state = State(self._scope.setdefault("state", {}))
        return self._request_state

    @property
    def subprotocols(self) -> list[str]:
        """The protocols the client offered (WT-Available-Protocols), in order."""
        return list(self._scope.get("subprotocols", []))


def _address(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    host, port = value
    return str(host), int(port)


def _negotiated_protocol(scope: Scope) -> str | None:
    """Client role: the WT-Protocol response header, a Structured Field String."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"wt-protocol":
            protocols = parse_available_protocols(value)
            return protocols[0] if len(protocols) == 1 else None
    return None
