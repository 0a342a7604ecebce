"""Soak: many sessions from several client processes against the CLI serving the example app.

    python bench/soak.py [--sessions 10000] [--clients 4] [--concurrency 16] [--json]

The server is ``starlette-webtransport serve`` (the CLI) running ``soak:app``: the example
app with one extra route, ``/_soak/stats``, that reports the server's live asyncio tasks
and Python objects. Each client process (``soak.py client``, the project's own client)
opens its share of sessions to ``/echo``; each session sends bidirectional streams of
random sizes, a unidirectional stream and some datagrams, and checks every echoed stream
byte. After the load and a quiet period the server's tasks, file descriptors and objects
must be back at their baseline, its RSS must not have grown past the peak, nothing may be
logged at ERROR, and SIGTERM must stop it within the grace period. Prints the figures; the
exit status is 0 only if every check passed. ``tests/soak`` runs a short form in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STATS_PATH = "/_soak/stats"
GRACE = 3.0
"""The server's --graceful-timeout; SIGTERM must end it within this plus hypercorn's wait."""


# --- the server side: the example app and a stats route ------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The example app, plus the figures the harness cannot read from outside."""
    from example_app.app import app as example

    if scope["type"] != "http" or scope["path"] != STATS_PATH:
        await example(scope, receive, send)
        return
    gc.collect()
    objects = gc.get_objects()
    kinds: dict[str, int] = {}
    for item in objects:
        name = type(item).__qualname__
        kinds[name] = kinds.get(name, 0) + 1
    figures = {
        "tasks": len(asyncio.all_tasks()),
        "objects": len(objects),
        "connections": kinds.get("WebTransportQuicConnection", 0),
        "kinds": kinds,
    }
    body = json.dumps(figures)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


# --- one client process --------------------------------------------------------------


def _stream_size(rng: random.Random, largest: int) -> int:
    """Mostly small streams, a few large ones: sizes spread over orders of magnitude."""
    return min(largest, int(2 ** rng.uniform(0, 17)) if rng.random() < 0.9 else largest)


