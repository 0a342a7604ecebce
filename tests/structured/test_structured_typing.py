"""mypy infers the union of registered types and rejects what the registry cannot send."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

REPO = Path(__file__).parents[2]

# Lines marked "# E:" must be mypy errors, and no other line may be.
USER_CODE = """\
from typing import assert_type

import msgspec

from starlette_webtransport.session import (
    WebTransportReceiveStream,
    WebTransportSession,
    WebTransportStream,
)
from starlette_webtransport.structured import (
    BidirectionalStream,
    Datagrams,
    JSONSerializer,
    MsgPackSerializer,
    Schema,
    StructuredDatagramTransport,
    StructuredReceiveStream,
    StructuredStream,
)


class Ping(msgspec.Struct):
    seq: int


class Pong(msgspec.Struct):
    seq: int


async def check(stream: BidirectionalStream, datagrams: Datagrams) -> None:
    schema = Schema[Ping | Pong]({1: Ping, 2: Pong}, serializer=MsgPackSerializer())
    typed = StructuredStream(stream, schema=schema)
    assert_type(typed, StructuredStream[Ping | Pong])
    assert_type(await typed.receive_obj(), Ping | Pong)
    async for message in typed:
        assert_type(message, Ping | Pong)
    await typed.send_obj(Ping(1))
    await typed.send_obj("not a message")  # E: incompatible type

    annotated: StructuredStream[Ping | Pong] = StructuredStream(
        stream, serializer=JSONSerializer(), registry={1: Ping, 2: Pong}
    )
    assert_type(await annotated.receive_obj(), Ping | Pong)

    single = StructuredReceiveStream(stream, serializer=JSONSerializer(), registry={1: Ping})
    assert_type(await single.receive_obj(), Ping)

    transport = StructuredDatagramTransport(datagrams, schema=schema)
    assert_type(await transport.receive_obj(), Ping | Pong)

    StructuredStream(stream, schema=schema, registry={1: Ping})  # E: no overload matches

    pings = Schema[Ping]({1: Ping}, serializer=JSONSerializer())
    pongs = Schema[Pong]({1: Pong}, serializer=JSONSerializer())
    server = StructuredStream(stream, send_schema=pongs, receive_schema=pings)
    assert_type(server, StructuredStream[Pong, Ping])
    assert_type(await server.receive_obj(), Ping)
    await server.send_obj(Pong(1))
    await server.send_obj(Ping(1))  # E: the server sends only Pong
    one_way: StructuredStream[Ping] = StructuredStream(stream, schema=pings)
    assert_type(one_way, StructuredStream[Ping, Ping])


async def factories(session: WebTransportSession) -> None:
    schema = Schema[Ping | Pong]({1: Ping, 2: Pong}, serializer=MsgPackSerializer())
    opened = await session.create_structured_stream(schema=schema)
    assert_type(opened, StructuredStream[Ping | Pong])
    transport = await session.create_structured_datagram_transport(schema=schema)
    assert_type(transport, StructuredDatagramTransport[Ping | Pong])
    assert_type(await session.accept_bidirectional_stream(), WebTransportStream)
    assert_type(await session.accept_unidirectional_stream(), WebTransportReceiveStream)
    await session.create_structured_stream(schema=schema, registry={1: Ping})  # E: no overload
"""


def test_types_seen_by_mypy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYPYPATH", str(REPO))
    checked = tmp_path / "user_code.py"
    checked.write_text(USER_CODE)
    stdout, stderr, _ = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(checked)]
    )
    assert stderr == ""
    errors = {int(n) for n in re.findall(r"^[^:\n]+:(\d+): error:", stdout, re.MULTILINE)}
    expected = {
        number for number, line in enumerate(USER_CODE.splitlines(), start=1) if "# E:" in line
    }
    assert expected and errors == expected, stdout
