"""hypercorn's HTTP/3 protocol taught to speak WebTransport.

hypercorn turns every CONNECT into a WebSocket, ignores datagrams and WebTransport stream
events, and aioquic's H3 layer swallows peer RESET_STREAM / STOP_SENDING and leaves
capsules unparsed. :class:`WebTransportH3Protocol` keeps hypercorn's handling of ordinary
requests and hands everything that belongs to a WebTransport session to the shared
transport (:mod:`starlette_webtransport.transport`); what is hypercorn's here is building
the scope, running the app through hypercorn's wrapper, and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote

from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.events import QuicEvent
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.typing import AppWrapper, ConnectionState, TaskGroup, WorkerContext
from hypercorn.utils import filter_pseudo_headers

from ..asgi import (
    CloseCause,
    exit_message,
    is_session_end,
    make_scope,
    unrouted_webtransport,
)
from ..protocol.errors import H3_REQUEST_REJECTED
from ..protocol.settings import Draft, negotiate_draft, parse_available_protocols
from ..transport import (
    MAX_SESSIONS,
    WT_CREDIT,
    SessionChannel,
    SessionRouter,
    WebTransportH3Connection,
    WebTransportQuicConnection,
)
from ..transport.limits import Limits
from .options import server_state

log = logging.getLogger("starlette_webtransport.server")

WEBTRANSPORT_PROTOCOLS = frozenset({b"webtransport", b"webtransport-h3"})

_session_ids = itertools.count(1)


class WebTransportSessionHandler(SessionChannel):
    """One WebTransport session on hypercorn: the shared channel, run as an ASGI app call."""

    # Ours in slots: added to the channel's __dict__ they would double its table.
    __slots__ = ("accept_timer", "adapter", "rejected_status", "scope", "task", "timed_out")

    def __init__(
        self, adapter: WebTransportH3Protocol, stream_id: int, scope: dict[str, Any], draft: Draft
    ) -> None:
        self.rejected_status: int | None = None
        """The status the session was refused with, if it was never accepted."""
        super().__init__(
            adapter.router, stream_id, draft, role="server", subprotocols=scope["subprotocols"]
        )
        self.adapter = adapter
        self.scope = scope
        self.task: asyncio.Task[Any] | None = None
        self.timed_out = False
        self.accept_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            adapter.limits.accept_timeout, self._accept_timed_out
        )
        self._push({"type": "webtransport.connect"})

    def server_headers(self) -> list[tuple[bytes, bytes]]:
        return self.adapter.config.response_headers("h3")

    @property
    def scope_session_id(self) -> str:
        return str(self.scope["extensions"]["webtransport"]["session_id"])

    def _reject(self, status: int, headers: Iterable[Any]) -> None:
        if not (self.accepted or self.finished or 200 <= status < 300):
            self.rejected_status = status
        super()._reject(status, headers)

    def established(self) -> None:
        super().established()
        self._stop_accept_timer()
        self.router.session_opened(self)

    def _stop_accept_timer(self) -> None:
        if self.accept_timer is not None:
            self.accept_timer.cancel()
            self.accept_timer = None

    def _accept_timed_out(self) -> None:
        """No accept or reject in time: answer 503 and cancel the app, which may be stuck
        anywhere (even after its client left, the app may never read again)."""
        self.accept_timer = None
        if self.accepted:
            return
        log.warning(
            "session %s: no accept or reject within %.1f s: 503, app cancelled",
            self.scope_session_id,
            self.adapter.limits.accept_timeout,
        )
        if not self.finished and not self.router.closed:
            self._reject(503, ())
        if self.task is not None and not self.task.done():
            self.timed_out = True
            self.task.cancel()

    def terminate(self, code: int, reason: str, *, cause: CloseCause, reset: bool = True) -> None:
        super().terminate(code, reason, cause=cause, reset=reset)
        self.router.session_ended(self.stream_id)
        self.adapter.session_ended(self)
        if self.rejected_status is not None:
            # What refused it (a dependency, the origin check, no route) is logged by
            # whoever did, at the moment it did (starlette_webtransport.starlette).
            log.info(
                "session %s rejected: %s status=%d",
                self.scope_session_id,
                self.scope["path"],
                self.rejected_status,
            )
            return
        log.debug(
            "session %s closed: %s code=%d reason=%r cause=%s",
            self.scope_session_id,
            self.scope["path"],
            code,
            reason,
            cause,
        )

    def drain_for_shutdown(self) -> None:
        """Server shutdown: ask the peer and the app to wind the session down."""
        if self.accepted and not self.finished:
            self._drain()
            self._push({"type": "webtransport.drain"})

    def close_for_shutdown(self) -> None:
        """Server shutdown after the grace period: close what the app left open."""
        if self.finished or self.router.closed:
            return
        if self.accepted:
            self._close(0, "server shutting down", "shutdown")
        else:
            self._reject(503, ())

    def _call_app(self, app: AppWrapper) -> Awaitable[None]:
        """The app's call. hypercorn's wrapper of an ASGI app only forwards it, so the app
        is called directly: the wrapper's frame would stay on every session's stack."""
        scope, receive, send = self.scope, self.receive, self.send
        if type(app) is ASGIWrapper:
            return app.app(scope, receive, send)  # type: ignore[arg-type]
        adapter = self.adapter
        return app(scope, receive, send, adapter.sync_spawn, adapter.call_soon)  # type: ignore[arg-type]

    async def run_app(self) -> None:
        """Run the ASGI app for this session and tidy up whatever it left open.

        Nothing may escape: hypercorn runs this in the task group of the UDP server, which
        one exception would tear down."""
        adapter = self.adapter
        failed = False
        self.task = asyncio.current_task()
        try:
            await self._call_app(adapter.app)
        except asyncio.CancelledError:
            if not self.timed_out:
                raise
            if self.task is not None:
                self.task.uncancel()
        except Exception as exc:
            if is_session_end(exc):
                pass  # the app stopped because its session ended: a return, not a failure
            elif hint := unrouted_webtransport(exc):
                failed = True
                log.error("session %s to %s: %s", self.scope_session_id, self.scope["path"], hint)
            else:
                failed = True
                log.exception(
                    "error in WebTransport application (session %s)", self.scope_session_id
                )
        finally:
            self._stop_accept_timer()
            self.task = None
            try:
                if not self.finished and not self.router.closed:
                    message = exit_message(accepted=self.accepted, failed=failed)
                    if message["type"] == "webtransport.reject":
                        self._reject(message["status"], ())
                    else:
                        reason = message.get("reason", "")
                        self._close(message.get("code", 0), reason, "error" if failed else "closed")
                self.release_queued()
            except Exception:  # never let one session's cleanup stop the server
                log.exception("closing session %s failed", self.scope_session_id)


class WebTransportH3Protocol(H3Protocol):
    """hypercorn's H3 protocol with WebTransport sessions beside ordinary requests."""

    # Every attribute in a slot: one per connection, and no instance dict to grow.
    __slots__ = (
        "app",
        "client",
        "config",
        "connection",
        "context",
        "http_ports",
        "limits",
        "loop",
        "pending_connects",
        "quic",
        "router",
        "send",
        "server",
        "server_state",
        "state",
        "streams",
        "task_group",
    )

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        state: ConnectionState,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        quic: WebTransportQuicConnection,
        send: Callable[[], Awaitable[None]],
    ) -> None:
        # hypercorn's __init__ would build a second H3Connection (and a second set of
        # control streams), so the attributes are set here instead of calling it.
        self.app = app
        self.client = client
        self.config = config
        self.context = context
        self.quic = quic
        self.connection = WebTransportH3Connection(quic, WT_CREDIT, max_sessions=MAX_SESSIONS)
        self.send = send
        self.server = server
        self.streams = {}
        self.task_group = task_group
        self.state = state
        self.server_state = server_state(config)
        # Pages this server serves over plain HTTP (--http-port) are its own origins too:
        # OriginMiddleware's default accepts them (docs/asgi-webtransport.md).
        self.http_ports = sorted({int(bind.rsplit(":", 1)[1]) for bind in config.insecure_bind})
        self.limits = Limits() if self.server_state is None else self.server_state.limits
        self.router = SessionRouter(quic, self.connection, send, self.limits)
        self.pending_connects: list[HeadersReceived] = []
        self.loop = asyncio.get_running_loop()

    # hypercorn's sync_spawn and call_soon for the app: methods, not lambdas per connection.
    def sync_spawn(self, func: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return self.loop.run_in_executor(None, func, *args)

    def call_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """From the app's worker threads: run ``func(*args)`` on the loop, wait for it."""
        return asyncio.run_coroutine_threadsafe(func(*args), self.loop).result()  # type: ignore[arg-type]

    def session_ended(self, session: WebTransportSessionHandler) -> None:
        if self.server_state is not None:
            self.server_state.sessions.discard(session)
            if not self.server_state.sessions:
                self.server_state.idle.set()

    async def handle(self, quic_event: QuicEvent) -> None:
        http, _ = self.handle_nowait(quic_event)
        await self.handle_http(http)

    def handle_nowait(self, quic_event: QuicEvent) -> tuple[list[H3Event], bool]:
        """Everything of ``quic_event`` that belongs to WebTransport, handled right away
        (it never has to wait), so that a packet is handled in the read callback. Returns
        the ordinary HTTP/3 events that hypercorn must handle (:meth:`handle_http`), and
        whether a session got something, which may wake its app."""
        router = self.router
        http: list[H3Event] = []
        routed = False
        for event in self.connection.handle_event(quic_event):
            if router.h3_event(event):
                routed = True
            elif isinstance(event, HeadersReceived):
                if event.stream_id in router.sessions:
                    continue  # trailers on a CONNECT stream carry nothing for us
                if self._is_webtransport(event):
                    self.pending_connects.append(event)
                    router.awaiting[event.stream_id] = None
                else:
                    http.append(event)
            elif isinstance(event, DataReceived):
                http.append(event)
        router.quic_event(quic_event)
        if self.pending_connects and self.connection.received_settings is not None:
            pending, self.pending_connects = self.pending_connects, []
            for headers_event in pending:
                self._start_session(headers_event)
            routed = True
        return http, routed

    async def handle_http(self, events: list[H3Event]) -> None:
        """hypercorn's handling of ordinary HTTP/3 requests, in order."""
        for event in events:
            if isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    await stream.handle(Body(stream_id=event.stream_id, data=event.data))
                    if event.stream_ended:
                        await stream.handle(EndBody(stream_id=event.stream_id))
            elif isinstance(event, HeadersReceived) and not self.context.terminated.is_set():
                await self._create_stream(event)
                if event.stream_ended:
                    await self.streams[event.stream_id].handle(EndBody(stream_id=event.stream_id))

    @staticmethod
    def _is_webtransport(event: HeadersReceived) -> bool:
        method = protocol = None
        for name, value in event.headers:
            if name == b":method":
                method = value
            elif name == b":protocol":
                protocol = value
        return method == b"CONNECT" and protocol in WEBTRANSPORT_PROTOCOLS

    def _refuse_session(self, stream_id: int) -> None:
        """A CONNECT over WT_MAX_SESSIONS. The draft asks for a reset with
        H3_REQUEST_REJECTED rather than closing the connection: the client may not yet
        know that an earlier session of its own has ended."""
        log.warning(
            "connection %s: CONNECT on stream %d refused, %d sessions are open (WT_MAX_SESSIONS)",
            self.quic.original_destination_connection_id.hex(),
            stream_id,
            len(self.router.sessions),
        )
        self.quic.reset_stream(stream_id, H3_REQUEST_REJECTED)
        with contextlib.suppress(ValueError):  # the client already finished the stream
            self.quic.stop_stream(stream_id, H3_REQUEST_REJECTED)
        self.send()

    def _start_session(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        self.router.connect_answered(stream_id)
        settings = self.connection.received_settings or {}
        draft = negotiate_draft(settings)
        draining = self.server_state is not None and self.server_state.draining
        if draft is None or draining or self.context.terminated.is_set():
            status = b"400" if draft is None else b"503"
            log.info("CONNECT refused with %s: %s", status.decode(), _refusal(draft))
            self.connection.send_headers(
                stream_id,
                [(b":status", status), *self.config.response_headers("h3")],
                end_stream=True,
            )
            self.router.session_ended(stream_id)
            self.send()
            return
        if len(self.router.sessions) >= self.router.h3.max_sessions:
            self._refuse_session(stream_id)
            self.router.session_ended(stream_id)
            return
        raw_path = b"/"
        scheme = "https"
        for name, value in event.headers:
            if name == b":path":
                raw_path = value
            elif name == b":scheme":
                scheme = value.decode("ascii")
        headers = filter_pseudo_headers(event.headers)
        path, _, query_string = raw_path.partition(b"?")
        offered: list[str] = []
        for name, value in headers:
            if name == b"wt-available-protocols":
                offered = parse_available_protocols(value)
        session_id = f"{next(_session_ids)}"
        scope = make_scope(
            path=unquote(path.decode("ascii")),
            raw_path=path,
            query_string=query_string,
            headers=headers,
            client=self.client,
            server=self.server,
            subprotocols=offered,
            session_id=session_id,
            stream_id=stream_id,
            draft=str(draft),
            max_datagram_size=0,
            connection_id=self.quic.original_destination_connection_id.hex(),
            scheme=scheme,
            root_path=self.config.root_path,
        )
        scope["state"] = self.state.copy()
        scope["extensions"]["webtransport"]["http_ports"] = self.http_ports
        session = WebTransportSessionHandler(self, stream_id, scope, draft)
        scope["extensions"]["webtransport"]["max_datagram_size"] = session.max_datagram_size
        if self.server_state is not None:
            self.server_state.sessions.add(session)
        log.debug("session %s opened: %s (%s)", session_id, scope["path"], draft)
        self.task_group.spawn(session.run_app)
        if event.stream_ended:  # a FIN right away: the client closed it already
            session.connection_lost("peer_closed")


def _refusal(draft: Draft | None) -> str:
    return "the client enabled no WebTransport draft we speak" if draft is None else "draining"
