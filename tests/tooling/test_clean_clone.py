"""A plain ``git clone`` of this repository, with nothing beside it, passes its own checks.

Running the whole of ``scripts/test`` again inside the clone would double CI's time (a second
venv, a second full suite), so the clone runs the parts that can tell a self-contained
repository from one that leans on its surroundings: the tests that read files of the repository
(the session API reference, the README's example) and ruff over the clone's tree. The clone is
made in an empty temporary folder, so a path that climbs out of the repository finds nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_clean_clone_passes_its_own_checks(tmp_path: Path) -> None:
    git = shutil.which("git")
    assert git, "git is needed to clone the repository"
    clone = tmp_path / "empty" / "starlette-webtransport"
    clone.parent.mkdir()
    cloned = run([git, "clone", "--quiet", str(REPO), str(clone)], tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    assert sorted(p.name for p in clone.parent.iterdir()) == ["starlette-webtransport"]

    tests = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/session/test_session_api_reference.py",
            "tests/test_readme.py",
        ],
        clone,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout[-1000:]

    for check in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        ruff = run([str(BIN / "ruff"), *check], clone)
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr

    patterns = ["-e", "../shared", "-e", "/work/shared"]
    itself = f":!{Path(__file__).relative_to(REPO)}"
    outside = run([git, "grep", "-n", *patterns, "--", ".", itself], clone)
    assert outside.stdout == "", f"files that read outside the repository:\n{outside.stdout}"
