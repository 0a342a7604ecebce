"""No head-of-line between streams, at both ends of real QUIC over loopback.

A stream's receive credit goes back to the peer as the app reads *that* stream (spec 1.1,
``webtransport.stream.consumed``), so a stream that one end does not read fills its own
window and nothing else: on the same session a new bidirectional stream, a unidirectional
stream and datagrams still echo, and the peer's close still reaches the app. Memory stays
bounded: the stuck stream holds about one stream window, in QUIC and in the session.
Before spec 1.1 the session's reader stopped for everyone once one stream held 256 KiB,
so every step after the first full window here timed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from test_quic_session import GRACE, TIMEOUT, Live

from starlette_webtransport.session import WebTransportSession, WebTransportStream
from starlette_webtransport.testing.plugin import ClientFactory, ServerFactory
from starlette_webtransport.transport import STREAM_WINDOW, SessionChannel

ANSWER = 3.0
"""Seconds within which each other stream, datagram or close must get through."""


def channel_of(session: WebTransportSession) -> SessionChannel:
    """The server (or client) half of the contract under ``session``, to look at what
    its QUIC connection holds for the app."""
    channel = getattr(session.protocol_handler.receive, "__self__", None)
    assert isinstance(channel, SessionChannel)
    return channel


async def until(predicate: Callable[[], bool], timeout: float = ANSWER) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def echo(stream: WebTransportStream) -> None:
    while chunk := await stream.read(65536):
        await stream.write(chunk)
    await stream.close()


async def others_still_get_through(near: WebTransportSession, far: WebTransportSession) -> None:
    """A new bidirectional stream and a unidirectional stream from each end, and
    datagrams both ways, while a stream of the session is stuck."""
    fresh = await near.create_bidirectional_stream(timeout=ANSWER)
    await fresh.write(b"ping", end_stream=True)
    far_fresh = await far.accept_bidirectional_stream(timeout=ANSWER)
    assert await asyncio.wait_for(far_fresh.read(), ANSWER) == b"ping"
    await far_fresh.write(b"pong", end_stream=True)
    assert await asyncio.wait_for(fresh.read(), ANSWER) == b"pong"

    for sender, receiver in ((near, far), (far, near)):
        uni = await sender.create_unidirectional_stream(timeout=ANSWER)
        await uni.write(b"one way " + sender.role.encode(), end_stream=True)
        incoming = await receiver.accept_unidirectional_stream(timeout=ANSWER)
        assert await asyncio.wait_for(incoming.read(), ANSWER) == b"one way " + sender.role.encode()

    for sender, receiver in ((near, far), (far, near)):
        await sender.datagrams.send(b"dgram " + sender.role.encode())
        received = await asyncio.wait_for(receiver.datagrams.receive(), ANSWER)
        assert received == b"dgram " + sender.role.encode()


async def test_a_stream_the_app_does_not_read_holds_nothing_else_back(live: Live) -> None:
    """The peer writes three windows on stream A and the app never reads it: A stops at
    one window, the rest of the session goes on, and reading A later lets it finish."""
    size = 3 * STREAM_WINDOW
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        server = channel_of(far)
        stuck = await near.create_bidirectional_stream()
        writing = asyncio.create_task(stuck.write(bytes(size), end_stream=True))
        far_stuck = await far.accept_bidirectional_stream(timeout=ANSWER)
        stuck_id = far_stuck.stream_id
        await until(lambda: server.quic.unconsumed.get(stuck_id, 0) > STREAM_WINDOW // 2)

        await others_still_get_through(near, far)

        # Bounded: nothing of A was consumed, so all that arrived is held, and that is
        # at most one window; the session's buffer is part of it.
        await asyncio.sleep(0.2)  # time for credit that must not come
        held = server.quic.unconsumed.get(stuck_id, 0)
        assert STREAM_WINDOW // 2 < held <= STREAM_WINDOW
        assert len(far_stuck._buffer) <= held

        # Reading A returns its credit: all three windows arrive.
        data = await asyncio.wait_for(far_stuck.read(), ANSWER * 3)
        assert len(data) == size
        await asyncio.wait_for(writing, ANSWER)
        await until(lambda: stuck_id not in server.quic.unconsumed)


async def test_the_peers_close_reaches_the_app_past_a_full_stream(live: Live) -> None:
    """The stuck stream's window stays full until the peer closes the session; the close
    reaches the app at once, and the connection then holds nothing for it."""
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        server = channel_of(far)
        stuck = await near.create_unidirectional_stream()
        writing = asyncio.create_task(stuck.write(bytes(2 * STREAM_WINDOW)))
        far_stuck = await far.accept_unidirectional_stream(timeout=ANSWER)
        await until(lambda: server.quic.unconsumed.get(far_stuck.stream_id, 0) > 0)
        await asyncio.wait_for(far_stuck.readexactly(10), ANSWER)  # read a little, then stop
        await until(lambda: len(far_stuck._buffer) > STREAM_WINDOW // 2)
        await near.close(code=7, reason="leaving")
        writing.cancel()
        await asyncio.wait_for(far.wait_closed(), ANSWER)
        assert (far.close_code, far.close_reason) == (7, "leaving")
        await until(lambda: server.quic.unconsumed_total == 0)


async def test_an_echo_the_peer_never_reads_holds_nothing_else_back(live: Live) -> None:
    """The server echoes stream A, and the client writes eight windows on A (more than both
    ends' windows and send buffers hold) but never reads the echo:
    the client's window on A fills, then the server's echo waits, then its window on A
    fills, and the client's write waits. Neither end holds more than a window of A, and
    the session works on in both directions."""
    async with asyncio.timeout(TIMEOUT), live.pair() as (near, far):
        client, server = channel_of(near), channel_of(far)
        stuck = await near.create_bidirectional_stream()
        writing = asyncio.create_task(stuck.write(bytes(8 * STREAM_WINDOW)))
        far_stuck = await far.accept_bidirectional_stream(timeout=ANSWER)
        echoing = asyncio.create_task(echo(far_stuck))
        stuck_id = stuck.stream_id
        await until(
            lambda: (
                client.quic.unconsumed.get(stuck_id, 0) > STREAM_WINDOW // 2
                and server.quic.unconsumed.get(stuck_id, 0) > STREAM_WINDOW // 2
            ),
            timeout=ANSWER * 2,
        )

        await others_still_get_through(near, far)

        await asyncio.sleep(0.2)
        assert client.quic.unconsumed.get(stuck_id, 0) <= STREAM_WINDOW
        assert server.quic.unconsumed.get(stuck_id, 0) <= STREAM_WINDOW
        assert len(stuck._buffer) <= STREAM_WINDOW
        assert not writing.done() and not echoing.done()

        await stuck.stop_sending(1)  # the client gives up on the echo: nothing leaks
        await until(lambda: stuck_id not in client.quic.unconsumed)
        assert stuck_id not in client.delivered
        writing.cancel()
        echoing.cancel()
        await asyncio.gather(writing, echoing, return_exceptions=True)


async def test_the_example_echo_serves_other_streams_while_one_echo_is_unread(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    """What users run: the example app's ``/echo`` over QUIC. The client writes eight
    windows on one stream (more than both ends' windows and send buffers hold) and never
    reads the echo; a new bidirectional stream, a
    unidirectional stream and datagrams are still echoed on the same session."""
    from example_app.app import app as example_app

    async with (
        asyncio.timeout(TIMEOUT),
        webtransport_server(example_app, graceful_timeout=GRACE) as server,
        webtransport_client(server, "/echo") as session,
    ):
        client = channel_of(session)
        stuck = await session.create_bidirectional_stream()
        writing = asyncio.create_task(stuck.write(bytes(8 * STREAM_WINDOW)))
        await until(
            lambda: client.quic.unconsumed.get(stuck.stream_id, 0) > STREAM_WINDOW // 2,
            timeout=ANSWER * 2,
        )

        fresh = await session.create_bidirectional_stream(timeout=ANSWER)
        await fresh.write(b"ping", end_stream=True)
        assert await asyncio.wait_for(fresh.read(), ANSWER) == b"ping"
        up = await session.create_unidirectional_stream(timeout=ANSWER)
        await up.write(b"one way", end_stream=True)
        back = await session.accept_unidirectional_stream(timeout=ANSWER)
        assert await asyncio.wait_for(back.read(), ANSWER) == b"one way"
        await session.datagrams.send(b"dgram")
        assert await asyncio.wait_for(session.datagrams.receive(), ANSWER) == b"dgram"

        assert client.quic.unconsumed.get(stuck.stream_id, 0) <= STREAM_WINDOW
        assert not writing.done()  # the echo waits for us, so our write waits for it
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
