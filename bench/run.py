"""WebTransport server benchmarks, run from one command.

    python bench/run.py [--rounds 5] [--duration 1.0] [--json PATH] [--profile SERVER ...]

Servers: ``full`` is what users run, the example app's ``/echo`` (Starlette routing, the
dispatcher, the session API) served by the CLI; ``asgi`` a raw ASGI app on our server;
``session`` the session API without Starlette; ``aioquic`` an echo written directly on
aioquic (the baseline); ``pywebtransport21`` pywebtransport 0.21.1 (Rust/quinn QUIC,
draft-15, from ``.venv-pwt21``); ``pywebtransport`` 0.8.1 (aioquic-based); ``full-uvloop``
(not run by default) the same CLI as ``full`` with uvloop's event loop. After the
interleaved rounds come ``--workers 1`` against ``2`` for setups and small streams, and our
memory per idle session beyond aioquic's (``--no-scaling``, ``--no-memory`` skip them).

Starts every server under test in its own process (``bench/servers.py``) and one load
client per server in another (``bench/loadclient.py``, the same aioquic code for all), so
a server never shares its process, or its core's time slices, with the load it serves.
Rounds are interleaved (every server runs a scenario before the next scenario starts, and
the server order rotates), so load from other processes on the machine spreads over all
servers instead of penalising one; ratios are the median of ratios paired per round.

For each scenario it reports the client-side rate and the server process's CPU time per
operation (``/proc/<pid>/stat``): on a small shared machine the rate is noisy and can be
bounded by the (equally pure-Python) client, while CPU per operation is what the server
itself costs. ``--profile SERVER ...`` runs only those servers under cProfile, one profile
per scenario, prints where their time goes and, with ``aioquic`` among them, what each
other server does more of per operation. At the end come ``bench/critical_path.py`` (what
one request's latency is made of in ``full``, ``asgi`` and ``aioquic``;
``--no-critical-path`` skips it) and the in-memory benches ``bench/bench_session.py`` and
``bench/bench_structured.py`` (``--no-structured`` skips them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from profiling import Profile, compare, report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = (
    "full",
    "full-uvloop",
    "asgi",
    "session",
    "aioquic",
    "pywebtransport21",
    "pywebtransport",
)
DEFAULT_SERVERS = ("full", "asgi", "aioquic", "pywebtransport21", "pywebtransport")
PROFILED = {"full": "example"}
"""The CLI cannot be profiled from outside; ``example`` is the same app on ``serve()``."""
BASELINE = "aioquic"
COMPARISONS = (
    ("full", "aioquic"),
    ("full-uvloop", "full"),
    ("asgi", "aioquic"),
    ("session", "aioquic"),
    ("full", "pywebtransport21"),
    ("asgi", "pywebtransport21"),
    ("full", "pywebtransport"),
)
PWT21_PYTHON = ROOT / ".venv-pwt21" / "bin" / "python"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
UVLOOP_CLI = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from starlette_webtransport.server.cli import main; sys.exit(main())"
)
"""``full-uvloop``: the CLI, unchanged, in a process whose ``asyncio.run`` makes uvloop's
loop (the CLI has no loop option: docs/performance.md, "uvloop", says why)."""


def comparisons_of(servers: list[str]) -> list[tuple[str, str]]:
    """The fixed comparisons among ``servers``, and this checkout against each other one."""
    found = [(a, b) for a, b in COMPARISONS if a in servers and b in servers]
    for kind in servers:
        base = kind.partition("@")[0]
        if kind != base and base in servers:
            found.append((base, kind))
    return found


def core_pair() -> tuple[int, int] | None:
    """With two or more cores, servers run on one and load clients on another: left alone,
    the scheduler tends to wake a loopback peer on the waker's core, so server and client
        would take turns on one core and each would be charged for the other's latency."""
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if len(cores) >= 2 else None


STARTUP_TIMEOUT = 30.0
SCENARIO_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    command: dict[str, Any]
    unit: str
    """Unit of the rate, ``ops / elapsed``."""
    cpu_unit: str
    cpu_scale: float
    """Seconds of CPU per op times this gives ``cpu_unit``."""


