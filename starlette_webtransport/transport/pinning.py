"""What browsers accept for ``serverCertificateHashes``, checked on any certificate.

A WebTransport client may pin a server certificate by its SHA-256 instead of trusting a
CA. Browsers allow that only for ECDSA P-256 certificates valid for at most 14 days, so the
server checks the certificate it was given and our client refuses what a browser would.
Both need it, so it lives here, free of hypercorn.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

BROWSER_PIN_LIMIT = timedelta(days=14)
"""The longest validity period browsers accept in a pinned certificate."""


class PinnedHash:
    """The forms of a certificate's SHA-256 that people paste into clients."""

    sha256: bytes

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    @property
    def sha256_base64(self) -> str:
        return base64.b64encode(self.sha256).decode("ascii")

    def js_snippet(self) -> str:
        """The ``new WebTransport(url, {...})`` option that pins this certificate."""
        values = ", ".join(str(byte) for byte in self.sha256)
        return (
            'serverCertificateHashes: [{algorithm: "sha-256", '
            f"value: Uint8Array.from([{values}])}}]"
        )


@dataclass(frozen=True)
class CertificateInfo(PinnedHash):
    """What a server or a pinning client needs to know about a certificate."""

    sha256: bytes
    not_before: datetime
    not_after: datetime
    pinning_problems: tuple[str, ...]
    """Why browsers would refuse to pin this certificate; empty when they accept it."""


def describe_certificate(certificate: x509.Certificate) -> CertificateInfo:
    """The hash of ``certificate`` and the reasons browsers would refuse to pin it."""
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    problems: list[str] = []
    public_key = certificate.public_key()
    if not (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and isinstance(public_key.curve, ec.SECP256R1)
    ):
        problems.append("the key is not ECDSA P-256")
    if not_after - not_before > BROWSER_PIN_LIMIT:
        problems.append(f"it is valid for {not_after - not_before}, more than 14 days")
    now = datetime.now(UTC)
    if not not_before <= now <= not_after:
        problems.append(f"it is valid only from {not_before} to {not_after}")
    return CertificateInfo(
        sha256=hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest(),
        not_before=not_before,
        not_after=not_after,
        pinning_problems=tuple(problems),
    )
