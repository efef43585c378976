"""The real `readiness-exporter serve` process: endpoints, reload, shutdown, web config,
and secrets kept out of every output."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme

JWT = "jwt-Kq8vXz3LmN5pR7tY9wB2cD4fG6hJ8kL0"
DB_PASSWORD = "db-pass-Zx9Wv8Ut7Sr6"
ENC_KEY = "9f1c3a7e5b2d8064c1e9a3f7b5d2086e4c1a9f3e7b5d20c86e4a1f9c3e7b5d21"
SECRETS = (JWT, DB_PASSWORD, ENC_KEY)


def get(url: str, headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def post(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


CONFIG = """
settings:
  first_round_spread: 0.5
checks:
  - id: jwt
    section: "2.1"
    title: JWT secret strong
    severity: critical
    kind: secret_strength
    env: JWT_SECRET
    interval: 1s
  - id: enc
    section: "6.1"
    title: encryption key
    severity: critical
    kind: secret_strength
    env: ENCRYPTION_KEY
    exact_bytes: 32
    interval: 1s
  - id: env
    section: "6.1"
    title: required variables
    severity: critical
    kind: env
    required: [JWT_SECRET, DATABASE_PASSWORD, ENCRYPTION_KEY]
    interval: 1s
  - id: runbook
    section: "10.3"
    title: runbook present
    severity: warning
    kind: file
    path: {runbook}
    interval: 1s
"""


@pytest.fixture
def env() -> dict[str, str]:
    return {"JWT_SECRET": JWT, "DATABASE_PASSWORD": DB_PASSWORD, "ENCRYPTION_KEY": ENC_KEY}


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "readiness.yaml"
    path.write_text(text.format(runbook=tmp_path / "runbook.md"), encoding="utf-8")
    return path


def test_endpoints_board_and_no_secret_anywhere(
    tmp_path: Path, start_daemon: Any, env: dict[str, str]
) -> None:
    daemon = start_daemon(["--config.file", str(write_config(tmp_path))], env)
    wait_until(lambda: get(daemon.url + "/readyz")[0] == 200)
    status, _, body = get(daemon.url + "/health")
    assert status == 200 and json.loads(body) == {"status": "healthy"}
    assert get(daemon.url + "/healthz")[0] == 200

    status, headers, text = get(daemon.url + "/metrics")
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    metrics = text.decode()
    assert 'readiness_check_status{check="jwt",section="2.1",severity="critical",status="pass"} 1.0' \
        in metrics
    assert 'readiness_check_status{check="runbook",section="10.3",severity="warning",' \
        'status="fail"} 1.0' in metrics
    assert "readiness_go_live 1.0" in metrics  # the failing check is only a warning

    status, headers, om = get(daemon.url + "/metrics",
                              {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.decode().endswith("# EOF\n")
    status, headers, zipped = get(daemon.url + "/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped).startswith(b"# HELP readiness_check_status")

    status, _, api = get(daemon.url + "/api/v1/checks")
    records = {r["id"]: r for r in json.loads(api)}
    assert set(records["jwt"]) >= {"id", "section", "title", "severity", "status", "message",
                                   "last_run", "duration_seconds"}
    assert records["runbook"]["status"] == "fail"

    status, headers, board = get(daemon.url + "/")
    page = board.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<header class="banner go"' in page and "10.3 DR Testing" in page
    assert "runbook present" in page and "does not exist" in page
    assert "<script" not in page

    daemon.stop()
    logs = daemon.logs()
    for output in (metrics, om.decode(), api.decode(), page, logs):
        for secret in SECRETS:
            assert secret not in output
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e["msg"] == "readiness-exporter started" for e in entries)
    # One log line per status change, not per run (each check ran several times).
    changes = [e for e in entries if e["msg"] == "check status changed" and e["check"] == "jwt"]
    assert len(changes) == 1


def test_readyz_waits_for_the_first_round(tmp_path: Path, start_daemon: Any,
                                          env: dict[str, str]) -> None:
    config = CONFIG.replace("first_round_spread: 0.5", "first_round_spread: 4")
    daemon = start_daemon(["--config.file", str(write_config(tmp_path, config))], env)
    assert get(daemon.url + "/readyz")[0] == 503
    wait_until(lambda: get(daemon.url + "/readyz")[0] == 200, timeout=20)


def reload_metric(url: str) -> str:
    text = get(url + "/metrics")[2].decode()
    return next(line for line in text.splitlines()
                if line.startswith("readiness_config_last_reload_successful "))


def test_reload_by_sighup_and_post_keeps_running_config_when_invalid(
    tmp_path: Path, start_daemon: Any, env: dict[str, str]
) -> None:
    path = write_config(tmp_path)
    daemon = start_daemon(["--config.file", str(path), "--web.enable-lifecycle"], env)
    wait_until(lambda: get(daemon.url + "/readyz")[0] == 200)
    path.write_text("checks:\n  - id: broken\n    kind: nope\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: reload_metric(daemon.url).endswith(" 0.0"))
    ids = {r["id"] for r in json.loads(get(daemon.url + "/api/v1/checks")[2])}
    assert ids == {"jwt", "enc", "env", "runbook"}
    status, body = post(daemon.url + "/-/reload")
    assert status == 400 and "unknown probe kind 'nope'" in body.decode()

    (tmp_path / "runbook.md").write_text("# runbook\n")
    path.write_text(CONFIG.format(runbook=tmp_path / "runbook.md") + """
  - id: added
    section: "1.2"
    title: added on reload
    kind: env
    required: [JWT_SECRET]
    interval: 1s
