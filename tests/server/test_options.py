"""One options object for every way of serving, the state on a declared config, one home
for the development certificate, and server modules that import only downwards."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypercorn.config import Config

import starlette_webtransport.server as server_package
from starlette_webtransport.client import connect
from starlette_webtransport.server import Limits, ServeOptions, ServerState, serve
from starlette_webtransport.server.devcert import make_dev_certificate
from starlette_webtransport.server.options import WebTransportConfig, server_state
from starlette_webtransport.session import WebTransportSession


def test_keywords_fill_the_options_and_the_rest_goes_to_hypercorn() -> None:
    base = ServeOptions(port=0, limits=Limits(idle_timeout=20))
    options = ServeOptions.of(base, graceful_timeout=1.5, workers=2, backlog=50)
    assert options.port == 0
    assert options.limits == Limits(idle_timeout=20)
    assert options.graceful_timeout == 1.5
    assert options.hypercorn == {"workers": 2, "backlog": 50}
    assert ServeOptions.of(options, backlog=10).hypercorn == {"workers": 2, "backlog": 10}
    merged = ServeOptions.of(hypercorn={"backlog": 5}, workers=3)
    assert merged.hypercorn == {"backlog": 5, "workers": 3}
    assert ServeOptions.of() == ServeOptions()


def test_the_config_declares_the_server_state() -> None:
    state = ServerState(certificate_sha256=b"", binds=[])
    options = ServeOptions(host=("127.0.0.1", "::1"), port=8443, http_port=8080)
    config = options.config(state)
    assert isinstance(config, WebTransportConfig)
    assert config.webtransport_state is state
    assert server_state(config) is state
    assert server_state(Config()) is None  # a plain hypercorn Config carries none
    assert config.bind == config.quic_bind == ["127.0.0.1:8443", "[::1]:8443"]
    assert config.insecure_bind == ["127.0.0.1:8080", "[::1]:8080"]
    with pytest.raises(TypeError, match="no_such_setting"):
        ServeOptions.of(no_such_setting=1).config()
    # hypercorn's run() reads worker_class; serve() runs in its caller's loop instead.
    with pytest.raises(ValueError, match="worker_class has no effect"):
        ServeOptions.of(worker_class="uvloop").config()
    assert ServeOptions.of(worker_class="asyncio").config().worker_class == "asyncio"
    with pytest.raises(ValueError, match="go together"):
        ServeOptions(certfile="cert.pem")


async def test_serve_takes_one_options_object() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "webtransport":
            session = WebTransportSession(scope, receive, send)
            await session.accept()
            await session.wait_closed()

    limits = Limits(idle_timeout=20, keep_alive=3)
    state = ServerState(certificate_sha256=b"", binds=[])
    stop = asyncio.Event()
    options = ServeOptions(port=0, limits=limits, graceful_timeout=0.5)
    task = asyncio.create_task(serve(app, options, state=state, shutdown_trigger=stop.wait))
    try:
        async with asyncio.timeout(10):
            await state.ready.wait()
        assert state.limits is limits
        url = f"https://127.0.0.1:{state.port}/"
        async with connect(url, certificate_hashes=[state.certificate_sha256]) as session:
            assert session.is_ready
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def test_dev_certificate_covers_loopback_and_the_named_hosts(tmp_path: Path) -> None:
    files = make_dev_certificate(["0.0.0.0", "dev.example", "10.0.0.7"], tmp_path)
    assert files.certfile.parent == files.keyfile.parent == tmp_path
    assert files.keyfile.stat().st_mode & 0o777 == 0o600
    assert files.sha256 == files.certificate.sha256
    certificate = x509.load_pem_x509_certificate(files.certfile.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "dev.example"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.0.0.7")
    ]


def _server_imports() -> dict[str, set[str]]:
    """Module -> the sibling modules it imports, including imports inside functions."""
    folder = Path(server_package.__file__).parent
    names = {path.stem for path in folder.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((folder / f"{name}.py").read_text())
        graph[name] = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in names
        }
    return graph


def test_server_modules_import_one_another_without_a_circle() -> None:
    graph = _server_imports()
    assert graph["supervisor"] and graph["serve"]  # the scan sees real imports
    finished: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name in finished:
            return
        for imported in graph[name]:
            visit(imported, (*path, name))
        finished.add(name)

    for name in sorted(graph):
        visit(name, ())
