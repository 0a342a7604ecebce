"""What a server started from the command line prints and logs.

Every serving mode (one process, ``--workers``, ``--reload``) goes through these, so the
output is the same whichever is chosen: one log format, quiet third-party loggers, and one
startup block that ends with the URLs to open.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from typing import Any

from .devcert import CERTIFICATE_HASH_PATH
from .options import ServeOptions


def freeze_startup_heap() -> None:
    """Take what the process holds once it listens (modules, the app and its routes, the
    server) out of the garbage collector's sight (``gc.freeze()``, a documented API).

    Every few dozen sessions the collector makes a full pass, and that pass walked this
    whole heap each time: 26 ms for the example app (10 ms for a bare echo), which came
    to 0.2-0.5 ms per session setup. Objects made at startup live as long as the process,
    so nothing is lost by never collecting them. Only the CLI's processes do this: a
    program that embeds ``serve()`` owns its own heap."""
    gc.collect()
    gc.freeze()


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

QUIET_LOGGERS = ("quic", "http3", "hypercorn.access")
"""aioquic's loggers and hypercorn's access log: at INFO they log every connection's
retransmitted handshake data ("Duplicate CRYPTO data") and every request, which buries
the app's own lines; they stay at WARNING unless ``--log-level debug`` asks for all."""


def configure_logging(log_level: str) -> None:
    """One format for the library's, the app's and hypercorn's lines, at ``log_level``.

    Worker processes call it too (they start from scratch), so every serving mode logs the
    same way."""
    level = log_level.upper()
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    hypercorn_log = logging.getLogger("hypercorn.error")
    hypercorn_log.setLevel(level)
    if not any(isinstance(f, _RunningOnFilter) for f in hypercorn_log.filters):
        hypercorn_log.addFilter(_RunningOnFilter())


class _RunningOnFilter(logging.Filter):
    """hypercorn's "Running on ..." lines repeat, once per listener and worker, what the
    startup banner says once; the banner is the one to read."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Running on ")


def hypercorn_logging(options: dict[str, Any]) -> dict[str, Any]:
    """hypercorn's Config with its error log going through ``logging`` as our lines do:
    by default it adds a handler of its own in its own format, so with a configured root
    logger each of its lines appeared twice."""
    options.setdefault("errorlog", logging.getLogger("hypercorn.error"))
    return options


def print_banner(sha256: bytes, binds: Sequence[str], options: ServeOptions) -> None:
    """The startup block: the certificate, the listeners, and last the URLs to open.

    A lone server and the supervisor of several workers both print it, so it reads the
    same in every serving mode."""
    http_binds = options.http_binds()
    hash_path = CERTIFICATE_HASH_PATH if options.development else None
    lines = [f"certificate sha256: {sha256.hex()}"]
    lines += [f"listening on https://{bind} (TCP and QUIC)" for bind in binds]
    lines += [f"listening on http://{bind} (TCP, plain HTTP)" for bind in http_binds]
    pages = [f"http://{_loopback(bind)}/" for bind in http_binds]
    pages = pages or [f"https://{_loopback(bind)}/" for bind in binds]
    if hash_path is not None:
        lines.append(f"certificate hash for pages: {pages[0]}{hash_path.lstrip('/')}")
    lines += [f"open {page}" for page in pages]
    print("\n".join(lines), flush=True)


def _loopback(bind: str) -> str:
    """A bind as a browser would reach it: wildcard addresses become loopback ones."""
    host, _, port = bind.rpartition(":")
    if host == "0.0.0.0":
        return f"127.0.0.1:{port}"
    if host == "[::]":
        return f"[::1]:{port}"
    return bind