""")
    status, body = post(daemon.url + "/-/reload")
    assert status == 200, body
    assert reload_metric(daemon.url).endswith(" 1.0")
    wait_until(lambda: any(r["id"] == "added" and r["status"] == "pass"
                           for r in json.loads(get(daemon.url + "/api/v1/checks")[2])))
    wait_until(lambda: any(r["id"] == "runbook" and r["status"] == "pass"
                           for r in json.loads(get(daemon.url + "/api/v1/checks")[2])))
    logs = daemon.logs()
    assert "configuration reload rejected" in logs and "configuration reloaded" in logs


def test_sigterm_with_probes_in_flight(tmp_path: Path, start_daemon: Any,
                                       env: dict[str, str]) -> None:
    fifo = tmp_path / "blocked.fifo"
    os.mkfifo(fifo)  # opening it blocks a probe thread forever: a stand-in for a hung NFS read
    config = CONFIG + f"""
  - id: stuck
    section: "1.2"
    title: blocked read
    kind: file
    path: {fifo}
    sha256: "{'0' * 64}"
    timeout: 60s
"""
    daemon = start_daemon(["--config.file", str(write_config(tmp_path, config))], env)
    wait_until(lambda: get(daemon.url + "/readyz")[2] is not None
               and "jwt" in get(daemon.url + "/api/v1/checks")[2].decode())
    time.sleep(1.0)
    took = daemon.stop()
    assert daemon.process.returncode == 0, daemon.logs()
    assert took < 5.0
    assert '"msg":"stopped"' in daemon.logs()


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.test")
    paths = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
             "ca": tmp_path / "ca.pem"}
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    return {"ca": ca, "client": client, **paths}


def test_web_config_tls_and_basic_auth(tmp_path: Path, start_daemon: Any, env: dict[str, str],
                                       tls_files: dict[str, Any]) -> None:
    password = "board-pass-Hy7Ju8Ki9"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"""
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_ca_file: ca.pem
  client_auth_type: VerifyClientCertIfGiven
  min_version: TLS12
basic_auth_users:
  alice: {hashed}
""")
    daemon = start_daemon(["--config.file", str(write_config(tmp_path)),
                           "--web.config.file", str(web)], env)
    base = f"https://127.0.0.1:{daemon.port}"
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    good = {"Authorization": "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()}
    for path in ("/metrics", "/health", "/healthz", "/readyz", "/api/v1/checks", "/"):
        assert get(base + path, context=context)[0] == 401, path
        assert get(base + path, bad, context=context)[0] == 401, path
    wait_until(lambda: get(base + "/readyz", good, context=context)[0] == 200)
    status, _, body = get(base + "/metrics", good, context=context)
    assert status == 200 and b"readiness_check_status" in body
    plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{daemon.port}/metrics"],
                           capture_output=True, text=True, timeout=30)
    assert plain.stdout != "200"
    daemon.stop()
    assert password not in daemon.logs()


def test_web_config_requires_verified_client_cert(tmp_path: Path, start_daemon: Any,
                                                  env: dict[str, str],
                                                  tls_files: dict[str, Any]) -> None:
    web = tmp_path / "web.yml"
    web.write_text("""
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_ca_file: ca.pem
  client_auth_type: RequireAndVerifyClientCert
""")
    daemon = start_daemon(["--config.file", str(write_config(tmp_path)),
                           "--web.config.file", str(web)], env)
    base = f"https://127.0.0.1:{daemon.port}"
    anonymous = ssl.create_default_context(cafile=str(tls_files["ca"]))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)):
        get(base + "/healthz", context=anonymous)
    with_cert = ssl.create_default_context(cafile=str(tls_files["ca"]))
    tls_files["client"].configure_cert(with_cert)
    assert get(base + "/healthz", context=with_cert)[0] == 200


@pytest.mark.parametrize(("web_config", "message"), [
    ("basic_auth_users:\n  bob: plaintext\n", "must be a bcrypt hash"),
    ("tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n", "cannot load"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
     "not supported"),
    ("unknown: 1\n", "unknown"),
])
def test_bad_web_config_exits_2(tmp_path: Path, web_config: str, message: str) -> None:
    from tests.core.conftest import EXE

    web = tmp_path / "web.yml"
    web.write_text(web_config)
    result = subprocess.run([str(EXE), "serve", "--web.config.file", str(web),
                             "--web.listen-address", "127.0.0.1:1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr.lower() or message in result.stderr
