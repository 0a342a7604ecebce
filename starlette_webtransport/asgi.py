"""The ASGI WebTransport contract as types.

This module is the single source of truth for the message schema specified in
``docs/asgi-webtransport.md``. Servers (our hypercorn adapter, the in-process test
client, the Python client) produce and consume exactly these dictionaries, and the
session layer is written against nothing else, so any server that speaks the spec can
host a :class:`~starlette_webtransport.session.WebTransportSession`.

The types are checked, not only written: each implementation's ``send`` and ``receive``
take and return :data:`SendMessage` and :data:`ReceiveEvent` (:data:`ContractSend`,
:data:`ContractReceive`), narrow them with ``match message["type"]`` and end the match
with :func:`unknown_message`, so ``mypy --strict`` fails wherever one forgets a message
type. The rules every server shares are here too, written once: the exit rule
(:func:`exit_message`, spec section 6) and the error of ``send`` after the end
(:class:`SessionGone`, section 4). TypedDicts are plain dicts at run time, and a
``match`` on one key costs what the ``if`` chains before it did: the hot path pays nothing.

Stream ids follow QUIC numbering on every side of the contract: bit 0 tells who opened
the stream (0 client, 1 server) and bit 1 tells the direction (0 bidirectional,
1 unidirectional). Using the transport's own ids keeps the server's hot path free of
translation tables and lets logs be correlated with packet captures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Literal, Never, NotRequired, TypedDict, cast

SPEC_VERSION = "1.1"
"""Version of the schema in ``docs/asgi-webtransport.md``; servers put it in the scope."""

Headers = Iterable[tuple[bytes, bytes]]


class WebTransportExtension(TypedDict):
    """``scope["extensions"]["webtransport"]``: facts about this session's transport."""

    session_id: str
    """Unique across the server's lifetime, unlike the CONNECT stream id."""
    stream_id: int
    """The CONNECT stream's QUIC id (the WebTransport session id on the wire)."""
    draft: str
    """The draft family spoken with this peer: ``"draft02"``, ``"draft07"``,
    ``"draft13"`` or ``"draft15"``."""
    max_datagram_size: int
    """Largest datagram payload, in bytes, the server can send in one QUIC packet."""
    connection: dict[str, Any]
    """Static facts about the QUIC connection (``id``, ``alpn``, ``local``, ``remote``)."""
    role: NotRequired[Literal["server", "client"]]
    consumed: NotRequired[bool]
    """Spec 1.1: the server takes ``webtransport.credit`` and ``webtransport.stream.consumed``,
    so an app may return each stream's receive credit as it reads that stream."""
    http_ports: NotRequired[list[int]]
    """TCP ports where the same server serves pages over plain HTTP (``--http-port``):
    its own page origins, which ``OriginMiddleware`` accepts by default."""
    """Which end this scope describes; absent means ``"server"``. A client (our Python
    client, the test client) builds a client-role scope for its own session object."""


class WebTransportScope(TypedDict):
    type: Literal["webtransport"]
    asgi: dict[str, str]
    http_version: str
    scheme: str
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int] | None
    subprotocols: list[str]
    extensions: dict[str, Any]
    state: NotRequired[dict[str, Any]]


# --- server -> application (returned by ``receive``) -------------------------------


class ConnectEvent(TypedDict):
    type: Literal["webtransport.connect"]


class StreamReceiveEvent(TypedDict):
    """Data on a stream the app can read. The first one for a peer-opened stream id
    announces the stream (``data`` may then be empty)."""

    type: Literal["webtransport.stream.receive"]
    stream: int
    data: bytes
    end_stream: bool


class StreamResetEvent(TypedDict):
    """The peer abandoned its sending side (RESET_STREAM). ``code`` is ``None`` when the
    peer's HTTP/3 error code is outside the WebTransport application range."""

    type: Literal["webtransport.stream.reset"]
    stream: int
    code: int | None


class StreamStopSendingEvent(TypedDict):
    """The peer will not read more (STOP_SENDING); the server has reset our side."""

    type: Literal["webtransport.stream.stop_sending"]
    stream: int
    code: int | None


class StreamOpenedEvent(TypedDict):
    """Reply to ``webtransport.stream.open``; replies come in request order."""

    type: Literal["webtransport.stream.opened"]
    stream: int
    bidirectional: bool


class DatagramReceiveEvent(TypedDict):
    type: Literal["webtransport.datagram.receive"]
    data: bytes


class DrainEvent(TypedDict):
    """The peer asked us to wind the session down (WT_DRAIN_SESSION)."""

    type: Literal["webtransport.drain"]


