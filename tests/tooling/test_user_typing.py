"""User code outside the checkout type-checks against the installed package.

``scripts/setup`` installs the package editable; setuptools' default editable mode is an
import hook that mypy cannot follow, so a user's module in another folder saw no
``starlette_webtransport`` at all. This runs ``mypy --strict`` the way a user would: from a
folder of their own, with nothing on ``MYPYPATH`` or ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
USER_MODULE = Path(__file__).with_name("typed_user_app.py")


def mypy_strict(directory: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env["MYPY_CACHE_DIR"] = str(REPO / ".mypy_cache")  # warm: the stdlib and Starlette are there
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *files],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_users_module_outside_the_checkout_passes_mypy_strict(tmp_path: Path) -> None:
    shutil.copy(USER_MODULE, tmp_path / "user_app.py")
    result = mypy_strict(tmp_path, "user_app.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "import-not-found" not in result.stdout
