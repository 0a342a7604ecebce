"""Issue 15, item 3: aioquic's private names are fenced in ``transport/internals.py``.

Every private name that module declares must exist in the installed aioquic: methods on the
classes, attributes on real connections after a real handshake, and our overrides must have
aioquic's signatures (aioquic calls them with keyword arguments). A release that drops or
renames one fails here, naming it, instead of misbehaving at run time. And no other module
of the package may reach for those names, so the module stays the one file to audit.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import importlib.metadata
import inspect
import re
import socket
import textwrap
from pathlib import Path
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection, H3Stream
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent
from cryptography.hazmat.primitives.serialization import Encoding

import starlette_webtransport
from starlette_webtransport.client import connection as client_connection
from starlette_webtransport.transport import (
    WT_CREDIT,
    WebTransportH3Connection,
    WebTransportQuicConnection,
    internals,
    quic_configuration,
)

from ..server.test_hot_path import _pair, _settle

AIOQUIC = importlib.metadata.version("aioquic")

REGISTRIES = {
    name: value
    for name, value in vars(internals).items()
    if name.isupper() and isinstance(value, tuple)
}


def _missing(obj: Any, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name not in vars(obj)]


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_overrides_keep_aioquic_signatures() -> None:
    for base, ours, names in (
        (QuicConnection, WebTransportQuicConnection, internals.QUIC_CONNECTION_OVERRIDES),
        (H3Connection, WebTransportH3Connection, internals.H3_CONNECTION_OVERRIDES),
    ):
        overridden = {
            name
            for name in vars(ours)
            if name.startswith("_") and not name.startswith("__") and hasattr(base, name)
        }
        assert overridden == set(names), f"{ours.__name__}'s private overrides are not declared"
        for name in names:
            original = getattr(base, name, None)
            assert callable(original), f"aioquic {AIOQUIC} has no {base.__name__}.{name}"
            assert _parameters(original) == _parameters(vars(ours)[name]), name


def test_private_methods_exist() -> None:
    for cls, names in (
        (QuicConnection, internals.QUIC_CONNECTION_METHODS),
        (QuicConnectionProtocol, internals.PROTOCOL_METHODS),
    ):
        missing = [name for name in names if not callable(getattr(cls, name, None))]
        assert not missing, f"aioquic {AIOQUIC} lacks {cls.__name__} methods {missing}"


def fingerprint(function: Any) -> str:
    """The start of the SHA-256 of a method's code: docstring and annotations dropped and
    the formatting normalised, so only a change of what it does counts."""
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(node, ast.FunctionDef)
    node.returns = None
    for argument in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
        argument.annotation = None
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        node.body = body[1:]
    return hashlib.sha256(ast.unparse(node).encode()).hexdigest()[:16]


def test_audited_code_is_unchanged() -> None:
    classes = {cls.__name__: cls for cls in (QuicConnection, H3Connection, QuicConnectionProtocol)}
    audited = {
        f"{cls}.{name}"
        for cls, names in (
            ("QuicConnection", internals.QUIC_CONNECTION_OVERRIDES),
            ("QuicConnection", internals.QUIC_CONNECTION_METHODS),
            ("H3Connection", internals.H3_CONNECTION_OVERRIDES),
            ("QuicConnectionProtocol", internals.PROTOCOL_METHODS),
        )
        for name in names
    }
    assert set(internals.AUDITED_CODE) == audited
    changed = []
    for qualified, expected in internals.AUDITED_CODE.items():
        cls, _, name = qualified.partition(".")
        method = getattr(classes[cls], name, None)
        if method is None or fingerprint(method) != expected:
            changed.append(qualified)
    assert not changed, f"aioquic {AIOQUIC} changed {changed}: audit them (transport/internals.py)"


def _drain(quic: QuicConnection) -> list[QuicEvent]:
    events = []
    while (event := quic.next_event()) is not None:
        events.append(event)
    return events


def test_attributes_exist_on_real_connections(tmp_path: Path) -> None:
    client, server = _pair(
        tmp_path,
        WebTransportQuicConnection,
        client_class=WebTransportQuicConnection,
        configuration=lambda is_client: quic_configuration(is_client=is_client),
    )
    now = _settle(client, server, 0.0)
    for quic in (client, server):
        missing = _missing(quic, internals.QUIC_CONNECTION_ATTRIBUTES)
        assert not missing, f"aioquic {AIOQUIC} QuicConnection lacks {missing}"
        assert internals.handshake_complete(quic)
        assert not internals.ended(quic)
    missing = _missing(client.tls, internals.TLS_CONTEXT_ATTRIBUTES)
    assert not missing, f"aioquic {AIOQUIC} tls.Context lacks {missing}"
    h3 = WebTransportH3Connection(server, WT_CREDIT)
    missing = _missing(h3, internals.H3_CONNECTION_ATTRIBUTES)
    assert not missing, f"aioquic {AIOQUIC} H3Connection lacks {missing}"

    # What the helpers read is what aioquic keeps (it updates these objects in place).
    certificate = internals.peer_certificate(client)
    assert certificate is not None
    pem = (tmp_path / "cert.pem").read_bytes()
    assert certificate.public_bytes(Encoding.PEM) == pem
    # Captured when the connection was made: aioquic has not replaced them since.
    max_data, max_streams_bidi, max_streams_uni = server.local_limits
    assert max_data is server._local_max_data
    assert max_streams_bidi is server._local_max_streams_bidi
    assert max_streams_uni is server._local_max_streams_uni
    assert internals.connection_limits(server) == server.local_limits
    assert server._streams is server.stream_table
    assert internals.peer_max_datagram_frame_size(client) == server.advertised_datagram_frame_size()
    assert internals.peer_max_datagram_frame_size(server) == client.advertised_datagram_frame_size()
    assert 1000 < internals.packet_room(client) < 1500
    assert internals.events_pending(server)
    _drain(server)
    assert not internals.events_pending(server)

    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"12345")
    sender = client._streams[stream_id].sender
    missing = _missing(sender, internals.STREAM_SENDER_ATTRIBUTES)
    assert not missing, f"aioquic {AIOQUIC} QuicStreamSender lacks {missing}"
    assert internals.unsent_bytes(sender) == 5
    now = _settle(client, server, now)
    assert internals.unsent_bytes(sender) == 0  # acknowledged
    assert not internals.sender_reset(sender)
    client.reset_stream(stream_id, 7)
    assert internals.sender_reset(sender)
    assert internals.stream_limit(server, stream_id) is server._local_max_streams_bidi

    assert internals.datagrams_pending(client) == 0
    client.send_datagram_frame(b"x")
    assert internals.datagrams_pending(client) == 1

    stream = H3Stream(3)
    internals.remember_h3_stream(h3, stream)
    assert internals.h3_stream(h3, 3) is stream
    internals.forget_h3_stream(h3, 3)
    assert internals.h3_stream(h3, 3) is None

    client.close()
    client.datagrams_to_send(now)  # sends CONNECTION_CLOSE: closing
    assert internals.ended(client)


async def test_asyncio_privates_exist(tmp_path: Path) -> None:
    quic = WebTransportQuicConnection(configuration=quic_configuration(is_client=True))
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: QuicConnectionProtocol(quic), local_addr=("127.0.0.1", 0)
    )
    try:
        missing = _missing(protocol, internals.PROTOCOL_ATTRIBUTES)
        assert not missing, f"aioquic {AIOQUIC} QuicConnectionProtocol lacks {missing}"
        raw = internals.raw_socket(transport)
        assert isinstance(raw, socket.socket), "asyncio's datagram transport has no _sock"
        assert raw.fileno() == transport.get_extra_info("socket").fileno()
        internals.schedule_transmit(protocol)()
        assert protocol._transmit_task is not None
        internals.stop_protocol_timers(protocol)
        assert protocol._transmit_task is None and protocol._timer is None
        assert not internals.protocol_closed(protocol).is_set()
    finally:
        transport.close()


def test_no_private_name_outside_internals() -> None:
    """Other modules use the helpers; aioquic subclasses may name a private only to
    override it (``def``/``super()``), never ``self._name``."""
    names = sorted({name for registry in REGISTRIES.values() for name in registry})
    other = re.compile(r"\b(?!self\.)\w+\.(" + "|".join(names) + r")\b")
    own = re.compile(r"\bself\.(" + "|".join(names) + r")\b")
    package = Path(starlette_webtransport.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "internals.py" and path.parent.name == "transport":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if other.search(line):
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    subclasses = [
        value
        for value in vars(client_connection).values()
        if isinstance(value, type)
        and issubclass(value, QuicConnectionProtocol)
        and value.__module__ == client_connection.__name__
    ]
    assert subclasses, "the client's QuicConnectionProtocol subclass moved: scan its home"
    for cls in (WebTransportQuicConnection, WebTransportH3Connection, *subclasses):
        source = inspect.getsource(cls)
        found += [f"{cls.__name__}: {m.group(0)}" for m in own.finditer(source)]
    assert not found, "aioquic privates outside transport/internals.py:\n" + "\n".join(found)