def scenarios(duration: float, bulk_mib: float) -> list[Scenario]:
    return [
        Scenario(
            "bulk",
            f"one bidi stream, upload {bulk_mib:g} MiB + FIN, read the whole echo",
            {"scenario": "bulk", "size_mib": bulk_mib},
            "MiB/s",
            "ms/MiB",
            1e3,
        ),
        Scenario(
            "datagrams",
            f"200-byte datagrams, at most 64 in flight, echoes counted for {duration:g} s",
            {"scenario": "datagrams", "duration": duration, "window": 64, "size": 200},
            "dgram/s",
            "us/dgram",
            1e6,
        ),
        Scenario(
            "rr-seq",
            f"new bidi stream, 32 B + FIN, read the echo; one at a time for {duration:g} s",
            {"scenario": "requests", "duration": duration, "concurrency": 1},
            "req/s",
            "us/req",
            1e6,
        ),
        Scenario(
            "rr-c16",
            f"the same with 16 requests in flight for {duration:g} s",
            {"scenario": "requests", "duration": duration, "concurrency": 16},
            "req/s",
            "us/req",
            1e6,
        ),
        Scenario(
            "setups",
            f"new QUIC connection + CONNECT + 200, one at a time for {duration:g} s",
            {"scenario": "setups", "duration": duration},
            "sess/s",
            "ms/sess",
            1e3,
        ),
    ]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants: the CLI's workers with ``--workers N``."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants, from /proc (psutil
    is not available)."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


@dataclass
class Measurement:
    rate: float
    cpu_per_op: float | None
    server_busy: float
    """Server CPU seconds per wall-clock second (1.0 = one core saturated)."""
    client_busy: float
    packets_sent: float | None
    """UDP packets the server sent per operation (counted by the client)."""
    packets_received: float | None
    """UDP packets the server received per operation (counted by the client)."""
    extra: dict[str, Any]


@dataclass
class Cell:
    """One scenario on one server: a measurement per round, None for a failed round."""

    runs: list[Measurement | None] = field(default_factory=list)
    error: str | None = None

    def values(self, attribute: str) -> list[float]:
        found = (getattr(run, attribute) for run in self.runs if run is not None)
        return [value for value in found if value is not None]

    def median(self, attribute: str) -> float | None:
        values = self.values(attribute)
        return statistics.median(values) if values else None

    def spread(self, attribute: str) -> float | None:
        """Half the min-max range as a fraction of the median: the ± of the figure."""
        values = self.values(attribute)
        if len(values) < 2 or not statistics.median(values):
            return None
        return (max(values) - min(values)) / 2 / statistics.median(values)


def paired_ratios(a: Cell, b: Cell, attribute: str) -> list[float]:
    """Ratios of runs measured in the same round, which share the machine's load."""
    ratios = []
    for run_a, run_b in zip(a.runs, b.runs, strict=False):
        if run_a is None or run_b is None:
            continue
        value_a, value_b = getattr(run_a, attribute), getattr(run_b, attribute)
        if value_a is not None and value_b:
            ratios.append(value_a / value_b)
    return ratios


def certificate_files(work: Path) -> tuple[str, str]:
    sys.path.insert(0, str(ROOT))
    from starlette_webtransport.server.devcert import make_dev_certificate

    files = make_dev_certificate(directory=work)
    return str(files.certfile), str(files.keyfile)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


TREES: dict[str, Path] = {}
"""Other checkouts to measure beside this one (``--tree NAME=PATH``, servers ``KIND@NAME``):
the only way to see what one change gains on a machine whose load drifts between runs."""


