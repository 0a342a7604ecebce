"""The soak's short form: 1,000 sessions from four client processes against the CLI.

``bench/soak.py`` is the harness (the long form runs 10,000+ sessions); here it runs small
enough for CI and its checks are the test: every session completes with every stream byte
echoed exactly, the server's tasks, file descriptors and objects return to their baseline
after a quiet period, its RSS stops growing, nothing is logged at ERROR, and SIGTERM ends
it within the grace period.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.timeout(240)  # about 60 s on two idle cores; CI machines are not always idle
def test_short_soak_accounts_for_every_byte_and_returns_to_baseline() -> None:
    command = [sys.executable, str(SOAK), "--sessions", "1000", "--clients", "4"]
    command += ["--concurrency", "6", "--quiet", "30", "--largest", "16384", "--json"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=230)
    lines = completed.stdout.strip().splitlines()
    assert lines, completed.stderr[-2000:]
    result = json.loads(lines[-1])
    print(json.dumps(result, indent=1))  # the figures, for the log of a failed run
    assert result["problems"] == [], result
    assert result["sessions"] == 1000 and result["failed"] == 0
    assert result["streams"] >= 2000 and result["bytes"] > 0
    assert completed.returncode == 0
