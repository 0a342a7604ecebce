"""``starlette-webtransport``: serve an app over HTTP/3 + WebTransport, or make a dev cert.

Every ``serve`` option can also come from a ``STARLETTE_WEBTRANSPORT_*`` environment
variable, so containers and process managers need no wrapper script; a flag on the
command line wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..transport.limits import Limits
from .certs import DEFAULT_HOSTS, MAX_DAYS, generate_certificate, write_certificate
from .options import ServeOptions

ENV_PREFIX = "STARLETTE_WEBTRANSPORT_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True, kw_only=True)
class ServeSettings(ServeOptions):
    """The arguments of :func:`starlette_webtransport.server.run`: the app, how many
    processes, and the :class:`ServeOptions` every one of them serves with."""

    app: str
    workers: int = 1
    reload: bool = False
    log_level: str = "info"

    def options(self) -> ServeOptions:
        return ServeOptions(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(ServeOptions)}
        )


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (0 picks a free one)")
    return value


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive number")
    return value


def _days(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= MAX_DAYS:
        raise ValueError(f"browsers need validity under 14 days: use 1 to {MAX_DAYS}, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise ValueError(f"{text!r} is not a number of seconds")
    return value


_UNITS = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def _size(text: str) -> int:
    """Bytes, optionally with a K, M or G suffix (powers of 1024)."""
    stripped = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = _UNITS.get(stripped[-1:], 1)
    number = stripped[:-1] if scale > 1 else stripped
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (bytes, or with K/M/G)") from None
    if value < 0:
        raise ValueError(f"{text!r} is not a size (bytes, or with K/M/G)")
    return value


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.lower()


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _broadcast_url(text: str) -> str:
    if not text.startswith(("memory://", "redis://", "rediss://")):
        raise ValueError(f"{text!r} is not memory:// or redis://host:port/db")
    return text


def _hosts(text: str) -> tuple[str, ...]:
    return tuple(host.strip() for host in text.split(",") if host.strip())


@dataclass(frozen=True)
class _Setting:
    """One ``serve`` setting: its flag ``--name``, its ``STARLETTE_WEBTRANSPORT_NAME``
    variable, and the parser both go through, declared once."""

    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None


_LIMIT_DEFAULTS = Limits()

_SETTINGS: dict[str, _Setting] = {
    "app": _Setting(str, "the ASGI app to serve", "MODULE:ATTR"),
    "host": _Setting(_hosts, "address to listen on; repeat for several (default 127.0.0.1)", "H"),
    "port": _Setting(_port, "TCP and UDP port (4433)"),
    "http_port": _Setting(
        _port,
        "also serve plain HTTP (no TLS) on this TCP port: a page from "
        "http://127.0.0.1 is a secure context and can pin the certificate by hash",
        "PORT",
    ),
    "certfile": _Setting(str, "PEM certificate (chain) file", "F"),
    "keyfile": _Setting(str, "PEM private key file", "F"),
    "workers": _Setting(_positive, "worker processes sharing the port (1)", "N"),
    "reload": _Setting(_flag, "restart when source files change"),
    "log_level": _Setting(_log_level, "critical, error, warning, info (default) or debug", "LEVEL"),
    "root_path": _Setting(str, "ASGI root_path, behind a proxy", "PATH"),
    "graceful_timeout": _Setting(
        _seconds,
        "seconds sessions get to finish after SIGTERM before they are closed (5)",
        "S",
    ),
    "accept_timeout": _Setting(
        _seconds,
        f"seconds an app has to accept a CONNECT before 503 ({_LIMIT_DEFAULTS.accept_timeout:g})",
        "S",
    ),
    "pending_timeout": _Setting(
        _seconds,
        "seconds streams that arrive before their session opens are held "
        f"({_LIMIT_DEFAULTS.pending_timeout:g})",
        "S",
    ),
    "receive_memory": _Setting(
        _size,
        "received bytes waiting for apps, per worker, past which credit stops (256M)",
        "BYTES",
    ),
    "udp_buffer": _Setting(
        _size, "SO_RCVBUF and SO_SNDBUF for the UDP socket; 0 keeps the kernel's (4M)", "BYTES"
    ),
    "idle_timeout": _Setting(
        _seconds,
        "seconds of silence from a peer after which its connection and sessions end "
        f"as lost ({_LIMIT_DEFAULTS.idle_timeout:g})",
        "S",
    ),
    "keep_alive": _Setting(
        _seconds,
        "seconds of silence from a peer after which the server PINGs it, so idle "
        f"sessions stay up; 0 for none ({_LIMIT_DEFAULTS.keep_alive:g})",
        "S",
    ),
    "broadcast": _Setting(
        _broadcast_url,
        "rooms' backend: memory:// (default, one process) or redis://host:port/db",
        "URL",
    ),
}
"""Setting name -> how it is given; the environment variable is ``ENV_PREFIX + NAME``."""

_LIMITS: dict[str, tuple[str, ...]] = {
    "accept_timeout": ("accept_timeout",),
    "pending_timeout": ("pending_timeout",),
    "receive_memory": ("receive_memory",),
    "udp_buffer": ("udp_receive_buffer", "udp_send_buffer"),
    "idle_timeout": ("idle_timeout",),
    "keep_alive": ("keep_alive",),
}
"""Settings that go into :class:`Limits` -> the fields each sets (docs/reliability.md)."""


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows ``ArgumentTypeError`` messages verbatim but hides ``ValueError``'s."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starlette-webtransport",
        description="Serve Starlette/FastAPI apps with WebTransport over HTTP/3 (hypercorn).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve an ASGI app over TCP and QUIC on the same port",
        description=(
            "Serve MODULE:ATTR over HTTP/1.1, HTTP/2 and HTTP/3 with WebTransport. Without "
            "--certfile/--keyfile a 13-day development certificate is made and its SHA-256 "
            "printed, for browsers' serverCertificateHashes. Every option can also be set "
            f"as {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}PORT); flags win."
        ),
    )
    for name, setting in _SETTINGS.items():
        _add_flag(serve, name, setting)
    serve.set_defaults(handler=_serve, parser=serve)

    cert = commands.add_parser(
        "cert",
        help="write a development certificate browsers accept by hash",
        description=(
            "Write cert.pem and key.pem: a self-signed ECDSA P-256 certificate for "
            "localhost, 127.0.0.1 and ::1 that browsers accept through "
            "serverCertificateHashes (they require validity under 14 days)."
        ),
    )
    cert.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="directory (default .)"
    )
    cert.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="H",
        help="extra DNS name or IP address; repeat for several",
    )
    cert.add_argument(
        "--days",
        type=_argparse_type(_days),
        default=MAX_DAYS,
        metavar="N",
        help=f"validity in days, 1 to {MAX_DAYS} (default {MAX_DAYS})",
    )
    cert.set_defaults(handler=_cert, parser=cert)
    return parser


def _add_flag(parser: argparse.ArgumentParser, name: str, setting: _Setting) -> None:
    flag = "--" + name.replace("_", "-")
    if name == "app":
        parser.add_argument(name, nargs="?", metavar=setting.metavar, help=setting.help)
    elif name == "host":  # each flag one address; the environment lists them with commas
        parser.add_argument(flag, action="append", metavar=setting.metavar, help=setting.help)
    elif name == "reload":
        parser.add_argument(flag, action="store_true", default=None, help=setting.help)
    else:
        parser.add_argument(
            flag, type=_argparse_type(setting.parse), metavar=setting.metavar, help=setting.help
        )


def serve_settings(
    args: argparse.Namespace, environ: Mapping[str, str], parser: argparse.ArgumentParser
) -> ServeSettings:
    """Flags over environment over defaults; ``parser.error`` (exit 2) on bad input."""
    values: dict[str, Any] = {}
    for name, setting in _SETTINGS.items():
        flag = getattr(args, name)
        if flag is not None:
            values[name] = tuple(flag) if name == "host" else flag
            continue
        variable = ENV_PREFIX + name.upper()
        text = environ.get(variable)
        if text is None:
            continue
        try:
            values[name] = setting.parse(text)
        except ValueError as exc:
            parser.error(f"{variable}: {exc}")
    if "app" not in values:
        parser.error(f"the app is missing: give MODULE:ATTR or set {ENV_PREFIX}APP")
    host = values.get("host")
    if host is not None:
        if not host:
            parser.error("--host needs an address")
        values["host"] = host[0] if len(host) == 1 else host
    if ("certfile" in values) != ("keyfile" in values):
        parser.error("--certfile and --keyfile go together")
    limits: dict[str, Any] = {}
    for name, fields in _LIMITS.items():
        if name in values:
            value = values.pop(name)
            limits.update(dict.fromkeys(fields, value))
    try:
        return ServeSettings(**values, limits=replace(Limits(), **limits))
    except ValueError as exc:  # limits that contradict each other
        parser.error(str(exc))


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    settings = serve_settings(args, os.environ, parser)
    if settings.workers > 1 and not (settings.broadcast or "").startswith("redis"):
        print(
            f"starlette-webtransport: warning: with {settings.workers} workers and the "
            "memory:// broadcast backend, groups (rooms) are per process: members in "
            "different workers do not see each other; use --broadcast redis://host:port/db",
            file=sys.stderr,
        )
    from hypercorn.utils import NoAppError

    from .run import run

    try:
        return run(
            settings.app,
            settings.options(),
            workers=settings.workers,
            reload=settings.reload,
            log_level=settings.log_level,
        )
    except NoAppError as exc:
        print(f"starlette-webtransport: error: {exc}", file=sys.stderr)
        return 1


def _cert(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    hosts = [*DEFAULT_HOSTS, *args.host]
    try:
        certificate = generate_certificate(hosts=hosts, days=args.days)
    except ValueError as exc:
        parser.error(str(exc))
    certfile, keyfile = write_certificate(certificate, args.out)
    print(f"wrote {certfile} and {keyfile} (key readable by you only)")
    names = ", ".join(dict.fromkeys(hosts))
    print(f"valid until {certificate.not_after:%Y-%m-%d %H:%M} UTC for {names}")
    print(f"certificate sha256: {certificate.sha256_hex}")
    print(f"certificate sha256 (base64): {certificate.sha256_base64}")
    print(f"new WebTransport(url, {{{certificate.js_snippet()}}})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.handler
    return handler(args, args.parser)