def server_command(
    kind: str,
    work: Path,
    *,
    workers: int = 1,
    profile_dir: Path | None,
    trace: bool = False,
    timeline: bool = False,
) -> tuple[list[str], list[str], Path]:
    """The server's command line, the load client's extra arguments and the checkout."""
    certfile, keyfile = certificate_files(work)
    kind, _, tree = kind.partition("@")
    root = TREES[tree] if tree else ROOT
    if kind in ("full", "full-uvloop") and profile_dir is None and not trace and not timeline:
        command = [sys.executable, "-m", "starlette_webtransport"]
        if kind == "full-uvloop":
            if importlib.util.find_spec("uvloop") is None:
                raise FileNotFoundError("uvloop missing: .venv/bin/pip install uvloop")
            command = [sys.executable, "-c", UVLOOP_CLI]
        command += ["serve", "example_app.app:app"]
        command += ["--host", HOST, "--port", "0", "--certfile", certfile, "--keyfile", keyfile]
        return [*command, "--workers", str(workers)], ["--path", "/echo"], root
    if kind == "pywebtransport21":
        if not PWT21_PYTHON.exists():
            raise FileNotFoundError(f"{PWT21_PYTHON} missing: run scripts/setup-pywebtransport21")
        script = str(HERE / "server_pwt21.py")
        options = ["--port", str(free_port()), "--certfile", certfile, "--keyfile", keyfile]
        return [str(PWT21_PYTHON), script, *options], ["--draft15"], root
    command = [sys.executable, str(root / "bench" / "servers.py"), PROFILED.get(kind, kind)]
    if profile_dir is not None:
        command += ["--profile", str(profile_dir)]
    if trace:
        command.append("--tracemalloc")
    if timeline:
        command.append("--timeline")
    return command, ["--path", "/echo"] if kind in PROFILED else [], root


def ready_port(line: str) -> int | None:
    """The port from a ready line: JSON from bench servers, the CLI's listening banner."""
    if line.startswith("{"):
        return int(json.loads(line)["port"])
    if line.startswith("listening on https://"):
        return int(line.split()[2].rsplit(":", 1)[1])
    return None