CloseCause = Literal[
    "peer_closed",
    "peer_reset",
    "connection_closed",
    "timeout",
    "shutdown",
    "closed",
    "error",
    "rejected",
    "protocol_error",
]
"""How a session ended (``cause`` of ``webtransport.disconnect``, docs/asgi-webtransport.md):
the peer closed it (WT_CLOSE_SESSION or FIN), the peer reset its CONNECT stream, the QUIC
connection was closed under it, nothing came from the peer for the idle timeout (a vanished
peer), the server shut down, the app closed it or returned, the app raised, it was never
accepted, or the peer broke the protocol."""


class DisconnectEvent(TypedDict):
    """The session is over; always the last event. ``code``/``reason`` come from the
    peer's WT_CLOSE_SESSION, or are 0/"" for a bare FIN or a lost connection. ``cause``
    (optional: servers may leave it out) says how it ended."""

    type: Literal["webtransport.disconnect"]
    code: int
    reason: str
    cause: NotRequired[CloseCause]


ReceiveEvent = (
    ConnectEvent
    | StreamReceiveEvent
    | StreamResetEvent
    | StreamStopSendingEvent
    | StreamOpenedEvent
    | DatagramReceiveEvent
    | DrainEvent
    | DisconnectEvent
)

# --- application -> server (passed to ``send``) -------------------------------------


class AcceptMessage(TypedDict):
    type: Literal["webtransport.accept"]
    subprotocol: NotRequired[str | None]
    headers: NotRequired[Headers]


class RejectMessage(TypedDict):
    """Only before accept: answer the CONNECT with this HTTP status."""

    type: Literal["webtransport.reject"]
    status: int
    headers: NotRequired[Headers]


class CloseMessage(TypedDict):
    """After accept: WT_CLOSE_SESSION with code and reason, then FIN. Before accept:
    a rejection with status 403, as ``websocket.close`` does."""

    type: Literal["webtransport.close"]
    code: NotRequired[int]
    reason: NotRequired[str]


class DrainMessage(TypedDict):
    type: Literal["webtransport.drain"]


class DatagramSendMessage(TypedDict):
    type: Literal["webtransport.datagram.send"]
    data: bytes


class StreamOpenMessage(TypedDict):
    type: Literal["webtransport.stream.open"]
    bidirectional: bool


class StreamSendMessage(TypedDict):
    type: Literal["webtransport.stream.send"]
    stream: int
    data: bytes
    end_stream: NotRequired[bool]


class StreamResetMessage(TypedDict):
    type: Literal["webtransport.stream.reset"]
    stream: int
    code: NotRequired[int]


class StreamStopSendingMessage(TypedDict):
    type: Literal["webtransport.stream.stop_sending"]
    stream: int
    code: NotRequired[int]


class CreditMessage(TypedDict):
    """Spec 1.1, after accept: from now on, data the app receives keeps its receive credit
    (QUIC and WebTransport) until the app reports it consumed, stream by stream."""

    type: Literal["webtransport.credit"]
    returned_on: Literal["consumed"]


class StreamConsumedMessage(TypedDict):
    """Spec 1.1: the app consumed (read or dropped) ``bytes`` more of ``stream``'s
    received data; the server may return that much credit to the peer. Never an error
    for a stream that ended; counts beyond what was received are ignored."""

    type: Literal["webtransport.stream.consumed"]
    stream: int
    bytes: int