async def _session(port: int, digest: bytes, rng: random.Random, largest: int) -> dict[str, int]:
    from starlette_webtransport.client import connect
    from starlette_webtransport.session import WebTransportSession

    figures = {"streams": 0, "bytes": 0, "datagrams": 0, "echoed": 0}
    url = f"https://127.0.0.1:{port}/echo"
    async with connect(url, certificate_hashes=[digest], timeout=30) as session:
        assert isinstance(session, WebTransportSession)

        async def bidi(payload: bytes) -> None:
            stream = await session.create_bidirectional_stream()
            await stream.write(payload, end_stream=True)
            echoed = await stream.read()
            if echoed != payload:
                raise AssertionError(f"stream echo differs: {len(echoed)} of {len(payload)} bytes")
            figures["streams"] += 1
            figures["bytes"] += len(payload)

        async def uni(payload: bytes) -> None:
            stream = await session.create_unidirectional_stream()
            await stream.write(payload, end_stream=True)
            async for incoming in session.incoming_streams():
                echoed = await incoming.read()
                if echoed != payload:
                    raise AssertionError("unidirectional echo differs")
                figures["streams"] += 1
                figures["bytes"] += len(payload)
                return

        async def datagrams(count: int) -> None:
            size = min(session.datagrams.max_datagram_size, 1000)
            sent = {rng.randbytes(rng.randint(1, size)) for _ in range(count)}
            for data in sent:
                await session.datagrams.send(data)
            figures["datagrams"] += count
            try:
                async with asyncio.timeout(1.0):
                    while figures["echoed"] < count:
                        if await session.datagrams.receive() in sent:
                            figures["echoed"] += 1
            except TimeoutError:
                pass  # datagrams are unreliable: counted, never required

        async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
            for _ in range(rng.randint(1, 3)):
                tasks.create_task(bidi(rng.randbytes(_stream_size(rng, largest))))
            tasks.create_task(uni(rng.randbytes(_stream_size(rng, largest // 4))))
            tasks.create_task(datagrams(rng.randint(1, 5)))
    return figures


async def _client(
    port: int, digest: bytes, sessions: int, concurrency: int, seed: int, largest: int
) -> None:
    totals = {"sessions": 0, "failed": 0, "streams": 0, "bytes": 0, "datagrams": 0, "echoed": 0}
    errors: list[str] = []
    setups: list[float] = []
    queue = iter(range(sessions))

    async def worker() -> None:
        for index in queue:
            rng = random.Random(seed * 1_000_003 + index)
            started = time.perf_counter()
            try:
                figures = await _session(port, digest, rng, largest)
            except Exception as exc:  # counted and reported: the soak fails on any
                totals["failed"] += 1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            setups.append(time.perf_counter() - started)
            totals["sessions"] += 1
            for name, value in figures.items():
                totals[name] += value

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    setups.sort()
    p99 = setups[int(len(setups) * 0.99)] if setups else 0.0
    print(json.dumps({**totals, "errors": errors, "session_p99": round(p99, 3)}), flush=True)


# --- the harness ---------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _stats(pid: int, http_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{STATS_PATH}", timeout=10) as r:
        figures: dict[str, Any] = json.loads(r.read())
    figures["rss_kib"] = _rss_kib(pid)
    figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return figures


def _run_clients(
    port: int,
    digest: bytes,
    sessions: int,
    clients: int,
    concurrency: int,
    seed: int,
    largest: int,
) -> list[dict[str, Any]]:
    share = [sessions // clients + (i < sessions % clients) for i in range(clients)]
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, __file__, "client", str(port), digest.hex()),
                *(str(n), str(concurrency), str(seed + i), str(largest)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=_environment(),
        )
        for i, n in enumerate(share)
        if n
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=3600)
        lines = out.strip().splitlines()
        results.append(json.loads(lines[-1]) if lines else {"failed": -1, "errors": ["no output"]})
    return results


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}


def soak(
    sessions: int, clients: int, concurrency: int, quiet: float, largest: int
) -> dict[str, Any]:
    with tempfile.TemporaryFile(mode="w+") as log:
        return _soak(log, sessions, clients, concurrency, quiet, largest)


def _soak(
    log: IO[str], sessions: int, clients: int, concurrency: int, quiet: float, largest: int
) -> dict[str, Any]:
    http_port = _free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "starlette_webtransport", "serve", "soak:app", "--port", "0"),
            *("--http-port", str(http_port), "--graceful-timeout", str(GRACE)),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=_environment(),
        start_new_session=True,
    )
    try:
        port, digest = _banner(server)
        _run_clients(port, digest, max(10, sessions // 50), 1, 4, 10_000, largest)  # warm-up
        baseline, _ = _settle(server.pid, http_port, None, quiet)
        peak = baseline["rss_kib"]
        started = time.monotonic()
        runner = _Sampler(server.pid)
        results = _run_clients(port, digest, sessions, clients, concurrency, 1, largest)
        duration = time.monotonic() - started
        peak = max(peak, runner.stop())
        after_load = _rss_kib(server.pid)
        final, settled = _settle(server.pid, http_port, baseline, quiet)
        stopping = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=2 * GRACE + 10)
        stop_seconds = time.monotonic() - stopping
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    log.seek(0)
    errors = [line for line in log.read().splitlines() if " ERROR " in line or "Traceback" in line]
    total = {key: sum(r.get(key, 0) for r in results) for key in ("sessions", "failed")}
    for key in ("streams", "bytes", "datagrams", "echoed"):
        total[key] = sum(r.get(key, 0) for r in results)
    return {
        "requested": sessions,
        **total,
        "client_errors": [e for r in results for e in r.get("errors", [])][:5],
        "session_p99": max((r.get("session_p99", 0.0) for r in results), default=0.0),
        "duration": round(duration, 1),
        "baseline": baseline,
        "final": final,
        "peak_rss_kib": peak,
        "rss_after_load_kib": after_load,
        "settled_seconds": settled,
        "error_log": errors[:5],
        "exit_code": exit_code,
        "stop_seconds": round(stop_seconds, 2),
    }


def _settled(baseline: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    if now["connections"]:
        return False
    return baseline is None or (
        now["tasks"] <= baseline["tasks"]
        and now["fds"] <= baseline["fds"]
        and now["objects"] <= baseline["objects"] * 1.02 + 500
    )


def _settle(
    pid: int, http_port: int, baseline: dict[str, Any] | None, longest: float
) -> tuple[dict[str, Any], float]:
    """Wait, at most ``longest`` seconds, until the server holds no QUIC connection (each
    lingers for three probe timeouts after the peer's CONNECTION_CLOSE, which a loaded
    machine stretches to seconds) and is back at ``baseline``."""
    started = time.monotonic()
    while True:
        now = _stats(pid, http_port)
        waited = time.monotonic() - started
        if _settled(baseline, now) or waited >= longest:
            return now, round(waited, 1)
        time.sleep(0.5)


def check(result: dict[str, Any]) -> list[str]:
    """What is wrong with a soak's result; empty when it passed."""
    problems = []
    if result["sessions"] != result["requested"] or result["failed"]:
        problems.append(f"{result['failed']} of {result['requested']} sessions failed")
    baseline, final = result["baseline"], result["final"]
    for name in ("connections", "tasks", "fds"):
        if final[name] > baseline[name]:
            problems.append(f"{name}: {baseline[name]} before, {final[name]} after")
    if not _settled(baseline, final):
        grown = sorted(
            ((n - baseline["kinds"].get(k, 0), k) for k, n in final["kinds"].items()),
            reverse=True,
        )[:5]
        problems.append(
            f"objects: {baseline['objects']} before, {final['objects']} after; most grown: "
            + ", ".join(f"{kind} +{n}" for n, kind in grown)
        )
    if final["rss_kib"] > result["rss_after_load_kib"] + 2048:
        problems.append("RSS grew after the load ended")
    if result["error_log"]:
        problems.append(f"ERROR logged: {result['error_log'][0]}")
    if result["exit_code"] != 0 or result["stop_seconds"] > 2 * GRACE + 5:
        problems.append(f"exit {result['exit_code']} after {result['stop_seconds']} s")
    return problems


class _Sampler:
    """Samples the server's RSS in a thread while the clients run, for the peak."""

    def __init__(self, pid: int) -> None:
        import threading

        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pid,), daemon=True)
        self._thread.start()

    def _run(self, pid: int) -> None:
        while not self._done.wait(0.25):
            self.peak = max(self.peak, _rss_kib(pid))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def _banner(server: subprocess.Popen[str]) -> tuple[int, bytes]:
    assert server.stdout is not None
    digest = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        if line.startswith("certificate sha256: "):
            digest = bytes.fromhex(line.split(": ")[1].strip())
        elif line.startswith("listening on https://127.0.0.1:") and digest is not None:
            return int(line.split(":")[2].split()[0]), digest
    raise RuntimeError("the server did not start")


