"""What an idle or a small-stream session costs in tasks, over real QUIC.

A server holds many idle sessions, and a small request/response stream is the common
case, so neither may pay for tasks it does not need: an idle session served by
``serve_streams`` runs no task of its own (the app's task, which ``serve_streams`` keeps
busy until the session ends, is its reader; no consumer of incoming streams, no datagram
pump before a datagram arrives, no credit reporter before a report needs one),
and a stream answered by its handler returns its receive credit with that answer instead
of waking a reporter task. :class:`~starlette_webtransport.session.signal.Signal`, which
replaced ``asyncio.Event`` in sessions and streams, keeps Event's semantics.
"""

from __future__ import annotations

import asyncio

import pytest

from starlette_webtransport.asgi import Receive, Scope, Send
from starlette_webtransport.session import (
    StreamType,
    WebTransportSession,
    WebTransportStream,
    serve_streams,
)
from starlette_webtransport.session.signal import Signal
from starlette_webtransport.testing.plugin import ClientFactory, ServerFactory

TIMEOUT = 10.0


class EchoApp:
    """The example's ``/echo`` as a bare ASGI app that keeps its server-end sessions."""

    def __init__(self) -> None:
        self.sessions: list[WebTransportSession] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport":
            return
        session = WebTransportSession(scope, receive, send)
        self.sessions.append(session)
        await session.accept()
        await serve_streams(session, self.echo, on_datagram=session.datagrams.send)

    @staticmethod
    async def echo(stream: StreamType) -> None:
        assert isinstance(stream, WebTransportStream)
        async for chunk in stream:
            await stream.write(chunk)
        await stream.close()


def session_tasks(session: WebTransportSession) -> set[str]:
    """Names of the live tasks the session layer made for ``session``, relative to its
    prefix: ``""`` is the reader, ``"-credit"`` the reporter, ``"-datagrams"`` the pump."""
    prefix = f"webtransport-session-{session.session_id}"
    return {
        task.get_name().removeprefix(prefix)
        for task in asyncio.all_tasks()
        if task.get_name().startswith(prefix) and not task.done()
    }


async def settle() -> None:
    """Let whatever a step set off (callbacks, tasks) run."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_an_idle_session_runs_no_task_of_its_own_until_datagrams_come(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    app = EchoApp()
    async with webtransport_server(app) as server, webtransport_client(server, "/") as client:
        async with asyncio.timeout(TIMEOUT):
            while not app.sessions or not app.sessions[0].is_ready:
                await asyncio.sleep(0.01)
            (session,) = app.sessions
            await settle()
            assert session_tasks(session) == set()  # the app's task reads
            assert (await session.debug_state())["reader"]["running"]

            # More streams than serve_streams keeps finished tasks for before pruning them.
            for i in range(80):
                payload = b"small request %d" % i
                stream = await client.create_bidirectional_stream()
                await stream.write(payload, end_stream=True)
                assert await stream.read() == payload
            await settle()
            # The credit of each stream went back with its echo: no reporter was needed.
            assert session_tasks(session) == set()
            channel = session._receive.__self__  # type: ignore[attr-defined]
            assert channel.consumed_mode and channel.delivered == {}

            await client.datagrams.send(b"ping")
            assert await asyncio.wait_for(client.datagrams.receive(), TIMEOUT) == b"ping"
            assert session_tasks(session) == {"-datagrams"}


async def test_reads_without_an_answer_return_their_credit_through_the_reporter(
    webtransport_server: ServerFactory, webtransport_client: ClientFactory
) -> None:
    """A handler that reads and never writes: its reports have no send to ride on, so
    the reporter task is made for them."""
    received: asyncio.Queue[bytes] = asyncio.Queue()
    sessions: list[WebTransportSession] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "webtransport":
            return
        session = WebTransportSession(scope, receive, send)
        await session.accept()

        async def sink(stream: StreamType) -> None:
            await received.put(await stream.read())

        sessions.append(session)
        await serve_streams(session, sink)

    async with webtransport_server(app) as server, webtransport_client(server, "/") as client:
        async with asyncio.timeout(TIMEOUT):
            stream = await client.create_unidirectional_stream()
            await stream.write(b"x" * 1000, end_stream=True)
            assert await received.get() == b"x" * 1000
            (session,) = sessions
            channel = session._receive.__self__  # type: ignore[attr-defined]
            while channel.delivered:
                await asyncio.sleep(0.01)
            assert "-credit" in session_tasks(session)


async def test_signal_has_the_semantics_of_asyncio_event() -> None:
    signal = Signal()
    assert not signal.is_set()
    waiters = [asyncio.create_task(signal.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    signal.set()
    signal.clear()  # waiters woken by set() return even if the flag is cleared again
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert not signal.is_set()

    cancelled = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert signal._waiters is None  # a cancelled waiter leaves nothing behind

    signal.set()
    await asyncio.wait_for(signal.wait(), 1)  # set: returns at once
    assert Signal(True).is_set()