SendMessage = (
    AcceptMessage
    | RejectMessage
    | CloseMessage
    | DrainMessage
    | DatagramSendMessage
    | StreamOpenMessage
    | StreamSendMessage
    | StreamResetMessage
    | StreamStopSendingMessage
    | CreditMessage
    | StreamConsumedMessage
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
"""What an ASGI app is called with, typed as Starlette types them: one app routes HTTP,
WebSocket and WebTransport scopes, so its ``receive``/``send`` cannot name our messages."""

ContractReceive = Callable[[], Awaitable[ReceiveEvent]]
ContractSend = Callable[[SendMessage], Awaitable[None]]
"""The same two callables as this contract types them: what every server implements
(the adapter's and the Python client's ``SessionChannel``, the in-process test client)
and what the session consumes, so ``mypy --strict`` holds each to the schema."""

DEFAULT_REJECT_STATUS = 403
"""The status of a rejection nobody chose (spec sections 4 and 6): ``reject`` without a
``status``, ``close`` before accept, and an app that returns before accepting."""


class SessionGone(OSError):
    """Raised by a server's ``send`` once the session is over (spec section 4): a second
    ``accept``/``reject``, or anything after ``close`` or after the app received
    ``webtransport.disconnect``; an ``OSError``, as a closed WebSocket raises. Every
    server of this package raises this one class."""


def exit_message(*, accepted: bool, failed: bool) -> RejectMessage | CloseMessage:
    """What a server sends in the app's stead when the app returns (``failed``: raises)
    while its session is still open (spec section 6): before accept a rejection, 403 or
    500; after accept a close with code 0, and the reason ``"internal server error"``
    after a failure. An app that raised :class:`SessionEnd` returned (see
    :func:`is_session_end`)."""
    if not accepted:
        return {"type": "webtransport.reject", "status": 500 if failed else DEFAULT_REJECT_STATUS}
    return {
        "type": "webtransport.close",
        "code": 0,
        "reason": "internal server error" if failed else "",
    }


def unknown_message(message: Never) -> str:
    """The last case of every ``match message["type"]`` over the contract's messages.

    ``message`` is typed ``Never``, as in :func:`typing.assert_never`: once the cases
    before it have narrowed the union away nothing is left, and ``mypy --strict``
    rejects the call, naming the missing ``TypedDict``, if an implementation forgot a
    message type. At run time only a peer that breaks the contract gets here; this
    returns the words for what the caller does about it (a server raises ``ValueError``,
    the session records a violation and goes on), where ``assert_never`` would raise
    ``AssertionError`` instead.
    """
    return f"unexpected ASGI message {cast(Mapping[str, object], message).get('type')!r}"


def make_scope(
    *,
    path: str,
    raw_path: bytes,
    query_string: bytes,
    headers: list[tuple[bytes, bytes]],
    client: Any,
    server: Any,
    subprotocols: list[str],
    session_id: str,
    stream_id: int,
    draft: str,
    max_datagram_size: int,
    connection_id: str,
    scheme: str = "https",
    root_path: str = "",
    role: Literal["server", "client"] | None = None,
) -> dict[str, Any]:
    """A ``webtransport`` scope with every key of section 1 of the spec.

    The hypercorn adapter, the Python client and the in-process test client each learn
    these facts their own way; building the dict in one place keeps the three scopes the
    same shape. ``client`` and ``server`` are also the connection's ``remote`` and
    ``local``, as they are on every side.
    """
    extension: dict[str, Any] = {
        "session_id": session_id,
        "stream_id": stream_id,
        "draft": draft,
        "max_datagram_size": max_datagram_size,
        "connection": {"id": connection_id, "alpn": "h3", "local": server, "remote": client},
        "consumed": True,
    }
    if role is not None:
        extension["role"] = role
    return {
        "type": "webtransport",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "http_version": "3",
        "scheme": scheme,
        "method": "CONNECT",
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "subprotocols": subprotocols,
        "extensions": {"webtransport": extension},
    }


class SessionEnd(Exception):
    """Base of the exceptions that mean "the session ended under this call".

    The session layer's :class:`~starlette_webtransport.session.SessionClosedError`
    derives from it. An app that stops because its session ended has nothing to report,
    and the usual shape of a session handler, a ``TaskGroup`` of stream tasks, turns that
    into an ``ExceptionGroup``; the servers (ours and the in-process test client) and the
    Starlette integration use :func:`is_session_end` to treat both as a normal return
    instead of logging a traceback for every disconnect. It lives here, with the
    contract, because the server must recognise it without importing the session layer.
    """


def is_session_end(exc: BaseException) -> bool:
    """True if ``exc`` is a :class:`SessionEnd`, or an exception group (nested or not)
    made only of them: an app that ended this way ended normally (contract, section 6)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_session_end(inner) for inner in exc.exceptions)
    return isinstance(exc, SessionEnd)


def unrouted_webtransport(exc: BaseException) -> str | None:
    """The words for an app that cannot route WebTransport scopes, or ``None``.

    Starlette's ``Router`` meets a ``"webtransport"`` scope with a bare
    ``assert scope["type"] in ("http", "websocket", "lifespan")``; the servers (ours and
    the in-process test client) turn that into a sentence naming the fix.
    """
    if not isinstance(exc, AssertionError) or exc.__traceback__ is None:
        return None
    frame = exc.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    code = frame.tb_frame.f_code
    if not code.co_filename.replace("\\", "/").endswith("starlette/routing.py"):
        return None
    return (
        "the app's Starlette router does not route WebTransport sessions: call "
        "starlette_webtransport.enable_webtransport(app) once the app is built"
    )
