"""The README's app, run as written, over real QUIC."""

from __future__ import annotations

import re
import types
from pathlib import Path

from starlette_webtransport.client import connect
from starlette_webtransport.testing.server import running_server

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_readme_example_echoes() -> None:
    (source,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)[:1]
    module = types.ModuleType("readme_example")
    exec(compile(source, str(README), "exec"), module.__dict__)
    async with running_server(module.app) as server:
        url = f"https://127.0.0.1:{server.port}/echo"
        async with connect(url, certificate_hashes=[server.certificate_sha256]) as session:
            stream = await session.create_bidirectional_stream()
            await stream.write(b"from the README", end_stream=True)
            assert await stream.read() == b"from the README"
