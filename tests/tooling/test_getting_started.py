"""The code in docs/getting-started.md, run as written.

The app, its page and the pytest example are taken from the document itself, so the
guide cannot drift from what the library does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from starlette_webtransport.server.serve import free_port
from starlette_webtransport.testing.server import running_server
from tests.browser.harness import run_page

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "getting-started.md"

REPORT = """
const report = new URLSearchParams(location.search).get("report");
await fetch(report, {
  method: "POST", body: JSON.stringify({ log: document.getElementById("log").textContent }),
});
</script>"""


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)


def write_guide_files(directory: Path) -> None:
    app, _, tests = python_blocks()
    assert app.startswith("# app.py") and tests.startswith("# test_app.py")
    (directory / "app.py").write_text(app)
    (directory / "test_app.py").write_text(tests)


def test_the_guides_tests_pass_with_the_plugin(tmp_path: Path) -> None:
    write_guide_files(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-q",
            "test_app.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


async def test_the_guides_page_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_guide_files(tmp_path)
    source = (tmp_path / "app.py").read_text()
    # The page logs to the DOM; for the test it also posts the log to the harness.
    (tmp_path / "app.py").write_text(source.replace("</script>", REPORT, 1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    from app import app  # type: ignore[import-not-found]

    http_port = free_port("127.0.0.1")
    async with running_server(app, http_port=http_port):
        result = await run_page("chromium", f"http://127.0.0.1:{http_port}/", timeout=60)
    assert result["log"].splitlines() == [
        "session open",
        "stream echo: hello over a stream",
        "datagram echo: hello datagram",
        'closed: {"closeCode":0,"reason":"done"}',
    ]
