"""Choosing the backend: URLs, ``--broadcast``, its environment variable, the CLI's
warning about per-process groups, and the default hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from starlette_webtransport.broadcast import Broadcast, MemoryBackend, backend_for_url
from starlette_webtransport.server.cli import build_parser, serve_settings

REPO = Path(__file__).resolve().parents[2]


def broadcast_setting(argv: list[str], environ: dict[str, str]) -> str | None:
    args = build_parser().parse_args(["serve", "app:app", *argv])
    return serve_settings(args, environ, args.parser).broadcast


def test_flag_wins_over_the_environment() -> None:
    env = {"STARLETTE_WEBTRANSPORT_BROADCAST": "redis://10.0.0.5:6379/1"}
    assert broadcast_setting([], {}) is None
    assert broadcast_setting([], env) == "redis://10.0.0.5:6379/1"
    assert broadcast_setting(["--broadcast", "memory://"], env) == "memory://"


def test_a_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        broadcast_setting(["--broadcast", "nats://x"], {})
    assert exit_info.value.code == 2
    assert "is not memory:// or redis://host:port/db" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown broadcast backend"):
        backend_for_url("kafka://x")
    with pytest.raises(ValueError, match="presence_ttl"):
        Broadcast("memory://?presence_ttl=soon")


def test_urls_pick_backends_and_carry_the_presence_ttl() -> None:
    assert isinstance(Broadcast()._backend, MemoryBackend)
    hub = Broadcast("redis://127.0.0.1:6379/2?presence_ttl=4")
    assert (hub.url, hub.presence_ttl) == ("redis://127.0.0.1:6379/2", 4.0)
    assert type(hub._backend).__name__ == "RedisBackend"


def _warning(*options: str) -> str:
    """The CLI's stderr for a serve that fails right after parsing (no such app)."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "starlette_webtransport", "serve", "no_such_module:app"),
            *("--port", "0", *options),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stderr


def test_several_workers_on_memory_are_warned_about() -> None:
    warning = "groups (rooms) are per process"
    assert warning in _warning("--workers", "2")
    assert warning not in _warning("--workers", "2", "--broadcast", "redis://127.0.0.1:1/0")
    assert warning not in _warning()