def _free_port() -> int:
    sys.path.insert(0, str(REPO))
    from starlette_webtransport.server.serve import free_port

    return free_port()


def main() -> int:
    if sys.argv[1:2] == ["client"]:
        port, digest, *numbers = sys.argv[2:8]
        sessions, concurrency, seed, largest = map(int, numbers)
        asyncio.run(_client(int(port), bytes.fromhex(digest), sessions, concurrency, seed, largest))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="sessions at once per client")
    parser.add_argument(
        "--quiet",
        type=float,
        default=20.0,
        help="seconds to wait before the baseline, and at most for the server to settle "
        "after the load (above the 7 s idle timeout: a client whose CONNECTION_CLOSE was "
        "lost under load is only seen gone by it)",
    )
    parser.add_argument("--largest", type=int, default=256 * 1024, help="largest stream, bytes")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = soak(args.sessions, args.clients, args.concurrency, args.quiet, args.largest)
    problems = check(result)
    if args.json:
        print(json.dumps({**result, "problems": problems}))
    else:
        _report(result, problems)
    return 1 if problems else 0


def _report(result: dict[str, Any], problems: list[str]) -> None:
    base, final = result["baseline"], result["final"]
    mib = 1024
    print(
        f"sessions      {result['sessions']} of {result['requested']} "
        f"({result['failed']} failed) in {result['duration']} s, p99 time per session "
        f"{result['session_p99']} s"
    )
    print(f"stream bytes  {result['bytes']} echoed byte-exact on {result['streams']} streams")
    print(f"datagrams     {result['echoed']} of {result['datagrams']} echoed")
    print(
        f"server RSS    baseline {base['rss_kib'] / mib:.1f} MiB, peak "
        f"{result['peak_rss_kib'] / mib:.1f} MiB, final {final['rss_kib'] / mib:.1f} MiB"
    )
    print(
        f"              {result['rss_after_load_kib'] / mib:.1f} MiB right after the load; "
        f"settled in {result['settled_seconds']} s"
    )
    print(f"connections   {base['connections']} -> {final['connections']}")
    print(f"tasks         {base['tasks']} -> {final['tasks']}")
    print(f"fds           {base['fds']} -> {final['fds']}")
    print(f"objects       {base['objects']} -> {final['objects']}")
    print(f"shutdown      exit {result['exit_code']} in {result['stop_seconds']} s after SIGTERM")
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    if os.environ.get("SOAK_DEBUG"):
        for kind, count in sorted(final["kinds"].items()):
            if count != base["kinds"].get(kind, 0):
                print(f"  {kind}: {base['kinds'].get(kind, 0)} -> {count}")


if __name__ == "__main__":
    sys.exit(main())
