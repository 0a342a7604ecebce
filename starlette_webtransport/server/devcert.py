"""The development certificate's life: made, published to local pages, replaced in time.

A lone server, the supervisor of ``--workers``/``--reload`` (one certificate for all its
workers), the pytest plugin and our own tests all make their certificate files here, so
they cover the same hosts and land in the same kind of place. :mod:`.certs` holds the
cryptography; this module holds what a server does with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import tempfile
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from hypercorn.config import Config

from .certs import DEFAULT_HOSTS, DevCertificate, generate_certificate, write_certificate
from .options import ServerState

log = logging.getLogger("starlette_webtransport.server")

CERTIFICATE_HASH_PATH = "/_webtransport/certificate-hash"
"""Where a server using a development certificate publishes its hash (JSON), so a local
page can pass it to ``serverCertificateHashes`` without copying it by hand."""

ROTATE_BEFORE = timedelta(days=2)
"""Development certificates are replaced this long before they expire (they live 13 days,
and browsers refuse pinned certificates valid for 14 days or more)."""

ROTATION_CHECK_INTERVAL = 3600.0
"""Seconds between looks at the certificate's expiry (a suspended laptop wakes late)."""

_WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class DevCertificateFiles:
    """A development certificate and the PEM files it was written to."""

    certificate: DevCertificate
    certfile: Path
    keyfile: Path

    @property
    def sha256(self) -> bytes:
        return self.certificate.sha256


def make_dev_certificate(
    hosts: Sequence[str] = (), directory: Path | None = None
) -> DevCertificateFiles:
    """A certificate for loopback and ``hosts`` (wildcard addresses left out), written to
    ``directory`` or to a fresh private temporary one."""
    names = [*DEFAULT_HOSTS, *(h for h in hosts if h not in _WILDCARDS)]
    certificate = generate_certificate(hosts=list(dict.fromkeys(names)))
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="starlette-webtransport-"))
    certfile, keyfile = write_certificate(certificate, directory)
    return DevCertificateFiles(certificate, certfile, keyfile)


def use_dev_certificate(config: Config, state: ServerState, hosts: Sequence[str]) -> None:
    """Make a development certificate, point ``config`` at it and record it in ``state``."""
    files = make_dev_certificate(hosts)
    config.certfile, config.keyfile = str(files.certfile), str(files.keyfile)
    state.certificate_sha256 = files.certificate.sha256
    state.certificate_not_after = files.certificate.not_after


async def rotate_certificates(config: Config, hosts: Sequence[str], state: ServerState) -> None:
    """Keep a development certificate pinnable: replace it before it expires.

    New QUIC connections pick the new certificate up (see ``certificate_generation``);
    open ones keep the one they were set up with.
    """
    while True:
        assert state.certificate_not_after is not None
        remaining = state.certificate_not_after - ROTATE_BEFORE - datetime.now(UTC)
        if remaining.total_seconds() > 0:
            await asyncio.sleep(min(remaining.total_seconds(), ROTATION_CHECK_INTERVAL))
            continue
        use_dev_certificate(config, state, hosts)
        state.certificate_generation += 1
        log.info("development certificate rotated: sha256 %s", state.certificate_sha256.hex())


class CertificateHashApp:
    """Answers ``GET /_webtransport/certificate-hash`` and passes everything else on."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        """A plain function returning the awaitable of whoever handles the scope: no frame
        of this wrapper stays on the stack of every session for its whole life."""
        if scope["type"] != "http" or scope["path"] != CERTIFICATE_HASH_PATH:
            return cast(Awaitable[None], self.app(scope, receive, send))
        return self._answer(send)

    async def _answer(self, send: Any) -> None:
        digest = self.state.certificate_sha256
        not_after = self.state.certificate_not_after
        body = json.dumps(
            {
                "algorithm": "sha-256",
                "hex": digest.hex(),
                "base64": base64.b64encode(digest).decode(),
                "notAfter": not_after.isoformat() if not_after else None,
                "port": self.state.port,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-store"),
                    (b"access-control-allow-origin", b"*"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