class ServerUnderTest:
    """One server process and the load-client processes that drive it."""

    def __init__(
        self,
        kind: str,
        work: Path,
        *,
        profile: bool,
        cores: tuple[int, int] | None,
        workers: int = 1,
        clients: int = 1,
        trace: bool = False,
        timeline: bool = False,
        label: str | None = None,
    ) -> None:
        self.kind = kind
        self.label = label or kind
        self.cores = cores
        self.clients_wanted = clients
        self.error: str | None = None
        self.profile_dir = work / f"profile-{self.label}" if profile else None
        self.dumps = 0
        self.log_path = work / f"{self.label}.log"
        self.log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.clients: list[subprocess.Popen[str]] = []
        self.pid = 0
        self.server: subprocess.Popen[bytes] | None = None
        if self.profile_dir is not None:
            self.profile_dir.mkdir()
        try:
            command, self.client_args, root = server_command(
                kind,
                work,
                workers=workers,
                profile_dir=self.profile_dir,
                trace=trace,
                timeline=timeline,
            )
        except FileNotFoundError as exc:
            self.error = str(exc)
            return
        if cores is not None:  # from the start: threads a server makes inherit it
            command = ["taskset", "-c", str(cores[0]), *command]
        # Unbuffered: the CLI prints two lines at once, and a line left in a file object's
        # buffer would be invisible to read_line's select().
        self.server = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            start_new_session=True,
            bufsize=0,
        )
        self.pid = self.server.pid  # taskset execs the command: same process

    @property
    def client(self) -> subprocess.Popen[str] | None:
        return self.clients[0] if self.clients else None

    def start_client(self) -> None:
        """Wait for the server's ready line, then start the clients on its port."""
        if self.server is None:
            return
        assert self.server.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        port = None
        while port is None:
            line = read_line(self.server.stdout, max(0.0, deadline - time.monotonic()))
            if not line:
                self.error = f"did not start: {self.log_tail()}"
                return
            port = ready_port(line)
        for _ in range(self.clients_wanted):
            command = [sys.executable, str(HERE / "loadclient.py"), "--port", str(port)]
            if self.cores is not None:
                command = ["taskset", "-c", str(self.cores[1]), *command]
            client = subprocess.Popen(
                [*command, *self.client_args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.clients.append(client)

    def run(self, command: dict[str, Any], *, profile: bool = False) -> dict[str, Any]:
        """One client command (on every client at once), with the server's CPU time over
        its timed part; ops and packets are summed over the clients, elapsed is the longest."""
        assert self.clients
        for client in self.clients:
            assert client.stdin is not None
            client.stdin.write(json.dumps(command) + "\n")
            client.stdin.flush()
        for client in self.clients:  # {"measuring": true}: connections are open
            assert client.stdout is not None
            read_line(client.stdout, SCENARIO_TIMEOUT)
        if profile:
            os.kill(self.pid, signal.SIGUSR1)
        cpu_before = cpu_seconds(self.pid)
        lines = []
        for client in self.clients:
            assert client.stdout is not None
            lines.append(read_line(client.stdout, SCENARIO_TIMEOUT))
        time.sleep(0.05)  # let the server finish what the last reply set off
        cpu = cpu_seconds(self.pid) - cpu_before
        if profile:
            os.kill(self.pid, signal.SIGUSR2)
            self.dumps += 1
        if not all(lines):
            return {"ok": False, "error": "the load client did not answer in time"}
        results: list[dict[str, Any]] = [json.loads(line) for line in lines]
        failed = [r for r in results if not r.get("ok")]
        result = failed[0] if failed else results[0]
        for key in ("ops", "packets_from_server", "packets_to_server", "client_cpu"):
            if key in result:
                result[key] = sum(r.get(key, 0) for r in results)
        if "elapsed" in result:
            result["elapsed"] = max(r["elapsed"] for r in results)
        result["server_cpu"] = cpu
        return result

    def memory(self) -> dict[str, int]:
        """The server's own memory report (``servers.py --tracemalloc``, on SIGHUP)."""
        return {key: int(value) for key, value in self.signal_report().items()}

    def signal_report(self) -> dict[str, Any]:
        """The JSON line a server prints on SIGHUP (``--tracemalloc``, ``--timeline``)."""
        assert self.server is not None and self.server.stdout is not None
        os.kill(self.pid, signal.SIGHUP)
        line = read_line(self.server.stdout, SCENARIO_TIMEOUT)
        result: dict[str, Any] = json.loads(line)
        return result

    def last_profile(self) -> Path | None:
        if self.profile_dir is None:
            return None
        path = self.profile_dir / f"{self.dumps}.pstats"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 0:
                time.sleep(0.1)  # the dump may still be being written
                return path
            time.sleep(0.05)
        return None

    def log_tail(self, lines: int = 6) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        for client in self.clients:
            assert client.stdin is not None
            client.stdin.close()
            try:
                client.wait(10)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)  # its own session: workers too
                self.server.wait()
        self.log.close()


def read_line(stream: IO[Any], timeout: float) -> str:
    """One line from a child's pipe, or "" if none arrives within ``timeout``. Children
    write one line per request, so nothing is left in the file object's buffer."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    line = stream.readline()
    return line.decode() if isinstance(line, bytes) else str(line)


def measure(server: ServerUnderTest, scenario: Scenario, *, profile: bool) -> Measurement | str:
    result = server.run(scenario.command, profile=profile)
    if not result.get("ok"):
        return str(result.get("error", "failed"))
    elapsed = float(result.pop("elapsed"))
    ops = float(result.pop("ops"))
    cpu = float(result.pop("server_cpu"))
    client_cpu = float(result.pop("client_cpu"))
    sent = result.pop("packets_from_server")
    received = result.pop("packets_to_server")
    result.pop("ok")
    return Measurement(
        rate=ops / elapsed,
        cpu_per_op=cpu / ops * scenario.cpu_scale if ops else None,
        server_busy=cpu / elapsed,
        client_busy=client_cpu / elapsed,
        packets_sent=sent / ops if ops else None,
        packets_received=received / ops if ops else None,
        extra={"ops": ops, "elapsed": elapsed, **result},
    )


# --- reporting -------------------------------------------------------------------------


def fmt(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "-"
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    text = f"{value:,.{digits}f}"
    if spread is not None:
        text += f" ±{100 * spread:.0f}%"
    return text


def print_rows(headers: list[str], rows: list[list[str]]) -> None:
    table = [headers, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for index, row in enumerate(table):
        print(
            "  ".join(
                text.ljust(width) if column < 2 else text.rjust(width)
                for column, (text, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


def print_table(
    title: str,
    rows: list[Scenario],
    servers: list[str],
    cells: dict[tuple[str, str], Cell],
    attribute: str,
    unit_of: Callable[[Scenario], str],
) -> None:
    comparisons = comparisons_of(servers)
    headers = ["scenario", "unit", *servers, *(f"{a}/{b}" for a, b in comparisons)]
    lines = []
    for scenario in rows:
        line = [scenario.name, unit_of(scenario)]
        for server in servers:
            cell = cells[scenario.name, server]
            if cell.values(attribute):
                line.append(fmt(cell.median(attribute), cell.spread(attribute)))
            else:
                line.append("n/a (below)" if cell.error else "-")
        for a, b in comparisons:
            ratios = paired_ratios(cells[scenario.name, a], cells[scenario.name, b], attribute)
            line.append(f"{statistics.median(ratios):.2f}" if ratios else "-")
        lines.append(line)
    print(f"\n{title}")
    print_rows(headers, lines)


def print_pairs(
    title: str,
    rows: list[Scenario],
    servers: list[str],
    cells: dict[tuple[str, str], Cell],
    attributes: tuple[str, str],
    scale: float,
    digits: int,
) -> None:
    """One "a / b" figure per cell."""
    lines = []
    for scenario in rows:
        line = [scenario.name, ""]
        for server in servers:
            cell = cells[scenario.name, server]
            a, b = (cell.median(attribute) for attribute in attributes)
            line.append(
                "-"
                if a is None or b is None
                else f"{scale * a:.{digits}f} / {scale * b:.{digits}f}"
            )
        lines.append(line)
    print(f"\n{title}")
    print_rows(["scenario", "", *servers], lines)


def print_details(
    rows: list[Scenario], servers: list[str], cells: dict[tuple[str, str], Cell]
) -> None:
    """Median latencies and datagram loss, which the rates alone hide."""
    lines = []
    for scenario in rows:
        line = [scenario.name, ""]
        for server in servers:
            runs = [run for run in cells[scenario.name, server].runs if run is not None]
            if runs and "p50_ms" in runs[0].extra:
                p50 = statistics.median(run.extra["p50_ms"] for run in runs)
                worst = max(run.extra["max_ms"] for run in runs)
                line.append(f"p50 {p50:.2f} ms, max {worst:.0f}")
            elif runs and "lost" in runs[0].extra:
                lost = sum(run.extra["lost"] for run in runs)
                sent = sum(run.extra["sent"] for run in runs)
                line.append(f"lost {lost} of {sent:,}")
            else:
                line.append("-")
        lines.append(line)
    print(
        "\nLatency per request or setup (median of the runs' p50, max over all runs) "
        "and datagram loss"
    )
    print_rows(["scenario", "", *servers], lines)


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg()[0],
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("aioquic", "hypercorn", "pywebtransport"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def run_script(name: str) -> str:
    """A script of ``bench/`` (critical_path.py, or an in-memory bench), run as is with no
    arguments; its output or what failed."""
    script = HERE / name
    if not script.exists():
        return f"bench/{name} is not present"
    try:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired:
        return f"{name} did not finish within 90 s"
    if done.returncode != 0:
        return f"{name} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    return done.stdout.rstrip()


# --- worker scaling and idle memory ---------------------------------------------------

SCALING_CLIENTS = 2
"""Load-client processes for the scaling runs: one client is one core's worth of load."""


def run_scaling(work: Path, duration: float, rounds: int) -> dict[str, Any]:
    """The full stack with ``--workers 1`` and ``2``, interleaved, unpinned (the workers
    may use both cores), driven by two load clients at once. Setups are new connections,
    which SO_REUSEPORT spreads over the workers; small streams use 4 connections per client,
    16 requests in flight on each."""
    commands = {
        "setups": {"scenario": "setups", "duration": duration},
        "rr-c16": {
            "scenario": "requests",
            "duration": duration,
            "concurrency": 16,
            "connections": 4,
        },
    }
    units = {"setups": ("sess/s", "ms/sess", 1e3), "rr-c16": ("req/s", "us/req", 1e6)}
    print(f"\n--workers 1 vs 2 (full stack, {SCALING_CLIENTS} load clients, unpinned)", flush=True)
    servers = {
        n: ServerUnderTest(
            "full",
            work,
            profile=False,
            cores=None,
            workers=n,
            clients=SCALING_CLIENTS,
            label=f"full-w{n}",
        )
        for n in (1, 2)
    }
    cells = {(name, n): Cell() for name in commands for n in servers}
    try:
        for server in servers.values():
            server.start_client()
            if server.error is None:
                for command in commands.values():  # warm-up
                    server.run({**command, "duration": 0.3})
        for index in range(rounds):
            order = [1, 2] if index % 2 == 0 else [2, 1]
            for name, command in commands.items():
                for n in order:
                    if servers[n].error is not None:
                        continue
                    scenario = Scenario(name, name, command, *units[name])
                    outcome = measure(servers[n], scenario, profile=False)
                    if isinstance(outcome, str):
                        cells[name, n].error = outcome
                        cells[name, n].runs.append(None)
                    else:
                        cells[name, n].runs.append(outcome)
    finally:
        for server in servers.values():
            server.stop()
    result: dict[str, Any] = {}
    lines = []
    for name in commands:
        unit, cpu_unit, _ = units[name]
        one, two = cells[name, 1], cells[name, 2]
        ratios = paired_ratios(two, one, "rate")
        ratio = statistics.median(ratios) if ratios else None
        lines.append(
            [
                name,
                unit,
                fmt(one.median("rate"), one.spread("rate")),
                fmt(two.median("rate"), two.spread("rate")),
                "-" if ratio is None else f"{ratio:.2f}",
                f"{fmt(one.median('cpu_per_op'))} / {fmt(two.median('cpu_per_op'))} {cpu_unit}",
                f"{fmt(100 * (one.median('server_busy') or 0))}"
                f" / {fmt(100 * (two.median('server_busy') or 0))} %",
            ]
        )
        result[name] = {
            "workers1": one.values("rate"),
            "workers2": two.values("rate"),
            "ratio": ratio,
            "errors": [one.error, two.error],
        }
    print_rows(
        ["scenario", "unit", "1 worker", "2 workers", "2/1", "server CPU/op", "server busy"],
        lines,
    )
    for name, n in cells:
        if cells[name, n].error or servers[n].error:
            print(f"  no figure, workers={n} / {name}: {cells[name, n].error or servers[n].error}")
    return result


def run_memory(work: Path, sessions: int) -> dict[str, Any]:
    """Memory per idle session: ``sessions`` sessions, each on its own connection, opened
    and left idle; the server's RSS and tracemalloc'd bytes before and after, per session.
    Ours is the example app on ``serve()`` (what the CLI runs); what aioquic itself holds
    per connection is measured on the aioquic echo server, so ours minus it is our own."""
    print(f"\nmemory per idle session ({sessions} sessions, each on its own connection)")
    found: dict[str, dict[str, float]] = {}
    for kind, label in (("full", "full-memory"), ("aioquic", "aioquic-memory")):
        server = ServerUnderTest(kind, work, profile=False, cores=None, trace=True, label=label)
        try:
            server.start_client()
            if server.error is not None:
                print(f"  {kind}: no figure: {server.error}")
                continue
            server.run({"scenario": "hold", "sessions": 5})  # warm-up: imports, caches
            server.run({"scenario": "release"})
            before = server.memory()
            held = server.run({"scenario": "hold", "sessions": sessions})
            if not held.get("ok"):
                print(f"  {kind}: no figure: {held.get('error')}")
                continue
            time.sleep(0.5)
            after = server.memory()
            server.run({"scenario": "release"})
            found[kind] = {key: (after[key] - before[key]) / sessions for key in before}
        finally:
            server.stop()
    lines = [
        [kind, "", f"{values['traced'] / 1024:.1f}", f"{values['rss'] / 1024:.1f}"]
        for kind, values in found.items()
    ]
    if "full" in found and "aioquic" in found:
        own = {key: found["full"][key] - found["aioquic"][key] for key in found["full"]}
        found["own"] = own
        lines.append(
            ["own (full - aioquic)", "", f"{own['traced'] / 1024:.1f}", f"{own['rss'] / 1024:.1f}"]
        )
    print_rows(["server", "", "KiB/session (tracemalloc)", "KiB/session (RSS)"], lines)
    return found


# --- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=list(DEFAULT_SERVERS),
        metavar="SERVER",
        help=f"from {', '.join(SERVERS)}; KIND@NAME runs KIND from a --tree checkout",
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another checkout (e.g. a git worktree of an older commit) to measure beside",
    )
    parser.add_argument("--rounds", type=int, default=None, help="runs per cell (default 5)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per timed run")
    parser.add_argument("--bulk-mib", type=float, default=8.0, help="MiB in the bulk scenario")
    parser.add_argument("--only", nargs="+", default=None, metavar="SCENARIO")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    parser.add_argument(
        "--profile",
        nargs="+",
        choices=[kind for kind in SERVERS if kind != "full-uvloop"],
        default=None,
        metavar="SERVER",
        help="run only these servers, under cProfile, and print where their time goes",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and clients to separate cores"
    )
    parser.add_argument(
        "--no-structured",
        action="store_true",
        help="skip the in-memory benches (bench_session.py, bench_structured.py)",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip --workers 1 vs 2")
    parser.add_argument("--no-memory", action="store_true", help="skip the idle-session memory")
    parser.add_argument(
        "--no-critical-path", action="store_true", help="skip critical_path.py (rr-seq timing)"
    )
    parser.add_argument(
        "--sessions", type=int, default=200, help="idle sessions in the memory bench"
    )
    args = parser.parse_args()
    for tree in args.tree:
        name, _, path = tree.partition("=")
        TREES[name] = Path(path).resolve()
    for kind in args.servers:
        base, _, tree = kind.partition("@")
        if base not in SERVERS or (tree and tree not in TREES):
            parser.error(f"unknown server {kind!r}: {', '.join(SERVERS)}, KIND@NAME with --tree")

    rows = scenarios(args.duration, args.bulk_mib)
    if args.only:
        rows = [s for s in rows if s.name in args.only]
    profiling = args.profile is not None
    servers: list[str] = list(args.profile or args.servers)
    rounds = args.rounds or (1 if profiling else 5)
    info = machine()
    print(
        f"{info['date']}  {info['cpu']}  {info['cores']} cores  Python {info['python']}  "
        f"load average {info['loadavg_start']:.2f}"
    )
    cores = None if args.no_pin else core_pair()
    info["pinned"] = cores
    if cores is not None:
        print(f"servers pinned to CPU {cores[0]}, load clients to CPU {cores[1]}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    started = time.monotonic()

    work = Path(tempfile.mkdtemp(prefix="wt-bench-"))
    running = {
        kind: ServerUnderTest(kind, work, profile=profiling, cores=cores) for kind in servers
    }
    cells = {(s.name, kind): Cell() for s in rows for kind in servers}
    checks: dict[str, str] = {}
    dumps: dict[tuple[str, str], Profile] = {}
    try:
        for server in running.values():
            server.start_client()
        live = []
        for kind, server in running.items():
            if server.error is None and server.clients:
                result = server.run({"scenario": "check"})
                if result.get("ok"):
                    checks[kind] = str(result["check"])
                    live.append(kind)
                    continue
                server.error = f"functional check failed: {result.get('error')}"
            checks[kind] = f"FAILED: {server.error}"
        print("\nfunctional check (bidi, uni and datagram echo, before any measurement):")
        for kind in servers:
            print(f"  {kind:<15} {checks[kind]}")

        # Warm-up, not recorded: first connections, lazy imports, cold code paths.
        for scenario in scenarios(min(args.duration, 0.3), min(args.bulk_mib, 1.0)):
            if not args.only or scenario.name in args.only:
                for kind in live:
                    running[kind].run(scenario.command)

        for round_index in range(rounds):
            print(f"round {round_index + 1}/{rounds}", flush=True)
            shift = round_index % len(live) if live else 0
            for scenario in rows:
                for kind in live[shift:] + live[:shift]:
                    outcome = measure(running[kind], scenario, profile=profiling)
                    cell = cells[scenario.name, kind]
                    if isinstance(outcome, str):
                        cell.error = outcome
                        cell.runs.append(None)
                        continue
                    cell.runs.append(outcome)
                    path = running[kind].last_profile()
                    if path is not None:
                        dumps[scenario.name, kind] = Profile.load(kind, path, outcome.extra["ops"])
        for kind, server in running.items():
            if server.error:
                for scenario in rows:
                    cells[scenario.name, kind].error = server.error
    finally:
        for server in running.values():
            server.stop()

    caveat = " (under cProfile: not comparable with normal runs)" if profiling else ""
    print_table(
        f"Rate: median of {rounds} run(s) ±half the min-max range{caveat}. "
        "Ratios: median of per-round ratios; > 1 means the first server is faster.",
        rows,
        servers,
        cells,
        "rate",
        lambda s: s.unit,
    )
    print_table(
        "Server CPU per operation (/proc/<pid>/stat, 10 ms ticks). "
        "Ratios < 1 mean the first server needs less CPU.",
        rows,
        servers,
        cells,
        "cpu_per_op",
        lambda s: s.cpu_unit,
    )
    print_pairs(
        "CPU busy, % of one core (server / load client): near 100 on one side = that side "
        "is the bottleneck",
        rows,
        servers,
        cells,
        ("server_busy", "client_busy"),
        100,
        0,
    )
    print_pairs(
        "UDP packets per operation (sent by the server / received by the server)",
        rows,
        servers,
        cells,
        ("packets_sent", "packets_received"),
        1,
        2,
    )
    print_details(rows, servers, cells)
    failures = [(name, kind, cell.error) for (name, kind), cell in cells.items() if cell.error]
    if failures:
        print("\nno figure (never a made-up one) where a server failed:")
        for name, kind, error in failures:
            print(f"  {kind} / {name}: {error}")
    print("\nscenarios:")
    for scenario in rows:
        print(f"  {scenario.name:<10} {scenario.title}")

    profiles: dict[str, Any] = {}
    for scenario in rows:
        found = [dumps[scenario.name, kind] for kind in servers if (scenario.name, kind) in dumps]
        if not found:
            continue
        print(f"\nprofile, {scenario.name} (wall time under cProfile minus time idle in epoll):")
        for profile in found:
            profiles[f"{scenario.name}/{profile.server}"] = report(
                profile, scenario.cpu_unit, scenario.cpu_scale
            )
        base = dumps.get((scenario.name, BASELINE))
        for profile in found:
            if base is not None and profile is not base:
                compare(profile, base, scenario.cpu_unit, scenario.cpu_scale)

    scaling = None
    if not args.no_scaling and not profiling:
        scaling = run_scaling(work, args.duration, max(3, rounds // 2 + 1))
    memory = None
    if not args.no_memory and not profiling:
        memory = run_memory(work, args.sessions)

    critical_path = None
    if not args.no_critical_path and not profiling:
        print("\ncritical_path.py (where one request's latency goes, rr-seq):")
        critical_path = run_script("critical_path.py")
        print(critical_path)

    structured = session_layer = None
    if not args.no_structured and not profiling:
        print("\nbench_session.py (the session API against a contract app, in memory):")
        session_layer = run_script("bench_session.py")
        print(session_layer)
        print("\nbench_structured.py (structured messages vs pre-encoded bytes, in memory):")
        structured = run_script("bench_structured.py")
        print("  " + structured.replace("\n", "\n  "))
    elapsed = time.monotonic() - started
    print(
        f"\ntotal {elapsed:.0f} s; load average at the end {os.getloadavg()[0]:.2f}; "
        f"server logs in {work}"
    )

    if args.json is not None:
        results = {
            "machine": {**info, "loadavg_end": os.getloadavg()[0]},
            "versions": versions(),
            "rounds": rounds,
            "profiled": args.profile,
            "checks": checks,
            "scenarios": {
                s.name: {
                    "title": s.title,
                    "unit": s.unit,
                    "cpu_unit": s.cpu_unit,
                    "servers": {
                        kind: {
                            "rate": cells[s.name, kind].median("rate"),
                            "rate_spread": cells[s.name, kind].spread("rate"),
                            "cpu_per_op": cells[s.name, kind].median("cpu_per_op"),
                            "cpu_per_op_spread": cells[s.name, kind].spread("cpu_per_op"),
                            "error": cells[s.name, kind].error,
                            "runs": [
                                None if run is None else asdict(run)
                                for run in cells[s.name, kind].runs
                            ],
                        }
                        for kind in servers
                    },
                    "ratios": {
                        f"{a}/{b}": {
                            attribute: paired_ratios(cells[s.name, a], cells[s.name, b], attribute)
                            for attribute in ("rate", "cpu_per_op")
                        }
                        for a, b in comparisons_of(servers)
                    },
                }
                for s in rows
            },
            "profiles": profiles,
            "scaling": scaling,
            "memory": memory,
            "session_layer": session_layer,
            "critical_path": critical_path,
            "structured": structured,
            "seconds": elapsed,
        }
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
