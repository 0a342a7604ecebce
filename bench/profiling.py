"""Reading the per-scenario cProfile dumps of ``bench/servers.py --profile``.

Under cProfile every Python call costs extra, so absolute times are inflated; what stays
meaningful is the share of time per function and, above all, how many times things happen
per operation (event-loop iterations, transmit passes, packets), which is where a
pure-Python QUIC server's cost comes from. Comparing two servers per operation points at
the code path that makes one of them dearer.
"""

from __future__ import annotations

import pstats
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IDLE = frozenset({"<method 'poll' of 'select.epoll' objects>"})
"""Time blocked waiting for packets: idle in a wall-clock profile, so left out."""

COUNTERS = (
    ("event-loop iterations", "asyncio/base_events.py", "_run_once"),
    ("transmit passes (datagrams_to_send)", "aioquic/quic/connection.py", "datagrams_to_send"),
    ("packets built", "aioquic/quic/packet_builder.py", "start_packet"),
    ("UDP sendto", "~", "<method 'sendto' of '_socket.socket' objects>"),
    ("UDP recvfrom", "~", "<method 'recvfrom' of '_socket.socket' objects>"),
    ("tasks created", "asyncio/base_events.py", "create_task"),
    ("timers scheduled (call_at)", "asyncio/base_events.py", "call_at"),
)
"""Per-operation counts worth comparing between servers."""

GROUPS = (
    ("starlette_webtransport", "starlette_webtransport"),
    ("pywebtransport", "pywebtransport"),
    ("hypercorn", "hypercorn"),
    ("aioquic/quic/crypto", "aioquic crypto"),
    ("aioquic/h3", "aioquic h3"),
    ("aioquic/quic", "aioquic quic"),
    ("aioquic", "aioquic other"),
    ("asyncio", "asyncio"),
    ("bench/servers.py", "echo app"),
)

Key = tuple[str, str]  # (short file, function)


@dataclass
class Profile:
    """One scenario's profile, per operation."""

    server: str
    ops: float
    own: dict[Key, float]
    """Seconds of own time per operation, per function."""
    cumulative: dict[Key, float]
    calls: dict[Key, float]
    """Calls per operation, per function."""
    lines: dict[Key, int]

    @classmethod
    def load(cls, server: str, path: Path, ops: float) -> Profile:
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        own: dict[Key, float] = {}
        cumulative: dict[Key, float] = {}
        calls: dict[Key, float] = {}
        lines: dict[Key, int] = {}
        for (filename, line, function), (_, ncalls, tottime, cumtime, _) in stats.items():
            if function in IDLE:
                continue
            key = (shorten(filename), function)
            own[key] = own.get(key, 0.0) + tottime / ops
            cumulative[key] = max(cumulative.get(key, 0.0), cumtime / ops)
            calls[key] = calls.get(key, 0.0) + ncalls / ops
            lines[key] = line
        return cls(server, ops, own, cumulative, calls, lines)

    @property
    def total(self) -> float:
        return sum(self.own.values()) or 1e-12

    def groups(self) -> dict[str, float]:
        shares: dict[str, float] = {}
        for (filename, function), seconds in self.own.items():
            group = group_of(filename, function)
            shares[group] = shares.get(group, 0.0) + seconds / self.total
        return shares

    def counter(self, filename: str, function: str) -> float:
        return sum(
            calls
            for (file, name), calls in self.calls.items()
            if name == function and file.endswith(filename)
        )

    def python_calls(self) -> float:
        return sum(calls for (file, _), calls in self.calls.items() if file != "~")


def shorten(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def group_of(filename: str, function: str) -> str:
    if filename == "~":
        if "sendto" in function or "recvfrom" in function:
            return "socket syscalls"
        if "AESGCM" in function or "crypto" in function:
            return "crypto (C)"
        return "builtins (other)"
    for marker, name in GROUPS:
        if marker in filename:
            return name
    return "other Python"


def describe(key: Key, profile: Profile) -> str:
    filename, function = key
    return f"{function} ({filename}:{profile.lines.get(key, 0)})"


def report(profile: Profile, unit: str, scale: float, top: int = 12) -> dict[str, Any]:
    """Print where one server's time goes in one scenario; return the same as data."""
    total = profile.total
    print(
        f"  {profile.server}: {scale * total:,.1f} {unit} under cProfile "
        f"({profile.python_calls():,.0f} Python calls per op)"
    )
    groups = sorted(profile.groups().items(), key=lambda item: -item[1])
    print(
        "    own time by package: "
        + ", ".join(f"{n} {100 * s:.0f}%" for n, s in groups if s >= 0.01)
    )
    print(f"    {'own%':>5} {'cum%':>6} {'calls/op':>9}  function")
    ranked = sorted(profile.own.items(), key=lambda item: -item[1])[:top]
    functions = []
    for key, seconds in ranked:
        cumulative = profile.cumulative.get(key, 0.0)
        print(
            f"    {100 * seconds / total:5.1f} {100 * cumulative / total:6.1f} "
            f"{profile.calls[key]:9.2f}  {describe(key, profile)}"
        )
        functions.append(
            {
                "function": describe(key, profile),
                "own_pct": 100 * seconds / total,
                "cum_pct": 100 * cumulative / total,
                "calls_per_op": profile.calls[key],
            }
        )
    return {
        "busy_per_op": total,
        "python_calls_per_op": profile.python_calls(),
        "groups_pct": {name: 100 * share for name, share in groups},
        "top": functions,
        "counters_per_op": {
            name: profile.counter(file, function) for name, file, function in COUNTERS
        },
    }


def compare(ours: Profile, base: Profile, unit: str, scale: float, top: int = 12) -> None:
    """Print, per operation, what ``ours`` does more of than ``base``."""
    print(f"  {ours.server} vs {base.server}, per operation:")
    print(f"    {'':36} {ours.server:>14} {base.server:>14}")
    print(
        f"    {'busy time under cProfile (' + unit + ')':36} "
        f"{scale * ours.total:14,.1f} {scale * base.total:14,.1f}"
    )
    print(
        f"    {'Python function calls':36} {ours.python_calls():14,.1f} "
        f"{base.python_calls():14,.1f}"
    )
    for name, file, function in COUNTERS:
        print(
            f"    {name:36} {ours.counter(file, function):14.2f} "
            f"{base.counter(file, function):14.2f}"
        )
    extra = sorted(
        set(ours.own) | set(base.own),
        key=lambda key: -(ours.own.get(key, 0.0) - base.own.get(key, 0.0)),
    )[:top]
    print(
        f"    largest extra own time in {ours.server} ({unit}, calls/op {ours.server} / "
        f"{base.server}):"
    )
    for key in extra:
        difference = ours.own.get(key, 0.0) - base.own.get(key, 0.0)
        if difference <= 0:
            break
        print(
            f"    {scale * difference:+9.2f}  {ours.calls.get(key, 0.0):7.2f} / "
            f"{base.calls.get(key, 0.0):<7.2f} {describe(key, ours)}"
        )
