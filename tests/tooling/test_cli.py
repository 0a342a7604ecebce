import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from starlette_webtransport.server import cli
from starlette_webtransport.server.certs import load_certificate
from starlette_webtransport.server.cli import ServeSettings, build_parser, main, serve_settings

REPO = Path(__file__).resolve().parents[2]


def settings(argv: list[str], environ: dict[str, str] | None = None) -> ServeSettings:
    args = build_parser().parse_args(["serve", *argv])
    return serve_settings(args, environ or {}, args.parser)


def test_defaults() -> None:
    assert settings(["app:app"]) == ServeSettings(
        app="app:app",
        host="127.0.0.1",
        port=4433,
        http_port=None,
        certfile=None,
        keyfile=None,
        workers=1,
        reload=False,
        log_level="info",
        root_path="",
        graceful_timeout=5.0,
    )


def test_every_flag() -> None:
    parsed = settings(
        [
            "pkg.main:application",
            "--host",
            "0.0.0.0",
            "--host",
            "::",
            "--port",
            "8443",
            "--http-port",
            "8080",
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--workers",
            "3",
            "--reload",
            "--log-level",
            "DEBUG",
            "--root-path",
            "/api",
            "--graceful-timeout",
            "2.5",
        ]
    )
    assert parsed == ServeSettings(
        app="pkg.main:application",
        host=("0.0.0.0", "::"),
        port=8443,
        http_port=8080,
        certfile="c.pem",
        keyfile="k.pem",
        workers=3,
        reload=True,
        log_level="debug",
        root_path="/api",
        graceful_timeout=2.5,
    )


def test_environment_fills_in_and_flags_win() -> None:
    environ = {
        "STARLETTE_WEBTRANSPORT_APP": "env:app",
        "STARLETTE_WEBTRANSPORT_HOST": "127.0.0.1, ::1",
        "STARLETTE_WEBTRANSPORT_PORT": "9000",
        "STARLETTE_WEBTRANSPORT_HTTP_PORT": "9001",
        "STARLETTE_WEBTRANSPORT_CERTFILE": "/etc/wt/cert.pem",
        "STARLETTE_WEBTRANSPORT_KEYFILE": "/etc/wt/key.pem",
        "STARLETTE_WEBTRANSPORT_WORKERS": "2",
        "STARLETTE_WEBTRANSPORT_RELOAD": "yes",
        "STARLETTE_WEBTRANSPORT_LOG_LEVEL": "warning",
        "STARLETTE_WEBTRANSPORT_ROOT_PATH": "/wt",
        "STARLETTE_WEBTRANSPORT_GRACEFUL_TIMEOUT": "30",
    }
    from_env = settings([], environ)
    assert from_env == ServeSettings(
        app="env:app",
        host=("127.0.0.1", "::1"),
        port=9000,
        http_port=9001,
        certfile="/etc/wt/cert.pem",
        keyfile="/etc/wt/key.pem",
        workers=2,
        reload=True,
        log_level="warning",
        root_path="/wt",
        graceful_timeout=30.0,
    )
    overridden = settings(["flag:app", "--port", "7000", "--host", "localhost"], environ)
    assert overridden.app == "flag:app"
    assert overridden.port == 7000
    assert overridden.host == "localhost"
    assert overridden.workers == 2


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {}, "the app is missing"),
        (["a:b", "--certfile", "c.pem"], {}, "--certfile and --keyfile go together"),
        (["a:b"], {"STARLETTE_WEBTRANSPORT_KEYFILE": "k.pem"}, "go together"),
        (["a:b", "--port", "70000"], {}, "not a port number"),
        (["a:b", "--port", "https"], {}, "'https' is not an integer"),
        (["a:b", "--workers", "0"], {}, "not a positive number"),
        (["a:b", "--log-level", "loud"], {}, "'loud' is not one of"),
        (["a:b", "--graceful-timeout", "-1"], {}, "not a number of seconds"),
        (["a:b"], {"STARLETTE_WEBTRANSPORT_PORT": "x"}, "STARLETTE_WEBTRANSPORT_PORT: 'x'"),
        (["a:b"], {"STARLETTE_WEBTRANSPORT_RELOAD": "maybe"}, "not a boolean"),
    ],
)
def test_bad_serve_input_exits_2_with_a_reason(
    argv: list[str],
    environ: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        settings(argv, environ)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_cert_writes_files_and_prints_every_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cert", "--out", str(tmp_path), "--host", "dev.test", "--days", "5"]) == 0
    out = capsys.readouterr().out
    info = load_certificate(tmp_path / "cert.pem")
    assert f"certificate sha256: {info.sha256.hex()}\n" in out
    assert f"certificate sha256 (base64): {base64.b64encode(info.sha256).decode()}\n" in out
    assert 'serverCertificateHashes: [{algorithm: "sha-256", value: Uint8Array.from([' in out
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    assert info.pinning_problems == ()
    assert (info.not_after - info.not_before).days == 5
    certificate = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "dev.test"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "14"], "validity under 14 days"),
        (["--host", "not a host"], "not a DNS name or IP address"),
    ],
)
def test_bad_cert_input_exits_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cert", "--out", str(tmp_path), *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cert.pem").exists()


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "starlette_webtransport", "cert", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=True,
    )
    sha256 = load_certificate(tmp_path / "cert.pem").sha256.hex()
    assert f"certificate sha256: {sha256}" in result.stdout


SAMPLES = {
    "app": "other:app",
    "host": "::1",
    "port": "8443",
    "http_port": "8080",
    "certfile": "c.pem",
    "keyfile": "k.pem",
    "workers": "3",
    "reload": "1",
    "log_level": "debug",
    "root_path": "/api",
    "graceful_timeout": "2.5",
    "accept_timeout": "3",
    "pending_timeout": "1.5",
    "receive_memory": "64M",
    "udp_buffer": "1M",
    "idle_timeout": "30",
    "keep_alive": "4",
    "broadcast": "redis://localhost:6379/0",
}


@pytest.mark.parametrize("name", sorted(cli._SETTINGS))
def test_every_setting_is_a_flag_and_a_variable_that_agree(name: str) -> None:
    """One table declares each setting, so its flag and its environment variable exist
    together and parse alike; a setting added without a sample here fails this test."""
    text = SAMPLES[name]
    needed = {"app": "pkg:app"} if name != "app" else {}
    paired = {"certfile": "keyfile", "keyfile": "certfile"}.get(name)
    environ = {f"STARLETTE_WEBTRANSPORT_{key.upper()}": v for key, v in needed.items()}
    flags = [needed["app"]] if needed else []
    if paired:
        environ[f"STARLETTE_WEBTRANSPORT_{paired.upper()}"] = SAMPLES[paired]
    by_variable = settings([], {**environ, f"STARLETTE_WEBTRANSPORT_{name.upper()}": text})
    if name == "app":
        by_flag = settings([text], environ)
    elif name == "reload":
        by_flag = settings([*flags, "--reload"], environ)
    else:
        by_flag = settings([*flags, "--" + name.replace("_", "-"), text], environ)
    assert by_flag == by_variable != settings(["pkg:app"], {})
