"""The room page at ``/`` in three real browsers at once: two headless Chromium, one Firefox.

The CLI serves the example app; each browser opens the page in the same room with the
self-test script (``example_app/static/room-selftest.js``), which plays a visitor and
reports what its page saw. Every page must see the others' chat messages, cursors and
presence; every chart must have data; Ada leaves once everyone has seen everyone, and the
others must show her as gone within :data:`LEAVE_BOUND` seconds. In the first test her
browser crashes instead (SIGKILL to all its processes: no close of any kind reaches the
server), and the others must show her as gone within :data:`CRASH_BOUND` seconds, which
only the server's default keep-alive and idle timeout can achieve. Alan's page is
photographed when it reports: ``ROOM_SCREENSHOT=docs/room.png`` keeps the picture the
README shows.

The second test runs the same room on ``--workers 2`` with a Redis broadcast URL. The
kernel picks each connection's worker (SO_REUSEPORT hashes the UDP addresses), so Alan's
page rejoins while everyone is on its worker (``spread=1``, at most 12 sessions); the
pages report the pid of the worker that serves them, and the test requires two. The third
kills a Firefox instead (Grace), seen from a Chromium page. No test's server log may show
an ERROR: a leave and a crash are ordinary ends of a session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.broadcast.conftest import RedisServer

from .harness import SCREEN, ExampleServer, example_server, run_page

PAGES = (("chromium", "Ada"), ("firefox", "Grace"), ("chromium", "Alan"))
PHOTOGRAPHER = "Alan"
LEAVE_BOUND = 3.0
"""Seconds between Ada closing her session and the other pages no longer listing her: a
closed session is announced as a leave at once, so this only allows for a busy machine."""
CRASH_BOUND = 10.0
"""Seconds between a browser being killed and the other pages no longer listing its
visitor: the bound the default limits promise for a lost peer (idle timeout 7 s,
keep-alive 2 s); a 15 s idle timeout fails it."""
CRASH_NOTICED_AFTER = 3.0
"""A killed browser sends nothing, so it is noticed no sooner than this (the idle timeout
counts from its last packet, a few ms before the kill); a sooner leave means it closed."""
PAGE_DEADLINE = 40
"""The self-test reports what it has seen after this many seconds, so a failure reads
as a list of what was missing rather than as a timeout."""
SECRET = {"EXAMPLE_ROOM_SECRET": "shared by every worker of the test server"}


@dataclass(frozen=True)
class Cast:
    """Who opens the room page, who of them departs and how, and who is photographed."""

    pages: tuple[tuple[str, str], ...] = PAGES
    leaver: str = "Ada"
    crash: bool = False
    """The leaver's browser is killed once its page has reported, instead of leaving."""
    photographer: str = PHOTOGRAPHER
    """Whose page is photographed when it reports, if the test asks for a picture."""

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.pages]


ADA_CRASHES = Cast(crash=True)
GRACE_CRASHES = Cast(pages=(("firefox", "Grace"), ("chromium", "Alan")), leaver="Grace", crash=True)


async def open_room(
    server: ExampleServer,
    room: str,
    screenshot: Path | None,
    cast: Cast = Cast(),
    *,
    spread: bool = False,
) -> dict[str, dict[str, Any]]:
    async def page(browser: str, name: str) -> dict[str, Any]:
        leaves = name == cast.leaver
        query = {
            "room": room,
            "name": name,
            "hash": server.fingerprint,  # the hash the CLI printed: browsers accept it
            "expect": len(cast.pages),
            "leaver": cast.leaver,
            "deadline": PAGE_DEADLINE,
            # The others stay longer, so that the picture shows them live.
            "linger": 3 if name == cast.photographer else 6,
            **({"spread": 1} if spread and name == cast.photographer else {}),
            **({"crash": 1} if cast.crash and leaves else {}),
        }
        url = f"{server.page}?{urlencode(query)}"
        shot = screenshot if name == cast.photographer else None
        report = await run_page(
            browser,
            url,
            timeout=PAGE_DEADLINE + 15,
            screenshot=shot,
            crash=cast.crash and leaves,  # killed as soon as it has reported
        )
        return {**report, "browser": browser}

    # A TaskGroup: if one page fails, the others are cancelled and their browsers stopped.
    async with asyncio.TaskGroup() as pages:
        tasks = [pages.create_task(page(browser, name)) for browser, name in cast.pages]
    return {task.result()["name"]: task.result() for task in tasks}


