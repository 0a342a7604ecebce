"""Worker processes and code reloading for ``run()``.

hypercorn's own multi-worker mode shares one UDP socket between processes, so the kernel
hands each packet to any worker and QUIC connections break. Here every worker binds its own
socket with SO_REUSEPORT, which hashes the UDP 4-tuple and so keeps each connection on one
process. The certificate is made once, by the supervisor, so all workers present the same
hash to browsers, and each worker publishes it at the certificate-hash URL as a lone server
does. Workers start from nothing (``spawn``), so each sets up logging as ``run()`` did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .certs import load_certificate
from .devcert import make_dev_certificate
from .options import ServeOptions, free_port
from .serve import serve_process
from .startup import configure_logging, print_banner

RELOAD_POLL_INTERVAL = 0.5


WORKER_START_TIMEOUT = 30.0


def _worker(app: Any, options: ServeOptions, ready: Any, log_level: str) -> None:
    configure_logging(log_level)
    sys.exit(asyncio.run(serve_process(app, options, on_ready=lambda state: ready.set())))


def _wait_ready(processes: list[Any], events: list[Any]) -> bool:
    """Wait until every worker listens. Only then is the SO_REUSEPORT group complete:
    a worker joining later would re-map the UDP 4-tuples, moving established QUIC
    connections to a process that does not know them."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if all(event.is_set() for event in events):
            return True
        if not all(process.is_alive() for process in processes):
            return False
        time.sleep(0.05)
    return False


def _snapshot(root: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in root.rglob("*.py") if ".venv" not in path.parts}


def supervise(
    app: Any, options: ServeOptions, *, workers: int, reload: bool, log_level: str = "info"
) -> int:
    """Run ``workers`` server processes until SIGINT/SIGTERM; restart them on code changes."""
    if not isinstance(app, str):
        raise ValueError("workers and reload need the app as a 'module:attr' string")
    shared = options
    if options.development:
        files = make_dev_certificate(options.hosts)
        shared = dataclasses.replace(
            shared,
            certfile=str(files.certfile),
            keyfile=str(files.keyfile),
            publish_certificate_hash=True,
        )
    assert shared.certfile is not None
    sha256 = load_certificate(Path(shared.certfile)).sha256
    if shared.port == 0:  # every worker must bind the same port
        shared = dataclasses.replace(shared, port=free_port(shared.hosts[0]))
    # hypercorn sets SO_REUSEPORT on the sockets of a Config with several workers.
    shared = ServeOptions.of(shared, workers=workers)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    root = Path.cwd()
    while True:
        events = [context.Event() for _ in range(workers)]
        processes = [
            context.Process(target=_worker, args=(app, shared, event, log_level), daemon=False)
            for event in events
        ]
        for process in processes:
            process.start()
        if _wait_ready(processes, events):
            print_banner(sha256, shared.binds(), options)
        snapshot = _snapshot(root) if reload else {}
        changed = False
        while not stopping and not changed and any(p.is_alive() for p in processes):
            time.sleep(RELOAD_POLL_INTERVAL)
            changed = reload and _snapshot(root) != snapshot
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker drains its sessions
        for process in processes:
            process.join()
        if stopping or not changed:
            return 0 if stopping else max((p.exitcode or 0) for p in processes)
        print("code changed: restarting workers", flush=True)
