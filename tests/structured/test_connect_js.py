"""``connect()`` of ``static/webtransport.js`` under node, against a real server that serves
the module (``javascript_mount()``) and, with a development certificate, its hash."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from starlette_webtransport.server.serve import free_port
from starlette_webtransport.starlette import JAVASCRIPT_PATH, enable_webtransport, javascript_mount
from starlette_webtransport.testing.server import running_server

NODE = shutil.which("node")  # Node.js is on every development and CI machine of ours
HARNESS = Path(__file__).with_name("connect_harness.mjs")


def app() -> Starlette:
    application = Starlette(routes=[javascript_mount()])
    enable_webtransport(application)
    return application


async def run_connect(http_port: int, url: str, **options: Any) -> dict[str, Any]:
    assert NODE is not None
    page = f"http://127.0.0.1:{http_port}/"
    request = {
        "page": page,
        "module": f"{page.rstrip('/')}{JAVASCRIPT_PATH}/webtransport.js",
        "url": url,
        "options": options,
    }
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(HARNESS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(json.dumps(request).encode()), 30)
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_connect_pins_the_development_certificate_it_fetches() -> None:
    http_port = free_port()
    async with running_server(app(), http_port=http_port) as server:
        result = await run_connect(http_port, "/echo")
        pinned = await run_connect(http_port, "/echo", certificateHash="ab" * 32)
    assert result["error"] is None
    assert result["url"] == f"https://127.0.0.1:{server.port}/echo"  # the HTTP/3 port
    assert result["hashes"] == [{"algorithm": "sha-256", "hex": server.certificate_sha256.hex()}]
    assert pinned["hashes"] == [{"algorithm": "sha-256", "hex": "ab" * 32}]


async def test_connect_pins_nothing_when_the_server_has_its_own_certificate(
    webtransport_certificate: Any,
) -> None:
    http_port = free_port()
    files = {
        "certfile": webtransport_certificate.certfile,
        "keyfile": webtransport_certificate.keyfile,
    }
    async with running_server(app(), http_port=http_port, **files) as server:
        result = await run_connect(http_port, f"https://localhost:{server.port}/echo")
    assert result["error"] is None
    assert result["url"] == f"https://localhost:{server.port}/echo"
    assert result["hashes"] == []