def check_room(
    reports: dict[str, dict[str, Any]], screenshot: Path | None, cast: Cast = Cast()
) -> None:
    for name, report in reports.items():
        who = f"{name} ({report['browser']}, {report['userAgent']})"
        assert not report["errors"], f"{who}: {report['errors']}; status {report['status']!r}"
        for other in cast.names:
            if other == name:
                continue
            seen = report["seen"].get(other)
            assert seen is not None, f"{who} never saw {other}: {report['seen']}"
            assert seen["joins"] >= 1, f"{who} saw no presence of {other}"
            assert seen["chats"] >= 1, f"{who} got no chat message from {other}"
            assert seen["cursors"] >= 5, f"{who} got {seen['cursors']} cursor updates of {other}"
        for title, chart in report["charts"].items():
            assert len(chart["values"]) >= 3 and chart["points"] == len(chart["values"]), (
                f"{who}: the chart {title!r} has no data: {chart}"
            )
        if name == cast.leaver:
            continue
        charts = report["charts"]
        assert max(charts["round-trip time"]["values"]) > 0, (who, report["sources"])
        assert max(charts["datagrams/s sent"]["values"]) > 0, who
        assert max(charts["datagrams/s received"]["values"]) > 0, who
        assert max(charts["open streams"]["values"]) >= 1, who
        assert max(charts["kB/s out"]["values"]) > 0 and max(charts["kB/s in"]["values"]) > 0
        assert report["view"]["pid"] == report["pid"], f"{who}: {report['view']}"
        # The leaver left or crashed: shown as gone, in time, while the others are listed.
        left_at = reports[cast.leaver]["stoppedAt" if cast.crash else "leftAt"]
        gone_after = (report["leaverGoneAt"] - left_at) / 1000
        # A crash closes nothing, so only the idle timeout can notice it: sooner would
        # mean the browser was not killed abruptly and the bound not tested.
        least, bound = (CRASH_NOTICED_AFTER, CRASH_BOUND) if cast.crash else (0, LEAVE_BOUND)
        assert least < gone_after <= bound, (
            f"{who} showed {cast.leaver} as gone after {gone_after} s"
        )
        assert sorted(report["peopleShown"]) == sorted(set(cast.names) - {cast.leaver}), who
    if screenshot is None:
        return
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == SCREEN
    if target := os.environ.get("ROOM_SCREENSHOT"):
        shutil.copyfile(screenshot, target)


async def test_room_page_in_two_chromium_pages_and_firefox(tmp_path: Path) -> None:
    screenshot = tmp_path / "room.png"
    async with example_server(env=SECRET) as server:
        # The URL to open comes last, where a user looks for it.
        assert server.output[-1].strip() == f"open {server.page}", server.output
        reports = await open_room(server, "demo", screenshot, ADA_CRASHES)
    check_room(reports, screenshot, ADA_CRASHES)
    assert len({report["pid"] for report in reports.values()}) == 1
    log = "".join(server.output)
    assert "ERROR" not in log and "Traceback" not in log, log


async def test_room_page_on_two_workers_with_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    screenshot = tmp_path / "room.png"
    options = ("--workers", "2", "--broadcast", redis_server.url)
    async with example_server(*options, env=SECRET) as server:
        reports = await open_room(server, "workers", screenshot, spread=True)
    check_room(reports, screenshot)
    pids = {name: report["pid"] for name, report in reports.items()}
    sessions = reports[PHOTOGRAPHER]["pids"]  # the worker of each of Alan's sessions
    assert len(set(pids.values())) == 2, f"all on one worker: {pids}; {PHOTOGRAPHER}: {sessions}"
    log = "".join(server.output)
    assert "ERROR" not in log and "Traceback" not in log, log


async def test_room_page_sees_a_crashed_firefox_gone() -> None:
    """The same for a killed Firefox (all its processes), seen from a Chromium page."""
    async with example_server(env=SECRET) as server:
        reports = await open_room(server, "crash", None, GRACE_CRASHES)
    check_room(reports, None, GRACE_CRASHES)
    log = "".join(server.output)
    assert "ERROR" not in log and "Traceback" not in log, log
