"""The example app's page in real headless Chromium and Firefox, against the real CLI.

This is the whole path a user takes: ``starlette-webtransport serve example_app.app:app``,
a page on plain HTTP (a secure context on 127.0.0.1) that fetches the development
certificate's hash and pins it with ``serverCertificateHashes``, then bidirectional,
unidirectional and datagram echo, a clean close, and typed messages.
"""

from __future__ import annotations

import pytest

from .harness import example_server, run_page

EXPECTED_CHECKS = {
    "session",
    "bidirectional echo (small)",
    "bidirectional echo (1 MiB)",
    "unidirectional echo",
    "datagram echo",
    "close with code and reason",
    "structured messages",
}


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_example_page(browser: str) -> None:
    async with example_server() as server:
        # The page pins the hash the CLI printed, which proves browsers accept it.
        url = f"{server.page}echo-checks?hash={server.fingerprint}"
        report = await run_page(browser, url, timeout=90)
    results = {r["name"]: r for r in report["results"]}
    failures = {name: r["detail"] for name, r in results.items() if not r["ok"]}
    assert not failures, f"{report['userAgent']}: {failures}"
    assert set(results) == EXPECTED_CHECKS
    assert "4000" in results["close with code and reason"]["detail"]
