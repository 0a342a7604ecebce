"""Worker processes and code reloading for ``run()``.

hypercorn's own multi-worker mode shares one UDP socket between processes, so the kernel
hands each packet to any worker and QUIC connections break. Here every worker binds its own
socket with SO_REUSEPORT, which hashes the UDP 4-tuple and so keeps each connection on one
process. The certificate is made once, by the supervisor, so all workers present the same
hash to browsers, and each worker publishes it at the certificate-hash URL as a lone server
does. Workers start from nothing (``spawn``), so each sets up logging as ``run()`` did.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .certs import generate_certificate, load_certificate, write_certificate
from .serve import CERTIFICATE_HASH_PATH, _binds, free_port
from .startup import configure_logging, print_banner

RELOAD_POLL_INTERVAL = 0.5


WORKER_START_TIMEOUT = 30.0


def _worker(app: Any, serve_kwargs: dict[str, Any], ready: Any, log_level: str) -> None:
    import asyncio

    from .serve import _run_one

    configure_logging(log_level)
    sys.exit(asyncio.run(_run_one(app, on_ready=lambda state: ready.set(), **serve_kwargs)))


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
    app: Any, *, workers: int, reload: bool, serve_kwargs: dict[str, Any], log_level: str = "info"
) -> int:
    """Run ``workers`` server processes until SIGINT/SIGTERM; restart them on code changes."""
    if not isinstance(app, str):
        raise ValueError("workers and reload need the app as a 'module:attr' string")
    kwargs = dict(serve_kwargs)
    development = kwargs.get("certfile") is None
    if development:
        certificate = generate_certificate()
        certfile, keyfile = write_certificate(
            certificate, Path(tempfile.mkdtemp(prefix="starlette-webtransport-"))
        )
        kwargs["certfile"], kwargs["keyfile"] = str(certfile), str(keyfile)
        kwargs["publish_certificate_hash"] = True
    sha256 = load_certificate(Path(kwargs["certfile"])).sha256
    if kwargs.get("port") == 0:  # every worker must bind the same port
        host = kwargs.get("host", "127.0.0.1")
        kwargs["port"] = free_port(host if isinstance(host, str) else host[0])
    kwargs["workers"] = workers
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
            context.Process(target=_worker, args=(app, kwargs, event, log_level), daemon=False)
            for event in events
        ]
        for process in processes:
            process.start()
        if _wait_ready(processes, events):
            host = kwargs.get("host", "127.0.0.1")
            http_port = kwargs.get("http_port")
            print_banner(
                sha256,
                _binds(host, kwargs["port"]),
                _binds(host, http_port) if http_port is not None else [],
                hash_path=CERTIFICATE_HASH_PATH if development else None,
            )
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
