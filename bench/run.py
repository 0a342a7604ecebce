"""WebTransport server benchmarks, run from one command.

    python bench/run.py [--rounds 5] [--duration 1.0] [--json PATH] [--profile SERVER ...]

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
other server does more of per operation. ``bench/bench_structured.py`` (structured
messages against pre-encoded bytes) runs at the end if it exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import signal
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
SERVERS = ("ours", "ours-session", "aioquic", "pywebtransport")
BASELINE = "aioquic"
COMPARISONS = (
    ("ours", "aioquic"),
    ("ours-session", "aioquic"),
    ("ours", "pywebtransport"),
    ("ours-session", "pywebtransport"),
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (psutil is not available)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


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


class ServerUnderTest:
    """One server process and the load-client process that drives it."""

    def __init__(
        self, kind: str, work: Path, *, profile: bool, cores: tuple[int, int] | None
    ) -> None:
        self.kind = kind
        self.cores = cores
        self.error: str | None = None
        self.profile_dir = work / f"profile-{kind}" if profile else None
        self.dumps = 0
        self.log_path = work / f"{kind}.log"
        command = [sys.executable, str(HERE / "servers.py"), kind]
        if self.profile_dir is not None:
            self.profile_dir.mkdir()
            command += ["--profile", str(self.profile_dir)]
        self.log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log)
        if cores is not None:
            os.sched_setaffinity(self.server.pid, {cores[0]})
        self.client: subprocess.Popen[str] | None = None
        self.pid = 0

    def start_client(self) -> None:
        """Wait for the server's ready line, then start a client on its port."""
        assert self.server.stdout is not None
        line = read_line(self.server.stdout, STARTUP_TIMEOUT)
        if not line:
            self.error = f"did not start: {self.log_tail()}"
            return
        ready = json.loads(line)
        self.pid = int(ready["pid"])
        self.client = subprocess.Popen(
            [sys.executable, str(HERE / "loadclient.py"), "--port", str(ready["port"])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.cores is not None:
            os.sched_setaffinity(self.client.pid, {self.cores[1]})

    def run(self, command: dict[str, Any], *, profile: bool = False) -> dict[str, Any]:
        """One client command, with the server's CPU time around it."""
        assert self.client is not None and self.client.stdin and self.client.stdout
        if profile:
            os.kill(self.pid, signal.SIGUSR1)
            time.sleep(0.05)
        cpu_before = cpu_seconds(self.pid)
        self.client.stdin.write(json.dumps(command) + "\n")
        self.client.stdin.flush()
        line = read_line(self.client.stdout, SCENARIO_TIMEOUT)
        time.sleep(0.05)  # let the server finish what the last reply set off
        cpu = cpu_seconds(self.pid) - cpu_before
        if profile:
            os.kill(self.pid, signal.SIGUSR2)
            self.dumps += 1
        if not line:
            return {"ok": False, "error": "the load client did not answer in time"}
        result: dict[str, Any] = json.loads(line)
        result["server_cpu"] = cpu
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
        if self.client is not None:
            assert self.client.stdin is not None
            self.client.stdin.close()
            try:
                self.client.wait(10)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
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
    comparisons = [(a, b) for a, b in COMPARISONS if a in servers and b in servers]
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


def run_structured() -> str:
    """bench_structured.py belongs to the structured-messages developer: run it as is."""
    script = HERE / "bench_structured.py"
    if not script.exists():
        return "bench/bench_structured.py is not present"
    try:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired:
        return "bench_structured.py did not finish within 90 s"
    if done.returncode != 0:
        return f"bench_structured.py failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    return done.stdout.rstrip()


# --- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--rounds", type=int, default=None, help="runs per cell (default 5)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per timed run")
    parser.add_argument("--bulk-mib", type=float, default=8.0, help="MiB in the bulk scenario")
    parser.add_argument("--only", nargs="+", default=None, metavar="SCENARIO")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    parser.add_argument(
        "--profile",
        nargs="+",
        choices=SERVERS,
        default=None,
        metavar="SERVER",
        help="run only these servers, under cProfile, and print where their time goes",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and clients to separate cores"
    )
    parser.add_argument("--no-structured", action="store_true", help="skip bench_structured.py")
    args = parser.parse_args()

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
            if server.error is None:
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

    structured = None
    if not args.no_structured and not profiling:
        print("\nbench_structured.py (structured messages vs pre-encoded bytes, in memory):")
        structured = run_structured()
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
                        for a, b in COMPARISONS
                        if a in servers and b in servers
                    },
                }
                for s in rows
            },
            "profiles": profiles,
            "structured": structured,
            "seconds": elapsed,
        }
        args.json.write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
