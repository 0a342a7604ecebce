"""Run a page in real headless Chromium or Firefox and collect what it reports.

The page POSTs its results as JSON to a one-shot HTTP listener on loopback whose address
it gets in the ``report`` query parameter. That needs no WebDriver, works the same in
both browsers, and keeps test hooks out of the example app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def browser_command(browser: str, url: str, profile: Path) -> list[str]:
    if browser == "chromium":
        return ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url]
    if browser == "firefox":
        # Firefox reads prefs from user.js in a fresh profile; these keep it off the network.
        (profile / "user.js").write_text(
            'user_pref("browser.shell.checkDefaultBrowser", false);\n'
            'user_pref("app.update.enabled", false);\n'
            'user_pref("datareporting.policy.dataSubmissionEnabled", false);\n'
            'user_pref("network.captive-portal-service.enabled", false);\n'
            'user_pref("network.connectivity-service.enabled", false);\n'
            'user_pref("browser.safebrowsing.update.enabled", false);\n'
            'user_pref("extensions.update.enabled", false);\n'
        )
        return ["firefox-esr", "--headless", "--no-remote", "--profile", str(profile), url]
    raise ValueError(browser)


def browser_available(browser: str) -> bool:
    return shutil.which("chromium" if browser == "chromium" else "firefox-esr") is not None


async def run_page(browser: str, url: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Open ``url`` (plus ``report=``) in ``browser``; return the JSON the page posts."""
    received: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 204 No Content\r\naccess-control-allow-origin: *\r\n"
                b"connection: close\r\n\r\n"
            )
            await writer.drain()
            if head.startswith(b"POST") and not received.done():
                received.set_result(json.loads(body))
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    separator = "&" if "?" in url else "?"
    full_url = f"{url}{separator}report=http://127.0.0.1:{port}/"
    profile = Path(tempfile.mkdtemp(prefix=f"wt-{browser}-"))
    process = await asyncio.create_subprocess_exec(
        *browser_command(browser, full_url, profile),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(profile)},
        start_new_session=True,
    )
    try:
        return await asyncio.wait_for(received, timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        server.close()
        shutil.rmtree(profile, ignore_errors=True)
