"""Each layer imports without the layers above it (checked in fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LAYERS = {
    # layer: packages it must not load
    "starlette_webtransport.protocol": {"server", "session", "structured", "starlette", "client"},
    "starlette_webtransport.asgi": {"server", "session", "structured", "starlette", "client"},
    "starlette_webtransport.session": {"server", "structured", "starlette", "client"},
    "starlette_webtransport.structured": {"server", "session", "starlette", "client"},
    "starlette_webtransport.starlette": {"server", "client"},
    "starlette_webtransport.transport": {"server", "session", "structured", "starlette", "client"},
    "starlette_webtransport.broadcast": {"server", "starlette", "client", "testing"},
}


def loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(output))


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_layer_imports_alone(module: str) -> None:
    loaded = loaded_after_import(module)
    above = {f"starlette_webtransport.{name}" for name in LAYERS[module]}
    assert not above & loaded


def test_broadcast_loads_redis_only_for_a_redis_url() -> None:
    assert "redis" not in loaded_after_import("starlette_webtransport.broadcast")


def test_protocol_core_is_sans_io() -> None:
    loaded = loaded_after_import("starlette_webtransport.protocol")
    assert not {"asyncio", "socket", "ssl", "aioquic", "hypercorn"} & loaded


@pytest.mark.parametrize(
    "module", ["starlette_webtransport.client", "starlette_webtransport.transport"]
)
def test_client_side_does_not_load_hypercorn(module: str) -> None:
    """The client shares the transport with the server adapter, not the adapter itself."""
    loaded = loaded_after_import(module)
    assert "hypercorn" not in loaded
    assert (
        not {
            "starlette_webtransport.server",
            "starlette_webtransport.server.h3",
            "starlette_webtransport.server.quic",
        }
        & loaded
    )


@pytest.mark.parametrize("module", ["demux", "credit"])
def test_session_rules_are_sans_io(module: str) -> None:
    """The session's demultiplexer and credit counting import no I/O (they are tested
    with plain values); read from their source, since importing them loads the session
    package."""
    import ast
    from pathlib import Path

    import starlette_webtransport

    path = Path(starlette_webtransport.__file__).parent / "session" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    allowed = {"__future__", "collections", "collections.abc", "dataclasses", "typing"}
    assert imported <= allowed | {"..asgi", "..protocol.ids", ".constants", ".state"}
