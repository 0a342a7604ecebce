"""Development certificates that browsers accept through ``serverCertificateHashes``.

A WebTransport page may pin a server certificate by its SHA-256 instead of trusting a CA,
which is what makes local development possible without installing a root. Browsers allow
this only for ECDSA P-256 certificates (RSA is refused) whose validity period is at most 14
days, so that is exactly what :func:`generate_certificate` makes, and what
:func:`load_certificate` checks a certificate you bring yourself against (with
:func:`~starlette_webtransport.transport.pinning.describe_certificate`, which the client
shares).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..transport.pinning import CertificateInfo, PinnedHash, describe_certificate

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
MAX_DAYS = 13
"""Browsers refuse pinned certificates valid for more than 14 days; 13 leaves a margin for
clock skew between the machine that made the certificate and the browser's."""

_BACKDATE = timedelta(minutes=1)
"""Validity starts a little in the past so a browser whose clock lags ours by a few seconds
does not see a certificate from the future."""


@dataclass(frozen=True)
class DevCertificate(PinnedHash):
    cert_pem: bytes
    key_pem: bytes
    sha256: bytes
    """SHA-256 of the certificate's DER encoding: the value browsers compare."""
    not_after: datetime


def generate_certificate(
    *, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = MAX_DAYS
) -> DevCertificate:
    """Make a self-signed ECDSA P-256 certificate for ``hosts`` (DNS names or IP addresses)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {days}")
    names = _subject_alt_names(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    not_before = datetime.now(UTC).replace(microsecond=0) - _BACKDATE
    not_after = not_before + timedelta(days=days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return DevCertificate(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        sha256=hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest(),
        not_after=not_after,
    )


def write_certificate(cert: DevCertificate, directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``; the key is readable by its
    owner only, even when it replaces an existing file."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        os.fchmod(key_file.fileno(), 0o600)
        key_file.write(cert.key_pem)
    return cert_path, key_path


def load_certificate(certfile: Path) -> CertificateInfo:
    """Read the first certificate of a PEM file (the leaf, in a chain file)."""
    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{certfile} does not hold a PEM certificate: {exc}") from None
    return describe_certificate(certificate)


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if not hosts:
        raise ValueError("a certificate needs at least one host")
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or not host.isascii() or any(c in host for c in " /:"):
                raise ValueError(f"not a DNS name or IP address: {host!r}") from None
            names.append(x509.DNSName(host))
    return names
