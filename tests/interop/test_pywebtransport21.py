"""pywebtransport 0.21.1's client (Rust/quinn, draft-15) against the example app on the CLI.

An independent draft-15 stack that enforces WebTransport credit: the server must keep to
the stream and data credit this client grants (its default is 10 streams per direction and
4 MiB per session), wait when it is used up, say so with WT_STREAMS_BLOCKED /
WT_DATA_BLOCKED, and go on when the client grants more. The client runs in its own
Python 3.12 venv (``scripts/setup-pywebtransport21``), as ``pwt21_client.py`` in a
subprocess bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..tooling.example_server import ExampleServer as CLIExampleServer
from ..tooling.example_server import serve_example

ROOT = Path(__file__).resolve().parents[2]
PWT21_PYTHON = ROOT / ".venv-pwt21" / "bin" / "python"
CLIENT = Path(__file__).with_name("pwt21_client.py")
CLIENT_TIMEOUT = 60.0
ZERO_DATA = ["initial_max_data=0"]
"""Streams granted, data not: the client grants data once the server says it is blocked."""
ZERO_ALL = ["initial_max_data=0", "initial_max_streams_bidi=0", "initial_max_streams_uni=0"]
"""No credit offered at all: pywebtransport then does no WebTransport flow control."""


class ExampleServer(CLIExampleServer):
    """The example app on the CLI, driven by pywebtransport 0.21.1's client."""

    async def run_client(self, check: str, credit: list[str] | None = None) -> dict[str, Any]:
        url = f"https://127.0.0.1:{self.port}/echo"
        client = await asyncio.create_subprocess_exec(
            str(PWT21_PYTHON),
            str(CLIENT),
            url,
            check,
            *(credit or []),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(client.communicate(), CLIENT_TIMEOUT)
        finally:
            if client.returncode is None:
                client.kill()
                await client.wait()
        assert client.returncode == 0, stderr.decode()
        result: dict[str, Any] = json.loads(stdout)
        assert "error" not in result, (result, "".join(self.log[-40:]))
        return result


@contextlib.asynccontextmanager
async def example_server() -> AsyncIterator[ExampleServer]:
    if not PWT21_PYTHON.exists():
        pytest.fail(f"{PWT21_PYTHON} is missing: run scripts/setup-pywebtransport21")
    async with serve_example(ExampleServer) as server:
        yield server


def assert_basic_echo(result: dict[str, Any]) -> None:
    assert result["bidi"] is True
    assert result["uni"] == "hello uni"
    assert result["datagram"] == "hello datagram"
    assert result["closed"] is True


def assert_all_echoed(result: dict[str, Any]) -> None:
    assert result["echoed"] == 30
    assert result["all_match"] is True
    assert result["after"] == "still there"
    assert result["closed_before_close"] is False


async def test_echo_and_close_under_the_clients_default_credit() -> None:
    async with example_server() as server:
        result = await server.run_client("basic")
        assert_basic_echo(result)
        assert result["credit"]["negotiated"] is True
        await asyncio.sleep(0.2)  # the close reaches the log
    assert any("code=4000 reason='done'" in line for line in server.closes()), server.log


async def test_thirty_uni_streams_wait_for_the_clients_stream_credit() -> None:
    """30 echoes on server streams under a grant of 10: the server waits for WT_MAX_STREAMS
    instead of overrunning it, which the client would punish with WT_FLOW_CONTROL_ERROR."""
    async with example_server() as server:
        result = await server.run_client("many")
        assert_all_echoed(result)
        assert result["credit"]["negotiated"] is True
        assert result["credit"]["uni"] >= 30  # granted later, as the server retired streams
    assert not any("protocol error" in line or "Traceback" in line for line in server.log)


async def test_zero_initial_data_credit_is_granted_later_and_everything_completes() -> None:
    async with example_server() as server:
        basic = await server.run_client("basic", ZERO_DATA)
        many = await server.run_client("many", ZERO_DATA)
    assert_basic_echo(basic)
    assert_all_echoed(many)
    for result in (basic, many):
        assert result["credit"]["negotiated"] is True
        assert result["credit"]["data"] > 0  # granted after the server's WT_DATA_BLOCKED


async def test_a_client_offering_no_credit_at_all_gets_no_flow_control_and_completes() -> None:
    async with example_server() as server:
        basic = await server.run_client("basic", ZERO_ALL)
        many = await server.run_client("many", ZERO_ALL)
    assert_basic_echo(basic)
    assert_all_echoed(many)
    assert basic["credit"]["negotiated"] is False
