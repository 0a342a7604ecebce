"""The hypercorn adapter over real QUIC: every message of the ASGI contract."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from starlette_webtransport.protocol.capsules import CapsuleParser, CloseSession, DrainSession
from starlette_webtransport.protocol.errors import (
    WT_SESSION_GONE,
    app_to_http3,
)

from .conftest import ScriptedApp
from .rawclient import raw_peer


async def accept(receive: Any, send: Any, **accept: Any) -> None:
    assert (await receive())["type"] == "webtransport.connect"
    await send({"type": "webtransport.accept", **accept})


async def test_scope_describes_the_session(app: ScriptedApp, server: Any) -> None:
    scopes: list[dict[str, Any]] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await accept(receive, send, subprotocol="chat", headers=[(b"x-extra", b"1")])
        await receive()

    app.handlers["/room/é"] = handler
    async with raw_peer(server.port) as peer:
        _, headers = await peer.open_session(
            "/room/%C3%A9?x=1&y=2",
            headers=[(b"wt-available-protocols", b'"chat", "v2"'), (b"x-token", b"abc")],
        )
    assert headers[b":status"] == b"200"
    assert headers[b"wt-protocol"] == b'"chat"'
    assert headers[b"x-extra"] == b"1"
    assert headers[b"sec-webtransport-http3-draft"] == b"draft02"
    (scope,) = scopes
    assert scope["type"] == "webtransport"
    assert scope["asgi"]["spec_version"] == "1.1"
    assert scope["http_version"] == "3"
    assert scope["method"] == "CONNECT"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/room/é"
    assert scope["raw_path"] == b"/room/%C3%A9"
    assert scope["query_string"] == b"x=1&y=2"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["chat", "v2"]
    assert scope["headers"][0] == (b"host", b"localhost")
    assert (b"x-token", b"abc") in scope["headers"]
    assert (b"origin", b"https://localhost") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", server.port)
    extension = scope["extensions"]["webtransport"]
    assert extension["draft"] == "draft02"
    assert extension["stream_id"] == 0
    assert extension["session_id"]
    assert 1100 < extension["max_datagram_size"] < 1200
    assert extension["connection"]["alpn"] == "h3"


async def test_bidirectional_and_unidirectional_echo(app: ScriptedApp, server: Any) -> None:
    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        pending: dict[int, bytes] = {}
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                return
            assert message["type"] == "webtransport.stream.receive", message
            stream = message["stream"]
            if stream & 0x2:  # client unidirectional: answer on a new server stream
                pending[stream] = pending.get(stream, b"") + message["data"]
                if message["end_stream"]:
                    await send({"type": "webtransport.stream.open", "bidirectional": False})
                    opened = await receive()
                    assert opened["type"] == "webtransport.stream.opened"
                    assert opened["bidirectional"] is False
                    assert opened["stream"] & 0x3 == 0x3
                    await send(
                        {
                            "type": "webtransport.stream.send",
                            "stream": opened["stream"],
                            "data": pending.pop(stream),
                            "end_stream": True,
                        }
                    )
            else:
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "stream": stream,
                        "data": message["data"],
                        "end_stream": message["end_stream"],
                    }
                )

    app.handlers["/echo"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/echo")
        bidi = peer.open_stream()
        payload = bytes(range(256)) * 4096  # 1 MiB: several flow-control windows' worth
        peer.send(bidi, payload, end_stream=True)
        assert await peer.read_stream(bidi, timeout=20) == payload
        uni = peer.open_stream(unidirectional=True)
        peer.send(uni, b"one way", end_stream=True)
        await peer.wait_for(lambda: any(s & 0x3 == 0x3 for s in peer.stream_ended))
        (server_uni,) = [s for s in peer.stream_ended if s & 0x3 == 0x3]
        assert await peer.read_stream(server_uni) == b"one way"


async def test_datagrams_and_their_size_limit(app: ScriptedApp, server: Any) -> None:
    errors: list[str] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        limit = scope["extensions"]["webtransport"]["max_datagram_size"]
        try:
            await send({"type": "webtransport.datagram.send", "data": b"x" * (limit + 1)})
        except ValueError as exc:
            errors.append(str(exc))
        await send({"type": "webtransport.datagram.send", "data": b"m" * limit})
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                return
            await send({"type": "webtransport.datagram.send", "data": message["data"]})

    app.handlers["/dgram"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/dgram")
        biggest = await asyncio.wait_for(peer.datagrams.get(), 5)
        assert set(biggest) == {ord("m")}
        for i in range(5):
            peer.send_datagram(b"ping %d" % i)
        echoed = {await asyncio.wait_for(peer.datagrams.get(), 5) for _ in range(5)}
        assert echoed == {b"ping %d" % i for i in range(5)}
    (error,) = errors
    assert f"{len(biggest) + 1} bytes" in error and str(len(biggest)) in error


async def test_resets_and_stop_sending_carry_codes_both_ways(app: ScriptedApp, server: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "webtransport.disconnect":
                return
            if message["type"] == "webtransport.stream.receive" and message["data"] == b"reset me":
                await send(
                    {"type": "webtransport.stream.reset", "stream": message["stream"], "code": 42}
                )
            if message["type"] == "webtransport.stream.receive" and message["data"] == b"stop me":
                await send(
                    {
                        "type": "webtransport.stream.stop_sending",
                        "stream": message["stream"],
                        "code": 7,
                    }
                )

    app.handlers["/codes"] = handler
    async with raw_peer(server.port) as peer:
        await peer.open_session("/codes")
        a = peer.open_stream()
        peer.send(a, b"reset me")
        await peer.wait_for(lambda: a in peer.resets)
        assert peer.resets[a] == app_to_http3(42)
        b = peer.open_stream()
        peer.send(b, b"stop me")
        await peer.wait_for(lambda: b in peer.stops)
        assert peer.stops[b] == app_to_http3(7)
        c = peer.open_stream()
        peer.send(c, b"partial")
        peer.reset(c, 2**32 - 1)
        d = peer.open_stream()
        peer.send(d, b"hello")
        peer.stop(d, 1234)
        await peer.wait_for(
            lambda: (
                {m["type"] for m in seen if m.get("stream") in (c, d)}
                >= {"webtransport.stream.reset", "webtransport.stream.stop_sending"}
            )
        )
    reset = next(m for m in seen if m["type"] == "webtransport.stream.reset")
    assert reset == {"type": "webtransport.stream.reset", "stream": c, "code": 2**32 - 1}
    stop = next(m for m in seen if m["type"] == "webtransport.stream.stop_sending")
    assert stop == {"type": "webtransport.stream.stop_sending", "stream": d, "code": 1234}
    data_c = [m["data"] for m in seen if m.get("stream") == c and m["type"].endswith("receive")]
    assert b"".join(data_c) == b"partial"


async def test_app_close_sends_capsule_then_fin(app: ScriptedApp, server: Any) -> None:
    finals: list[dict[str, Any]] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        message = await receive()
        assert message["type"] == "webtransport.stream.receive"
        await send({"type": "webtransport.close", "code": 3003, "reason": "bye ✓"})
        finals.append(await receive())
        with pytest.raises(OSError):
            await send({"type": "webtransport.datagram.send", "data": b"late"})

    app.handlers["/close"] = handler
    async with raw_peer(server.port) as peer:
        session, _ = await peer.open_session("/close")
        stream = peer.open_stream()
        peer.send(stream, b"x")
        await peer.read_stream(session)  # waits for the FIN of the CONNECT stream
        assert CapsuleParser().feed(bytes(peer.connect_data)) == [CloseSession(3003, "bye ✓")]
        await peer.wait_for(lambda: stream in peer.resets)
        assert peer.resets[stream] == WT_SESSION_GONE
    assert finals == [
        {"type": "webtransport.disconnect", "code": 3003, "reason": "bye ✓", "cause": "closed"}
    ]


async def test_app_that_raises_after_accept_closes_with_internal_server_error(
    app: ScriptedApp, server: Any
) -> None:
    """Spec section 6, as ``asgi.exit_message`` writes it for every server."""

    async def crash(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        assert (await receive())["type"] == "webtransport.stream.receive"
        raise RuntimeError("boom")

    app.handlers["/crash-late"] = crash
    async with raw_peer(server.port) as peer:
        session, headers = await peer.open_session("/crash-late")
        assert headers[b":status"] == b"200"
        peer.send(peer.open_stream(), b"x")
        await peer.read_stream(session)  # waits for the FIN of the CONNECT stream
        closes = CapsuleParser().feed(bytes(peer.connect_data))
    assert closes == [CloseSession(0, "internal server error")]


async def test_peer_close_reaches_app_with_code_and_reason(app: ScriptedApp, server: Any) -> None:
    finals: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        finals.append(await receive())
        done.set()

    app.handlers["/peer-close"] = handler
    async with raw_peer(server.port) as peer:
        session, _ = await peer.open_session("/peer-close")
        from starlette_webtransport.protocol.capsules import encode_capsule

        peer.send_connect_data(encode_capsule(CloseSession(4000, "client done")), end_stream=True)
        await asyncio.wait_for(done.wait(), 5)
        await peer.read_stream(session)  # the server finishes its side too
    assert finals == [
        {
            "type": "webtransport.disconnect",
            "code": 4000,
            "reason": "client done",
            "cause": "peer_closed",
        }
    ]


async def test_rejections(app: ScriptedApp, server: Any) -> None:
    async def reject_418(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "webtransport.reject", "status": 418, "headers": [(b"x-why", b"tea")]})

    async def close_early(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "webtransport.close"})

    async def return_early(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

    async def crash(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    app.handlers.update(
        {"/418": reject_418, "/close": close_early, "/return": return_early, "/crash": crash}
    )
    expected = {
        "/418": b"418",
        "/close": b"403",
        "/return": b"403",
        "/crash": b"500",
        "/none": b"404",
    }
    for path, status in expected.items():
        async with raw_peer(server.port) as peer:
            _, headers = await peer.open_session(path)
            assert headers[b":status"] == status, path
            if path == "/418":
                assert headers[b"x-why"] == b"tea"


async def test_drain_travels_both_ways(app: ScriptedApp, server: Any) -> None:
    got: list[str] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        await send({"type": "webtransport.drain"})
        message = await receive()
        got.append(message["type"])
        await send({"type": "webtransport.close", "code": 0, "reason": ""})

    app.handlers["/drain"] = handler
    async with raw_peer(server.port) as peer:
        session, _ = await peer.open_session("/drain")
        await peer.wait_for(lambda: len(peer.connect_data) > 0)
        assert CapsuleParser().feed(bytes(peer.connect_data)) == [DrainSession()]
        from starlette_webtransport.protocol.capsules import encode_capsule

        peer.send_connect_data(encode_capsule(DrainSession()))
        await peer.read_stream(session)
    assert got == ["webtransport.drain"]


async def test_malformed_capsule_ends_only_that_session(app: ScriptedApp, server: Any) -> None:
    finals: list[dict[str, Any]] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                finals.append(message)
                return
            if message["type"] == "webtransport.stream.receive":
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "stream": message["stream"],
                        "data": message["data"],
                        "end_stream": message["end_stream"],
                    }
                )

    app.handlers["/s"] = handler
    async with raw_peer(server.port) as bad, raw_peer(server.port) as good:
        await bad.open_session("/s")
        await good.open_session("/s")
        # WT_CLOSE_SESSION whose reason is not UTF-8
        bad.send_connect_data(b"\x80\x00\x28\x43\x06\x00\x00\x00\x01\xff\xfe")
        await bad.wait_for(lambda: len(finals) == 1)
        assert finals[0]["type"] == "webtransport.disconnect"
        assert "protocol error" in finals[0]["reason"]
        stream = good.open_stream()
        good.send(stream, b"still fine", end_stream=True)
        assert await good.read_stream(stream) == b"still fine"


async def test_second_session_survives_a_killed_one(app: ScriptedApp, server: Any) -> None:
    finals: list[dict[str, Any]] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        while True:
            message = await receive()
            if message["type"] == "webtransport.disconnect":
                finals.append(message)
                return
            if message["type"] == "webtransport.stream.receive" and message["end_stream"]:
                await send(
                    {
                        "type": "webtransport.stream.send",
                        "stream": message["stream"],
                        "data": b"done",
                        "end_stream": True,
                    }
                )

    app.handlers["/s"] = handler
    async with raw_peer(server.port) as good:
        await good.open_session("/s")
        async with raw_peer(server.port) as doomed:
            await doomed.open_session("/s")
            stream = doomed.open_stream()
            doomed.send(stream, b"x" * 100_000)  # mid-stream, never finished
            await asyncio.sleep(0.1)
            doomed._quic.close(error_code=0x10C, reason_phrase="killed")
            doomed.transmit()
        await good.wait_for(lambda: len(finals) == 1)
        assert finals[0]["code"] == 0
        stream = good.open_stream()
        good.send(stream, b"go", end_stream=True)
        assert await good.read_stream(stream) == b"done"


async def test_memory_stays_bounded_when_the_app_does_not_read(
    app: ScriptedApp, server: Any
) -> None:
    from starlette_webtransport.transport import CONNECTION_WINDOW, STREAM_WINDOW

    release = asyncio.Event()
    received: list[int] = []

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        await release.wait()
        while True:
            message = await receive()
            if message["type"] == "webtransport.stream.receive":
                received.append(len(message["data"]))
                if message["end_stream"]:
                    await send(
                        {
                            "type": "webtransport.stream.send",
                            "stream": message["stream"],
                            "data": b"ok",
                            "end_stream": True,
                        }
                    )
            elif message["type"] == "webtransport.disconnect":
                return

    app.handlers["/slow"] = handler
    total = 8 * CONNECTION_WINDOW
    async with raw_peer(server.port) as peer:
        await peer.open_session("/slow")
        stream = peer.open_stream()
        peer.send(stream, b"\x00" * total, end_stream=True)
        await asyncio.sleep(1.0)
        (session,) = server.sessions
        held = session.quic.unconsumed_total
        assert 0 < held <= STREAM_WINDOW + 65536, held
        assert peer._quic._streams[stream].sender.buffer_is_empty is False  # the peer is blocked
        release.set()
        assert await peer.read_stream(stream, timeout=20) == b"ok"
    assert sum(received) == total


async def test_http_requests_keep_working_beside_webtransport(
    app: ScriptedApp, server: Any
) -> None:
    import ssl

    import httpx
    import websockets

    for http2 in (False, True):
        async with httpx.AsyncClient(verify=False, http2=http2) as client:
            response = await client.get(f"https://127.0.0.1:{server.port}/")
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert response.text == "ok"
        assert f':{server.port}"' in response.headers["alt-svc"]
        assert "h3" in response.headers["alt-svc"]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with websockets.connect(f"wss://127.0.0.1:{server.port}/ws", ssl=context) as ws:
        await ws.send("hi")
        assert await ws.recv() == "echo: hi"
    async with raw_peer(server.port) as peer:
        stream_id = peer._quic.get_next_available_stream_id()
        peer.h3.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/"),
            ],
            end_stream=True,
        )
        peer.transmit()
        event = await asyncio.wait_for(peer.events.get(), 5)
        assert dict(event.headers)[b":status"] == b"200"  # type: ignore[attr-defined]
    assert app.http_versions == ["1.1", "2", "3"]


async def test_ipv6_loopback(app: ScriptedApp) -> None:
    from starlette_webtransport.testing.server import running_server

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await accept(receive, send)
        message = await receive()
        await send({"type": "webtransport.datagram.send", "data": message["data"]})
        await receive()

    app.handlers["/v6"] = handler
    async with running_server(app, host="::1") as state, raw_peer(state.port, host="::1") as peer:
        await peer.open_session("/v6")
        peer.send_datagram(b"over ipv6")
        assert await asyncio.wait_for(peer.datagrams.get(), 5) == b"over ipv6"
