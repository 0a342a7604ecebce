"""Each server's critical path per request, one request at a time (``rr-seq``).

    python bench/critical_path.py [--servers full asgi aioquic] [--rounds 3] [--duration 1.0]

With one request in flight, a request/response cycle is the server's time from the
request's packet to the answer's ``sendto`` plus the client's time until the next request
arrives; the rate is one over that. This prints, per server and as the median over the
rounds (servers interleaved, pinned as in ``run.py``), what that path is made of:
aioquic's own ``receive_datagram``, HTTP/3 parsing (``H3Connection.handle_event``) and
``datagrams_to_send``, the ``sendto`` (the kernel hands the packet to the client inside
it) and the rest, which is the server's own Python and event loop. ``full`` is the example
app on ``serve()`` (``bench/servers.py example``), as in ``run.py --profile``. How it is
timed: ``bench/timeline.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from run import BASELINE, ServerUnderTest, core_pair, scenarios

COLUMNS = (
    ("rate", "req/s"),
    ("cycle", "us per request, one over the rate"),
    ("path", "server: request read to answer sent"),
    ("receive", "  aioquic receive_datagram"),
    ("h3", "  aioquic H3 handle_event"),
    ("transmit", "  aioquic datagrams_to_send"),
    ("sendto", "  sendto"),
    ("rest", "  the rest: the server's own Python and loop"),
    ("outside", "cycle minus path: client and kernel"),
    ("after", "server work after the answer left"),
    ("server_cpu", "server CPU per request"),
    ("client_cpu", "client CPU per request"),
)


def figures(result: dict[str, Any], totals: dict[str, Any]) -> dict[str, float]:
    ops = result["ops"]
    answers = max(totals["answers"], 1)
    timed = ("path", "receive", "h3", "transmit", "sendto")
    per_answer = {k: totals[k] / answers / 1e3 for k in timed}
    cycle = result["elapsed"] / ops * 1e6
    return {
        "rate": ops / result["elapsed"],
        "cycle": cycle,
        **per_answer,
        "rest": per_answer["path"] - sum(per_answer[k] for k in timed[1:]),
        "outside": cycle - per_answer["path"],
        "after": totals["after"] / ops / 1e3,
        "server_cpu": result["server_cpu"] / ops * 1e6,
        "client_cpu": result.get("client_cpu", 0.0) / ops * 1e6,
        "answers": totals["answers"] / ops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", nargs="+", default=["full", "asgi", BASELINE])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args()
    command = next(s.command for s in scenarios(args.duration, 1.0) if s.name == "rr-seq")
    warm_up = next(s.command for s in scenarios(0.3, 1.0) if s.name == "rr-seq")
    work = Path(tempfile.mkdtemp(prefix="wt-critical-"))
    cores = core_pair()
    servers = {
        kind: ServerUnderTest(kind, work, profile=False, cores=cores, timeline=True)
        for kind in args.servers
    }
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in servers}
    try:
        for server in servers.values():
            server.start_client()
            if server.error:
                raise SystemExit(f"{server.kind}: {server.error}")
            server.run(warm_up)
        kinds = list(servers)
        for index in range(args.rounds):
            shift = index % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                server = servers[kind]
                server.signal_report()  # start the totals afresh
                result = server.run(command)
                if not result.get("ok"):
                    raise SystemExit(f"{kind}: {result.get('error')}")
                runs[kind].append(figures(result, server.signal_report()))
    finally:
        for server in servers.values():
            server.stop()

    medians = {
        kind: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for kind, found in runs.items()
    }
    print(
        f"rr-seq critical path, medians of {args.rounds} rounds of {args.duration:g} s, "
        f"servers pinned to CPU {cores[0] if cores else '-'}; microseconds per request"
    )
    width = max(len(label) for _, label in COLUMNS)
    print(" " * width + "".join(f"{kind:>12}" for kind in medians))
    for key, label in COLUMNS:
        row = "".join(f"{medians[kind][key]:12.1f}" for kind in medians)
        print(f"{label:<{width}}{row}")
    answers = "".join(f"{medians[kind]['answers']:12.2f}" for kind in medians)
    print(f"{'answers timed per request':<{width}}{answers}")
    base = medians.get(BASELINE)
    if base is not None:
        for kind, found in medians.items():
            if kind != BASELINE:
                print(
                    f"{kind}/{BASELINE}: rate {found['rate'] / base['rate']:.2f}, "
                    f"path {found['path'] / base['path']:.2f} "
                    f"(+{found['path'] - base['path']:.0f} us), "
                    f"the rest +{found['rest'] - base['rest']:.0f} us"
                )


if __name__ == "__main__":
    main()
