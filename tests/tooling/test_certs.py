import base64
import hashlib
import ipaddress
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from starlette_webtransport.server.certs import (
    DevCertificate,
    generate_certificate,
    load_certificate,
    write_certificate,
)


@pytest.fixture(scope="module")
def dev_cert() -> DevCertificate:
    return generate_certificate()


def test_key_is_ecdsa_p256_and_matches_certificate(dev_cert: DevCertificate) -> None:
    certificate = x509.load_pem_x509_certificate(dev_cert.cert_pem)
    key = serialization.load_pem_private_key(dev_cert.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)


def test_validity_is_under_browser_limit_and_started(dev_cert: DevCertificate) -> None:
    certificate = x509.load_pem_x509_certificate(dev_cert.cert_pem)
    start = certificate.not_valid_before_utc
    end = certificate.not_valid_after_utc
    now = datetime.now(UTC)
    assert end - start < timedelta(days=14)
    assert end - start == timedelta(days=13)
    assert timedelta(seconds=30) < now - start < timedelta(minutes=5)
    assert dev_cert.not_after == end


def test_default_subject_alt_names(dev_cert: DevCertificate) -> None:
    certificate = x509.load_pem_x509_certificate(dev_cert.cert_pem)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_extra_hosts_and_days() -> None:
    cert = generate_certificate(hosts=["localhost", "dev.example", "10.0.0.7"], days=3)
    certificate = x509.load_pem_x509_certificate(cert.cert_pem)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "dev.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert validity == timedelta(days=3)


def test_hash_is_sha256_of_der(dev_cert: DevCertificate) -> None:
    der = x509.load_pem_x509_certificate(dev_cert.cert_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).digest()
    assert dev_cert.sha256 == digest
    assert dev_cert.sha256_hex == digest.hex()
    assert base64.b64decode(dev_cert.sha256_base64) == digest


def test_js_snippet_carries_the_hash_bytes(dev_cert: DevCertificate) -> None:
    snippet = dev_cert.js_snippet()
    match = re.fullmatch(
        r'serverCertificateHashes: \[\{algorithm: "sha-256", '
        r"value: Uint8Array\.from\(\[([0-9, ]+)\]\)\}\]",
        snippet,
    )
    assert match is not None, snippet
    assert bytes(int(v) for v in match.group(1).split(", ")) == dev_cert.sha256


def test_each_certificate_is_fresh() -> None:
    first, second = generate_certificate(), generate_certificate()
    assert first.sha256 != second.sha256
    assert first.key_pem != second.key_pem


@pytest.mark.parametrize("days", [0, 14, 30, -1])
def test_days_outside_browser_range_rejected(days: int) -> None:
    with pytest.raises(ValueError, match="days must be between 1 and 13"):
        generate_certificate(days=days)


@pytest.mark.parametrize("hosts", [[], ["bad host"], ["[::1]"], [""], ["bücher.example"]])
def test_bad_hosts_rejected(hosts: list[str]) -> None:
    with pytest.raises(ValueError):
        generate_certificate(hosts=hosts)


def test_write_and_load_round_trip(dev_cert: DevCertificate, tmp_path: Path) -> None:
    cert_path, key_path = write_certificate(dev_cert, tmp_path / "certs")
    assert cert_path.read_bytes() == dev_cert.cert_pem
    assert key_path.read_bytes() == dev_cert.key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    info = load_certificate(cert_path)
    assert info.sha256 == dev_cert.sha256
    assert info.not_after == dev_cert.not_after
    assert info.pinning_problems == ()


def test_write_tightens_an_existing_key_file(dev_cert: DevCertificate, tmp_path: Path) -> None:
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(b"old")
    key_path.chmod(0o644)
    write_certificate(dev_cert, tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes() == dev_cert.key_pem


def _write_rsa_certificate(path: Path, days: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    start = datetime.now(UTC) - timedelta(minutes=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def test_load_reports_why_browsers_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    _write_rsa_certificate(path, days=30)
    problems = load_certificate(path).pinning_problems
    assert len(problems) == 2
    assert "not ECDSA P-256" in problems[0]
    assert "more than 14 days" in problems[1]


def test_load_rejects_non_certificate(tmp_path: Path) -> None:
    path = tmp_path / "junk.pem"
    path.write_bytes(b"not a certificate")
    with pytest.raises(ValueError, match="does not hold a PEM certificate"):
        load_certificate(path)
