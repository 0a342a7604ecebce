"""WebTransport server benchmarks, run from one command.

    python bench/run.py [--rounds 3] [--duration 1.0] [--json PATH] [--profile SERVER]

Starts every server under test in its own process (``bench/servers.py``) and one load
client per server in another (``bench/loadclient.py``, the same aioquic code for all), so
client and server never share a core's time slice by construction. Rounds are interleaved
(each scenario runs on every server before the next scenario starts), so load from other
processes on the machine spreads over all servers instead of penalising one.

For each scenario it reports the client-side rate and the server process's CPU time per
operation (``/proc/<pid>/stat``): on a 2-core machine shared with other work the rate is
noisy and is often bounded by the (equally pure-Python) client, while CPU per operation
is what the server itself costs. Ratios against raw aioquic and pywebtransport come from
the same run. ``--profile SERVER`` runs only that server, under cProfile, one profile per
scenario, and prints where its time goes. Finally ``bench/bench_structured.py`` (structured
messages against pre-encoded bytes) runs if it exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SERVERS = ("ours", "ours-session", "aioquic", "pywebtransport")
BASELINE = "aioquic"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT = 30.0
SCENARIO_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    command: dict[str, Any]
    unit: str
    """Unit of the rate: ``ops / elapsed``."""
    op: str
    """What one op is, for CPU per op."""
    cpu_scale: float
    cpu_unit: str


def scenarios(duration: float, bulk_mib: float) -> list[Scenario]:
    return [
        Scenario(
            "bulk",
            f"bulk echo, 1 bidi stream, {bulk_mib:g} MiB",
            {"scenario": "bulk", "size_mib": bulk_mib},
            "MiB/s",
            "MiB",
            1e3,
            "ms/MiB",
        ),
        Scenario(
            "datagrams",
            "datagram echo, 200 B, window 64",
            {"scenario": "datagrams", "duration": duration, "window": 64, "size": 200},
            "dgram/s",
            "datagram",
            1e6,
            "us/dgram",
        ),
        Scenario(
            "rr-seq",
            "request/response stream, 32 B, sequential",
            {"scenario": "requests", "duration": duration, "concurrency": 1},
            "req/s",
            "request",
            1e6,
            "us/req",
        ),
        Scenario(
            "rr-c16",
            "request/response stream, 32 B, 16 concurrent",
            {"scenario": "requests", "duration": duration, "concurrency": 16},
            "req/s",
            "request",
            1e6,
            "us/req",
        ),
        Scenario(
            "setups",
            "session setup (QUIC + CONNECT + 200), sequential",
            {"scenario": "setups", "duration": duration},
            "sess/s",
            "session",
            1e3,
            "ms/sess",
        ),
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (no psutil here)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


@dataclass
class Measurement:
    rate: float
    cpu_per_op: float | None
    server_busy: float
    client_busy: float
    packets_sent: float | None
    """UDP packets the server sent per operation (counted by the client)."""
    packets_received: float | None
    """UDP packets the server received per operation (sent by the client)."""
    extra: dict[str, Any]


@dataclass
class Cell:
    runs: list[Measurement] = field(default_factory=list)
    error: str | None = None

    def median(self, attribute: str) -> float | None:
        values = [getattr(run, attribute) for run in self.runs]
        values = [value for value in values if value is not None]
        return statistics.median(values) if values else None

    def spread(self, attribute: str) -> float | None:
        """Half the min-max range as a fraction of the median: the ± of the figure."""
        values = [getattr(run, attribute) for run in self.runs]
        values = [value for value in values if value is not None]
        if len(values) < 2 or not statistics.median(values):
            return None
        return (max(values) - min(values)) / 2 / statistics.median(values)


class ServerUnderTest:
    """One server process and the load-client process that drives it."""

    def __init__(self, kind: str, profile_dir: Path | None, log_dir: Path) -> None:
        self.kind = kind
        self.profile_dir = profile_dir
        self.log_path = log_dir / f"{kind}.log"
        self.error: str | None = None
        self.profiles = 0
        command = [sys.executable, str(HERE / "servers.py"), kind]
        if profile_dir is not None:
            command += ["--profile", str(profile_dir)]
        self.log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log)
        self.client: subprocess.Popen[str] | None = None
        self.pid = 0

    def start_client(self) -> None:
        """Wait for the server's ready line, then start the client against its port."""
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

    def run(self, command: dict[str, Any], *, profile: bool = False) -> dict[str, Any]:
        assert self.client is not None and self.client.stdin and self.client.stdout
        if profile:
            os.kill(self.pid, signal.SIGUSR1)
            time.sleep(0.05)
        cpu_before = cpu_seconds(self.pid)
        self.client.stdin.write(json.dumps(command) + "\n")
        self.client.stdin.flush()
        line = read_line(self.client.stdout, SCENARIO_TIMEOUT)
        time.sleep(0.05)  # let the server finish what the last reply started
        cpu = cpu_seconds(self.pid) - cpu_before
        if profile:
            os.kill(self.pid, signal.SIGUSR2)
            self.profiles += 1
        if not line:
            return {"ok": False, "error": "the load client did not answer in time"}
        result: dict[str, Any] = json.loads(line)
        result["server_cpu"] = cpu
        return result

    def profile_path(self) -> Path | None:
        if self.profile_dir is None:
            return None
        path = self.profile_dir / f"{self.profiles}.pstats"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 0:
                time.sleep(0.1)  # the dump may still be being written
                return path
            time.sleep(0.05)
        return None

    def log_tail(self, lines: int = 8) -> str:
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
    """One line from a child's pipe, or "" if none arrives within ``timeout``."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    line = stream.readline()
    return line.decode() if isinstance(line, bytes) else str(line)


def measure(
    server: ServerUnderTest, scenario: Scenario, *, profile: bool = False
) -> Measurement | str:
    result = server.run(scenario.command, profile=profile)
    if not result.get("ok"):
        return str(result.get("error", "failed"))
    elapsed = float(result["elapsed"])
    ops = float(result["ops"])
    cpu = float(result["server_cpu"])
    extra = {
        key: value
        for key, value in result.items()
        if key
        not in (
            "ok", "ops", "elapsed", "server_cpu", "client_cpu",
            "packets_from_server", "packets_to_server",
        )
    }
    return Measurement(
        rate=ops / elapsed,
        cpu_per_op=cpu / ops * scenario.cpu_scale if ops else None,
        server_busy=cpu / elapsed,
        client_busy=float(result["client_cpu"]) / elapsed,
        packets_sent=result["packets_from_server"] / ops if ops else None,
        packets_received=result["packets_to_server"] / ops if ops else None,
        extra=extra,
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


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def print_table(
    title: str,
    rows: list[Scenario],
    servers: list[str],
    cells: dict[tuple[str, str], Cell],
    attribute: str,
    unit_of: Any,
) -> None:
    comparisons = [
        (a, b)
        for a, b in (
            ("ours", BASELINE),
            ("ours-session", BASELINE),
            ("ours", "pywebtransport"),
            ("ours-session", "pywebtransport"),
        )
        if a in servers and b in servers
    ]
    headers = ["scenario", "unit", *servers, *(f"{a}/{b}" for a, b in comparisons)]
    table = [headers]
    for scenario in rows:
        line = [scenario.name, unit_of(scenario)]
        for server in servers:
            cell = cells[scenario.name, server]
            if cell.error and not cell.runs:
                line.append("n/a (see below)")
            else:
                line.append(fmt(cell.median(attribute), cell.spread(attribute)))
        for a, b in comparisons:
            line.append(
                ratio(
                    cells[scenario.name, a].median(attribute),
                    cells[scenario.name, b].median(attribute),
                )
            )
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print(f"\n{title}")
    for index, row in enumerate(table):
        print("  ".join(text.rjust(w) if i > 1 else text.ljust(w) for i, (text, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def print_pairs(
    title: str,
    rows: list[Scenario],
    servers: list[str],
    cells: dict[tuple[str, str], Cell],
    attributes: tuple[str, str],
    scale: float,
    digits: int,
) -> None:
    """One "a/b" figure per cell, e.g. server and client CPU busy."""
    print(f"\n{title}")
    width = max(len(s) for s in servers) + 2
    print("  " + "scenario".ljust(10) + "".join(s.rjust(width) for s in servers))
    for scenario in rows:
        line = "  " + scenario.name.ljust(10)
        for server in servers:
            cell = cells[scenario.name, server]
            a, b = (cell.median(attribute) for attribute in attributes)
            text = "-" if a is None or b is None else f"{scale * a:.{digits}f}/{scale * b:.{digits}f}"
            line += text.rjust(width)
        print(line)


GROUPS = (
    ("starlette_webtransport", "starlette_webtransport (ours)"),
    ("pywebtransport", "pywebtransport"),
    ("hypercorn", "hypercorn"),
    ("aioquic/quic/crypto", "aioquic crypto"),
    ("aioquic/h3", "aioquic h3"),
    ("aioquic/quic", "aioquic quic"),
    ("aioquic", "aioquic other"),
    ("asyncio", "asyncio"),
    ("bench/servers.py", "echo app"),
)


def group_of(filename: str, function: str) -> str:
    if filename == "~":  # builtins: name the library that owns the C function if we can
        if "_crypto" in function or "encrypt" in function or "decrypt" in function:
            return "aioquic crypto (C)"
        if "sendto" in function or "recvfrom" in function or "select" in function:
            return "socket / poll syscalls"
        return "builtins (other)"
    for marker, name in GROUPS:
        if marker in filename:
            return name
    return "other Python"


def print_profile(path: Path, scenario: Scenario, top: int = 14) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1e-9
    groups: dict[str, float] = {}
    for (filename, _, function), entry in entries.items():
        key = group_of(filename, function)
        groups[key] = groups.get(key, 0.0) + entry[2]
    print(f"\nprofile: {scenario.name} ({scenario.title}); {total:.2f} s of profiled CPU")
    print("  by package (own time): " + ", ".join(
        f"{name} {100 * t / total:.0f}%" for name, t in sorted(groups.items(), key=lambda kv: -kv[1])
        if t / total >= 0.01
    ))
    print(f"  {'own%':>5} {'cum%':>5} {'calls':>8}  function")
    ranked = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    functions = []
    for (filename, line, function), (_, calls, own, cumulative, _) in ranked:
        short = shorten(filename)
        print(f"  {100 * own / total:5.1f} {100 * cumulative / total:5.1f} {calls:8d}  "
              f"{function} ({short}:{line})")
        functions.append({
            "function": function, "file": short, "line": line, "calls": calls,
            "own_pct": 100 * own / total, "cum_pct": 100 * cumulative / total,
        })
    return {"total_s": total, "groups_pct": {k: 100 * v / total for k, v in groups.items()},
            "top": functions}


def shorten(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


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
        "loadavg_start": os.getloadavg(),
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
    script = HERE / "bench_structured.py"
    if not script.exists():
        return "bench/bench_structured.py not present"
    try:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired:
        return "bench_structured.py did not finish in 90 s"
    if done.returncode != 0:
        return f"bench_structured.py failed ({done.returncode}): {done.stderr.strip()[-500:]}"
    return done.stdout.rstrip()


# --- main ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per cell")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per timed run")
    parser.add_argument("--bulk-mib", type=float, default=8.0, help="MiB in the bulk scenario")
    parser.add_argument("--only", nargs="+", default=None, help="scenario names to run")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    parser.add_argument(
        "--profile", choices=SERVERS, default=None, metavar="SERVER",
        help="run only SERVER under cProfile and print where its time goes per scenario",
    )
    parser.add_argument("--no-structured", action="store_true", help="skip bench_structured.py")
    args = parser.parse_args()

    rows = scenarios(args.duration, args.bulk_mib)
    if args.only:
        rows = [s for s in rows if s.name in args.only]
    servers: list[str] = [args.profile] if args.profile else list(args.servers)
    rounds = 1 if args.profile and args.rounds == 3 else args.rounds
    info = machine()
    print(f"{info['date']}  {info['cpu']}  {info['cores']} cores  Python {info['python']}  "
          f"load average {info['loadavg_start'][0]:.2f}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    started = time.monotonic()

    work = Path(tempfile.mkdtemp(prefix="wt-bench-"))
    profile_dir = work / "profile" if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir()
    running = {kind: ServerUnderTest(kind, profile_dir, work) for kind in servers}
    cells = {(s.name, kind): Cell() for s in rows for kind in servers}
    profiles: dict[str, Any] = {}
    checks: dict[str, str] = {}
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
        print("\nfunctional check (bidi, uni and datagram echo before any measurement):")
        for kind in servers:
            print(f"  {kind:<15} {checks[kind]}")

        # Warm-up, not recorded: first connections, lazy imports, code paths.
        warm = scenarios(min(args.duration, 0.3), min(args.bulk_mib, 1.0))
        for scenario in warm:
            if not args.only or scenario.name in args.only:
                for kind in live:
                    running[kind].run(scenario.command)

        for round_index in range(rounds):
            print(f"round {round_index + 1}/{rounds} ...", flush=True)
            for scenario in rows:
                order = live[round_index % len(live):] + live[: round_index % len(live)] if live else []
                for kind in order:
                    outcome = measure(running[kind], scenario, profile=bool(args.profile))
                    cell = cells[scenario.name, kind]
                    if isinstance(outcome, str):
                        cell.error = outcome
                    else:
                        cell.runs.append(outcome)
                    if args.profile:
                        path = running[kind].profile_path()
                        if path is not None:
                            profiles[scenario.name] = print_profile(path, scenario)
        for kind, server in running.items():
            if server.error:
                for scenario in rows:
                    cells[scenario.name, kind].error = server.error
    finally:
        for server in running.values():
            server.stop()

    note = " (under cProfile: rates are not comparable)" if args.profile else ""
    print_table(
        f"Rate, median of {rounds} run(s) ± half the min-max range{note}; "
        "ratio > 1: the first server is faster",
        rows, servers, cells, "rate", lambda s: s.unit,
    )
    print_table(
        "Server CPU per operation (from /proc/<pid>/stat, 10 ms ticks); "
        "ratio < 1: the first server is cheaper",
        rows, servers, cells, "cpu_per_op", lambda s: s.cpu_unit,
    )
    print_pairs(
        "CPU busy, % of one core (server / load client); 100 on one side = that side limits",
        rows, servers, cells, ("server_busy", "client_busy"), 100, 0,
    )
    print_pairs(
        "UDP packets per operation (sent by the server / received by the server)",
        rows, servers, cells, ("packets_sent", "packets_received"), 1, 2,
    )
    errors = [
        (name, kind, cell.error) for (name, kind), cell in cells.items() if cell.error
    ]
    if errors:
        print("\nfailures (no figure is printed for these):")
        for name, kind, error in errors:
            print(f"  {kind} / {name}: {error}")
    print(f"\nscenario details: {'; '.join(f'{s.name} = {s.title}' for s in rows)}")

    structured = None
    if not args.no_structured and not args.profile:
        print("\nbench_structured.py (structured messages vs pre-encoded bytes, in memory):")
        structured = run_structured()
        print("  " + structured.replace("\n", "\n  "))
    elapsed = time.monotonic() - started
    print(f"\ntotal {elapsed:.0f} s; load average at end {os.getloadavg()[0]:.2f}; "
          f"server logs in {work}")

    if args.json is not None:
        report = {
            "machine": {**info, "loadavg_end": os.getloadavg()},
            "versions": versions(),
            "rounds": rounds,
            "profiled": args.profile,
            "checks": checks,
            "scenarios": {
                s.name: {
                    "title": s.title, "unit": s.unit, "cpu_unit": s.cpu_unit,
                    "servers": {
                        kind: {
                            "rate_median": cells[s.name, kind].median("rate"),
                            "rate_spread": cells[s.name, kind].spread("rate"),
                            "cpu_per_op_median": cells[s.name, kind].median("cpu_per_op"),
                            "cpu_per_op_spread": cells[s.name, kind].spread("cpu_per_op"),
                            "error": cells[s.name, kind].error,
                            "runs": [vars(run) for run in cells[s.name, kind].runs],
                        }
                        for kind in servers
                    },
                }
                for s in rows
            },
            "profiles": profiles,
            "structured": structured,
            "seconds": elapsed,
        }
        args.json.write_text(json.dumps(report, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
