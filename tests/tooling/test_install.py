"""Installing without PyPI: the docs say how (a checkout, a built wheel), CI checks the wheel
in a fresh venv (``scripts/check-wheel`` from ``scripts/test``), and the wheel carries what
an installed package needs besides its modules."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shell_blocks(path: Path) -> str:
    return "\n".join(re.findall(r"```bash\n(.*?)```", path.read_text(), re.DOTALL))


def test_the_docs_say_how_to_install_from_a_checkout_and_from_a_wheel() -> None:
    for doc in (REPO / "README.md", REPO / "docs/getting-started.md"):
        commands = shell_blocks(doc)
        assert "pip install starlette-webtransport\n" not in commands, f"{doc}: not on PyPI"
        assert re.search(r"pip install (-e )?\./starlette-webtransport", commands), doc
        assert "python -m build" in commands and "pip wheel" in commands, doc
        assert re.search(
            r"pip install dist/starlette_webtransport-[\d.]+-py3-none-any\.whl", commands
        )


def test_ci_installs_the_built_wheel_into_a_fresh_venv() -> None:
    steps = (REPO / "scripts/test").read_text()
    assert re.search(r"^scripts/check-wheel\b", steps, re.MULTILINE), "scripts/test skips it"
    check = (REPO / "scripts/check-wheel").read_text()
    assert "-m build" in check and "-m venv" in check and " -e " not in check
    assert '--python-executable "$work/venv/bin/python"' in check and "--strict" in check
    assert "getting-started.md" in check


def test_the_wheel_carries_the_javascript_the_types_and_the_entry_points(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("starlette_webtransport-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entries = archive.read(entry_points).decode()
    assert {
        "starlette_webtransport/py.typed",
        "starlette_webtransport/static/structured.js",
    } <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "example_app/"))]
    assert "starlette-webtransport = starlette_webtransport.server.cli:main" in entries
    assert "starlette_webtransport = starlette_webtransport.testing.plugin" in entries
