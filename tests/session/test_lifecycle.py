"""Session lifecycle: accept, reject, close, drain, properties, both roles."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _session_helpers import RawServer, make_scope, settle
from starlette.datastructures import Address

from starlette_webtransport.session import (
    ASGIChannel,
    ConnectionInfo,
    SessionClosedError,
    SessionConfig,
    SessionRejectedError,
    SessionState,
    WebTransportSession,
    WebTransportTimeoutError,
)
from starlette_webtransport.testing import WebTransportTestClient


async def test_accept_exposes_request_properties() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["path_params"] = {"room": "lobby"}
        session = WebTransportSession(scope, receive, send)
        seen["before"] = session.state
        await session.accept(protocol="chat.v2", headers=[(b"x-answer", b"42")])
        seen.update(
            state=session.state,
            path=session.path,
            url=str(session.url),
            query=session.query_params["q"],
            params=session.path_params,
            client=session.client,
            user_agent=session.headers["user-agent"],
            origin=session.headers["origin"],
            offered=session.subprotocols,
            protocol=session.protocol,
            role=session.role,
            session_id=session.session_id,
            connection=session.connection,
            handler=session.protocol_handler,
        )
        session.request_state.user = "ann"
        seen["state_dict"] = scope["state"]
        await session.wait_closed()

    client = WebTransportTestClient(app)
    async with client.connect(
        "/rooms/lobby?q=hello%20there",
        headers={"User-Agent": "pytest"},
        subprotocols=["chat.v1", "chat.v2"],
        origin="https://example.test",
    ) as session:
        assert session.protocol == "chat.v2"
        assert session.headers["x-answer"] == "42"
        assert session.role == "client"
        assert session.state is SessionState.CONNECTED and session.is_ready
        assert session.client == Address("testserver", 443)
        assert session.connection is not None
        assert session.connection.remote == ("testserver", 443)
    assert seen["before"] is SessionState.CONNECTING
    assert seen["state"] is SessionState.CONNECTED
    assert seen["path"] == "/rooms/lobby"
    assert seen["url"] == "https://testserver/rooms/lobby?q=hello%20there"
    assert seen["query"] == "hello there"
    assert seen["params"] == {"room": "lobby"}
    assert seen["client"] == Address("testclient", 50000)
    assert seen["user_agent"] == "pytest"
    assert seen["origin"] == "https://example.test"
    assert seen["offered"] == ["chat.v1", "chat.v2"]
    assert seen["protocol"] == "chat.v2"
    assert seen["role"] == "server"
    assert seen["session_id"] == session.session_id
    connection = seen["connection"]
    assert isinstance(connection, ConnectionInfo)
    assert (connection.alpn, connection.local, connection.remote) == (
        "h3",
        ("testserver", 443),
        ("testclient", 50000),
    )
    handler = seen["handler"]
    assert isinstance(handler, ASGIChannel)
    assert (handler.spec_version, handler.draft) == ("1.1", "draft15")
    assert seen["state_dict"] == {"user": "ann"}


async def test_accept_rejects_a_protocol_that_was_not_offered() -> None:
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        try:
            await session.accept(protocol="nope")
        except ValueError as exc:
            errors.append(exc)
            await session.reject(400)

    with pytest.raises(SessionRejectedError) as info:
        async with WebTransportTestClient(app).connect("/", subprotocols=["chat"]):
            pass
    assert info.value.status == 400
    assert "nope" in str(errors[0]) and "chat" in str(errors[0])


@pytest.mark.parametrize("status", [401, 404, 429, 503])
async def test_reject_reports_status_and_headers(status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.reject(status, headers=[(b"retry-after", b"3")])
        assert session.is_closed

    with pytest.raises(SessionRejectedError) as info:
        async with WebTransportTestClient(app).connect("/"):
            pass
    assert info.value.status == status
    assert info.value.headers == [(b"retry-after", b"3")]


async def test_reject_needs_a_non_2xx_status() -> None:
    session = WebTransportSession(make_scope(), RawServer().receive, RawServer().send)
    with pytest.raises(ValueError, match="non-2xx"):
        await session.reject(204)
    assert session.state is SessionState.CONNECTING


async def test_close_before_accept_and_return_before_accept_are_403() -> None:
    async def closes(scope: Any, receive: Any, send: Any) -> None:
        await WebTransportSession(scope, receive, send).close()

    async def returns(scope: Any, receive: Any, send: Any) -> None:
        return None

    for app in (closes, returns):
        with pytest.raises(SessionRejectedError) as info:
            async with WebTransportTestClient(app).connect("/"):
                pass
        assert info.value.status == 403


async def test_app_exception_before_accept_is_reraised() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        async with WebTransportTestClient(app).connect("/"):
            pass


async def test_app_exception_after_accept_closes_and_is_reraised_on_exit() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        raise LookupError("late boom")

    with pytest.raises(LookupError, match="late boom"):
        async with WebTransportTestClient(app).connect("/") as session:
            await session.wait_closed()
            assert session.close_code == 0
            assert session.close_reason == "internal server error"


async def test_server_close_code_and_reason_reach_the_client() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await session.close(code=4001, reason="bye ✓")
        assert (session.state, session.close_code, session.close_reason) == (
            SessionState.CLOSED,
            4001,
            "bye ✓",
        )

    async with WebTransportTestClient(app).connect("/") as session:
        events: list[Any] = []
        session.on("session.closed", events.append)
        await asyncio.wait_for(session.wait_closed(), 2)
        assert session.is_closed and not session.is_ready
        assert (session.close_code, session.close_reason) == (4001, "bye ✓")
    assert events and events[0].data == {"code": 4001, "reason": "bye ✓", "by": "peer"}


async def test_client_close_code_reaches_the_app() -> None:
    result: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = WebTransportSession(scope, receive, send)
        await session.accept()
        await session.wait_closed()
        result.update(code=session.close_code, reason=session.close_reason)

    async with WebTransportTestClient(app).connect("/") as session:
        await session.close(code=7, reason="done", close_connection=False)
        await session.close(code=8)  # a second close is a no-op
        assert session.close_code == 7
    assert result == {"code": 7, "reason": "done"}


async def test_close_validates_code_and_reason() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    server.push({"type": "webtransport.connect"})
    await session.accept()
    with pytest.raises(ValueError, match=r"0\.\.4294967295"):
        await session.close(code=2**32)
    with pytest.raises(ValueError, match="1024"):
        await session.close(reason="x" * 1025)
    with pytest.raises(TypeError):
        await session.close(reason=b"bytes")  # type: ignore[arg-type]
    assert session.is_ready
    await session.close(reason="é" * 512)  # 1024 bytes of UTF-8 is the limit
    assert server.sent[-1] == {"type": "webtransport.close", "code": 0, "reason": "é" * 512}


async def test_close_when_the_server_already_ended_the_session() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    server.push({"type": "webtransport.connect"})
    await session.accept()
    server.send_error = ConnectionResetError("gone")
    await session.close(code=3)
    assert session.is_closed and session.close_code == 3


async def test_state_checks() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    with pytest.raises(RuntimeError, match="accept"):
        await session.initialize()
    with pytest.raises(RuntimeError, match="accept"):
        await session.create_bidirectional_stream()
    with pytest.raises(RuntimeError, match="accept"):
        await session.datagrams.send(b"x")
    server.push({"type": "webtransport.connect"})
    await session.accept()
    await session.initialize()  # no-op once accepted
    with pytest.raises(RuntimeError, match="accept"):
        await session.accept()
    with pytest.raises(RuntimeError, match="reject"):
        await session.reject()
    await session.close()
    with pytest.raises(SessionClosedError):
        await session.create_unidirectional_stream()
    with pytest.raises(SessionClosedError):
        await session.initialize()
    with pytest.raises(SessionClosedError):
        await session.ready()


async def test_accept_expects_connect_first() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    server.push({"type": "webtransport.datagram.receive", "data": b""})
    with pytest.raises(RuntimeError, match=r'"webtransport\.connect"'):
        await session.accept()


async def test_accept_when_the_client_already_left() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    server.push({"type": "webtransport.disconnect", "code": 0, "reason": ""})
    with pytest.raises(SessionClosedError):
        await session.accept()
    assert session.is_closed and server.sent == []


async def test_ready_waits_for_accept_and_times_out() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    with pytest.raises(WebTransportTimeoutError, match="not ready"):
        await session.ready(timeout=0.01)
    waiter = asyncio.create_task(session.ready(timeout=2))
    await settle()
    assert not waiter.done()
    server.push({"type": "webtransport.connect"})
    await session.accept()
    await asyncio.wait_for(waiter, 1)
    assert session.is_ready
    await session.close()


async def test_peer_drain_moves_to_draining_and_everything_still_works() -> None:
    server = RawServer()
    session = WebTransportSession(make_scope(), server.receive, server.send)
    events: list[str] = []
    session.on("session.draining", lambda event: events.append(event.type.value))
    server.push({"type": "webtransport.connect"})
    await session.accept()
    server.push({"type": "webtransport.drain"})
    await settle()
    assert session.state is SessionState.DRAINING and session.is_ready
    assert events == ["session.draining"]
    stream = await session.create_unidirectional_stream()
    await stream.write(b"still fine")
    await session.ready()
    await session.close()


async def test_disconnect_wakes_every_waiter() -> None:
    server = RawServer(auto_open=False)
    session = WebTransportSession(make_scope(), server.receive, server.send)
    server.push({"type": "webtransport.connect"})
    await session.accept()
    server.push(
        {"type": "webtransport.stream.receive", "stream": 0, "data": b"", "end_stream": False}
    )
    await settle()
    incoming = [s async for s in _first(session.incoming_streams())]
    peer_stream = incoming[0]
    reader = asyncio.create_task(peer_stream.read(10))
    datagram = asyncio.create_task(session.datagrams.receive())
    opener = asyncio.create_task(session.create_bidirectional_stream())
    closed = asyncio.create_task(session.wait_closed())
    rest = asyncio.create_task(_collect(session.incoming_streams()))
    await settle()
    server.push({"type": "webtransport.disconnect", "code": 9, "reason": "bye"})
    for task in (reader, datagram, opener):
        with pytest.raises(SessionClosedError) as info:
            await asyncio.wait_for(task, 1)
        assert (info.value.code, info.value.reason) == (9, "bye")
    await asyncio.wait_for(closed, 1)
    assert await asyncio.wait_for(rest, 1) == []
    assert session.state is SessionState.CLOSED
    with pytest.raises(SessionClosedError):
        await peer_stream.write(b"x")


async def test_async_with_closes_the_session() -> None:
    server = RawServer()
    server.push({"type": "webtransport.connect"})
    async with WebTransportSession(make_scope(), server.receive, server.send) as session:
        await session.accept()
    assert session.is_closed
    assert server.sent_of("close") == [{"type": "webtransport.close", "code": 0, "reason": ""}]


async def test_client_role_is_connected_by_initialize() -> None:
    server = RawServer("client")
    scope = make_scope("client", headers=[(b"wt-protocol", b'"chat"')], subprotocols=["chat"])
    session = WebTransportSession(scope, server.receive, server.send)
    assert session.state is SessionState.CONNECTING and session.protocol == "chat"
    with pytest.raises(RuntimeError, match="initialize"):
        await session.create_bidirectional_stream()
    with pytest.raises(RuntimeError, match="server-role"):
        await session.accept()
    with pytest.raises(RuntimeError, match="server-role"):
        await session.reject()
    ready = asyncio.create_task(session.ready())
    await session.initialize()
    await session.initialize()
    await asyncio.wait_for(ready, 1)
    assert session.is_ready
    bidi = await session.create_bidirectional_stream()
    uni = await session.create_unidirectional_stream()
    assert (bidi.stream_id, uni.stream_id) == (0, 2)
    assert server.sent_of("accept") == []
    await session.close()


def test_scope_validation() -> None:
    server = RawServer()
    with pytest.raises(ValueError, match='"webtransport" scope'):
        WebTransportSession(make_scope(type="websocket"), server.receive, server.send)
    with pytest.raises(ValueError, match="extensions"):
        WebTransportSession(make_scope(extensions={}), server.receive, server.send)
    with pytest.raises(ValueError, match="role"):
        WebTransportSession(make_scope("peer"), server.receive, server.send)
    with pytest.raises(ValueError, match="max_streams"):
        SessionConfig(max_streams=0)
    with pytest.raises(ValueError, match="stream_open_timeout"):
        SessionConfig(stream_open_timeout=0)


async def _first(iterator: Any) -> Any:
    async for item in iterator:
        yield item
        return


async def _collect(iterator: Any) -> list[Any]:
    return [item async for item in iterator]
