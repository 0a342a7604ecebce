"""Run the example app with the CLI, and pages in real headless Chromium or Firefox.

A page POSTs its results as JSON to a one-shot HTTP listener on loopback whose address
it gets in the ``report`` query parameter. That needs no WebDriver, works the same in
both browsers, and keeps test hooks out of the example app. A Chromium page can also be
photographed once it has reported, over the DevTools protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from starlette_webtransport.server.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREEN = (1280, 720)

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


@dataclass
class ExampleServer:
    """The CLI serving ``example_app.app:app``, with everything it has printed so far."""

    port: int
    http_port: int
    fingerprint: str
    output: list[str] = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"


@contextlib.asynccontextmanager
async def example_server(
    *options: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[ExampleServer]:
    """``starlette-webtransport serve example_app.app:app`` with ``options`` (``--workers``,
    ``--broadcast``...) on free loopback ports; stopped with SIGTERM, which must exit 0.
    Its output is read all along (a full pipe would stall it) and kept for assertions."""
    port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "starlette_webtransport", "serve", "example_app.app:app"),
        *("--host", "127.0.0.1", "--port", str(port), "--http-port", str(http_port), *options),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )
    assert process.stdout is not None
    stdout = process.stdout
    output: list[str] = []

    async def drain() -> None:
        while line := await stdout.readline():
            output.append(line.decode(errors="replace"))

    reader = asyncio.create_task(drain())
    try:
        async with asyncio.timeout(30):
            while not any(line.startswith("open ") for line in output):
                if reader.done():
                    raise RuntimeError("the server exited:\n" + "".join(output))
                await asyncio.sleep(0.05)
        (fingerprint,) = [
            line.split(": ", 1)[1].strip()
            for line in output
            if line.startswith("certificate sha256: ")
        ]
        assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
        yield ExampleServer(port, http_port, fingerprint, output)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await asyncio.wait_for(reader, 5)
        assert process.returncode == 0, "".join(output)


def browser_command(browser: str, url: str, profile: Path, extra: Sequence[str] = ()) -> list[str]:
    if browser == "chromium":
        return ["chromium", *CHROMIUM_FLAGS, *extra, f"--user-data-dir={profile}", url]
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


async def run_page(
    browser: str,
    url: str,
    *,
    timeout: float = 60.0,
    screenshot: Path | None = None,
    crash: bool = False,
) -> dict[str, Any]:
    """Open ``url`` (plus ``report=``) in ``browser``; return the JSON the page posts.

    With ``screenshot`` (Chromium only) the page, as it is when it reports, is saved
    there as a PNG of :data:`SCREEN` size. The browser is stopped once the page has
    reported: with SIGTERM, or with ``crash`` with SIGKILL to all its processes, as a
    crash would, so that it closes nothing (no ``pagehide``, no QUIC close). The report
    gets ``stoppedAt``: when the signal was sent, in ms on the clock of ``Date.now()``."""
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
    extra: list[str] = []
    if screenshot is not None:
        if browser != "chromium":
            raise ValueError("screenshots are taken with Chromium's DevTools protocol")
        extra = ["--remote-debugging-port=0", f"--window-size={SCREEN[0]},{SCREEN[1]}"]
    process = await asyncio.create_subprocess_exec(
        *browser_command(browser, full_url, profile, extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(profile)},
        start_new_session=True,
    )
    report: dict[str, Any] | None = None
    try:
        try:
            report = await asyncio.wait_for(received, timeout)
        except TimeoutError:
            message = f"the {browser} page {url} did not report within {timeout} s"
            raise AssertionError(message) from None
        if screenshot is not None:
            await asyncio.wait_for(capture(profile, full_url, screenshot), 20)
        return report
    finally:
        if report is not None:
            report["stoppedAt"] = time.time() * 1000
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        server.close()
        shutil.rmtree(profile, ignore_errors=True)


async def capture(profile: Path, url: str, path: Path) -> None:
    """Save a screenshot of the Chromium tab showing ``url``: the DevTools port is in the
    profile's ``DevToolsActivePort`` file once the browser listens."""
    port_file = profile / "DevToolsActivePort"
    while not port_file.exists() or not port_file.read_text().strip():
        await asyncio.sleep(0.05)
    port = int(port_file.read_text().split()[0])
    async with httpx.AsyncClient() as client:
        targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
    (target,) = [t for t in targets if t.get("type") == "page" and t.get("url") == url]
    async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as devtools:
        clip = {"x": 0, "y": 0, "width": SCREEN[0], "height": SCREEN[1], "scale": 1}
        params = {"format": "png", "clip": clip, "captureBeyondViewport": True}
        request = {"id": 1, "method": "Page.captureScreenshot", "params": params}
        await devtools.send(json.dumps(request))
        while True:
            answer = json.loads(await devtools.recv())
            if answer.get("id") == 1:
                break
    await asyncio.to_thread(path.write_bytes, base64.b64decode(answer["result"]["data"]))
