"""The example app's page in real headless Chromium and Firefox, against the real CLI.

This is the whole path a user takes: ``starlette-webtransport serve example_app.app:app``,
a page on plain HTTP (a secure context on 127.0.0.1) that fetches the development
certificate's hash and pins it with ``serverCertificateHashes``, then bidirectional,
unidirectional and datagram echo, a clean close, and typed messages.

It also tries what a page may do to one session and expect it to go on: datagrams of
every size up to the page's own ``maxDatagramSize`` (read at ``ready`` and again two
seconds later: Firefox raises it in between), each echoed byte-exact; and one of two
echoed streams reset mid-echo, after which the other finishes its echo and a new stream
and a datagram still echo on the same session. The server's log must stay free of errors.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from .harness import SCREEN, example_server, run_page

EXPECTED_CHECKS = {
    "session",
    "bidirectional echo (small)",
    "bidirectional echo (1 MiB)",
    "unidirectional echo",
    "datagram echo",
    "datagrams up to maxDatagramSize",
    "stream reset mid-echo",
    "close with code and reason",
    "structured messages",
}
SMALLEST_LIMIT = 1024
"""No browser offers a page less than this ``maxDatagramSize`` on loopback (Firefox's value
at ``ready``); a smaller one would mean the server advertises too little."""


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_example_page(browser: str, tmp_path: Path) -> None:
    # Chromium's page is photographed as it is when it reports: every row, as a user sees it.
    screenshot = tmp_path / "echo-checks.png" if browser == "chromium" else None
    async with example_server() as server:
        # The page pins the hash the CLI printed, which proves browsers accept it.
        url = f"{server.page}echo-checks?hash={server.fingerprint}"
        report = await run_page(browser, url, timeout=90, screenshot=screenshot)
    results = {r["name"]: r for r in report["results"]}
    failures = {name: r["detail"] for name, r in results.items() if not r["ok"]}
    assert not failures, f"{report['userAgent']}: {failures}"
    assert set(results) == EXPECTED_CHECKS
    assert "4000" in results["close with code and reason"]["detail"]
    # The page tested the limit it had at the end, and that limit itself was echoed.
    limits = report["measured"]["maxDatagramSize"]
    assert SMALLEST_LIMIT <= limits["ready"] <= limits["later"], limits
    assert max(limits["echoed"]) == limits["later"], limits
    assert limits["ready"] in limits["echoed"], limits
    log = "".join(server.output)
    assert "ERROR" not in log and "Traceback" not in log, log
    if screenshot is not None:
        png = screenshot.read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert struct.unpack(">II", png[16:24]) == SCREEN
