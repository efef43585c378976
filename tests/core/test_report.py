"""`readiness-exporter report` (signed go-live evidence), `report verify`, and the board's
/report.json and /report.html downloads."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter import __version__
from exporter.probes.attestation.keyring import load_keyring, raw_public_bytes
from exporter.probes.attestation.record import Attestation, format_time
from exporter.report.signing import verify
from tests.core.conftest import EXE

STRONG_SECRET = "Vq7#pLm2$Rz9!xTe4&Nc8@Wb3^Hy6*Ju1%Ks5"
CONFIG = """
settings:
  first_round_spread: 0
checks:
  - id: "1.1.4"
    section: "1.1"
    title: Code review completed
    severity: critical
    kind: attestation
    roles: [Engineering Lead]
    directory: {records}
    keyring: {keyring}
  - id: "10.3.3"
    section: "10.3"
    title: Recovery runbook documented <em>now</em>
    severity: critical
    kind: file
    path: {runbook}
    max_age: {max_age}
    min_size: 5
  - id: "2.1.1"
    section: "2.1"
    title: JWT secret is cryptographically strong
    severity: critical
    kind: secret_strength
    env: JWT_SECRET
  - id: "3.3.1"
    section: "3.3"
    title: Message queue deployed
    severity: critical
    kind: env
    enabled: false
    disabled_reason: no message queue in this deployment
"""


@dataclass
class Setup:
    root: Path
    config: Path
    keyring: Path
    signing_key: Path
    records: Path
    env: dict[str, str]

    def write_config(self, max_age: str = "30d") -> None:
        self.config.write_text(CONFIG.format(records=self.records, keyring=self.keyring,
                                             runbook=self.root / "runbook.md",
                                             max_age=max_age))


def _pem(key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _sign_review(setup: Setup, key: Ed25519PrivateKey, release: str) -> None:
    now = time.time()
    record = Attestation(item="1.1.4", role="Engineering Lead", release=release,
                         key_id="erin-2026", signed_at=format_time(now - 60),
                         expires_at=format_time(now + 86400)).sign(key)
    (setup.records / f"review-{release}.json").write_text(record.to_json())


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    reviewer, releaser = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keyring = tmp_path / "keyring.yaml"
    keyring.write_text(yaml.safe_dump({"keys": [
        {"id": "erin-2026", "name": "Erin Example", "roles": ["Engineering Lead"],
         "public_key": base64.b64encode(raw_public_bytes(reviewer.public_key())).decode()},
        {"id": "release-bot", "name": "Release Bot", "roles": ["Release Manager"],
         "public_key": base64.b64encode(raw_public_bytes(releaser.public_key())).decode()},
    ]}))
    signing_key = tmp_path / "release-bot.pem"
    signing_key.write_bytes(_pem(releaser))
    records = tmp_path / "attestations"
    records.mkdir()
    (tmp_path / "runbook.md").write_text("# Recovery\n\nrestore from the last backup\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JWT_SECRET": STRONG_SECRET}
    result = Setup(tmp_path, tmp_path / "readiness.yaml", keyring, signing_key, records, env)
    result.write_config()
    _sign_review(result, reviewer, "2.1.0")
    return result


def run(args: list[str], setup: Setup, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=120,
                          env={**setup.env, **env}, cwd=setup.root)


def report(setup: Setup, out: str = "evidence", release: str = "2.1.0",
           *extra: str) -> subprocess.CompletedProcess[str]:
    return run(["report", "--release", release, "--config.file", str(setup.config),
                "--output", str(setup.root / out), "--signing-key", str(setup.signing_key),
                "--key-id", "release-bot", *extra], setup)


def test_report_writes_signed_json_and_self_contained_html(setup: Setup) -> None:
    result = report(setup)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GO: release 2.1.0, 4 checks" in result.stdout
    json_path = setup.root / "evidence" / "readiness-report-2.1.0.json"
    html_path = setup.root / "evidence" / "readiness-report-2.1.0.html"
    document = json.loads(json_path.read_text())
    assert document["release"] == "2.1.0" and document["go_live"] is True
    assert document["exporter_version"] == __version__
    assert re.fullmatch(r"[0-9a-f]{64}", document["configuration"]["sha256"])
    assert document["configuration"]["source"] == str(setup.config)
    checks = {c["id"]: c for c in document["checks"]}
    assert set(checks) == {"1.1.4", "10.3.3", "2.1.1", "3.3.1"}
    assert checks["3.3.1"]["status"] == "disabled"
    assert checks["3.3.1"]["disabled_reason"] == "no message queue in this deployment"
    review = checks["1.1.4"]
    assert review["status"] == "pass"
    assert [(a["role"], a["key_id"], a["signer"], a["release"]) for a in
            review["attestations"]] == [("Engineering Lead", "erin-2026", "Erin Example",
                                         "2.1.0")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        review["attestations"][0]["signed_at"])
    runbook = checks["10.3.3"]
    assert runbook["thresholds"] == {"max_age": 30 * 86400.0, "min_size": 5}
    observed = {m["metric"]: m["value"] for m in runbook["observed"]}
    assert observed["readiness_file_size_bytes"] == (setup.root / "runbook.md").stat().st_size
    assert document["signature"]["key_id"] == "release-bot"
    assert verify(document, load_keyring(setup.keyring)).valid

    html = html_path.read_text()
    assert "Go-live evidence: release 2.1.0" in html and ">GO<" in html
    assert "Erin Example" in html and "erin-2026" in html
    assert "&lt;em&gt;now&lt;/em&gt;" in html  # escaped, not markup
    # self-contained: inline CSS, nothing fetched
    assert "<style>" in html
    for external in ("<link", "src=", "url(", "@import", "http://", "https://"):
        assert external not in html, external
    # the secret the strength check read is in no output
    for text in (json_path.read_text(), html, result.stdout, result.stderr):
        assert STRONG_SECRET not in text


def test_report_verify_refuses_a_fifo_instead_of_waiting_on_it(setup: Setup) -> None:
    """`report verify` reads through the bounded reader: a named pipe (or a device) given
    by mistake is a usage error at once; a plain open() would block for a writer."""
    fifo = setup.root / "report.fifo"
    os.mkfifo(fifo)
    result = run(["report", "verify", str(fifo), "--keyring", str(setup.keyring)], setup)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is not a regular file" in result.stderr and "INVALID" not in result.stdout


def test_report_verify_accepts_the_signed_file_and_rejects_tampering(setup: Setup) -> None:
    assert report(setup).returncode == 0
    path = setup.root / "evidence" / "readiness-report-2.1.0.json"
    ok = run(["report", "verify", str(path), "--keyring", str(setup.keyring)], setup)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid signature by Release Bot (key release-bot); release 2.1.0, GO" in ok.stdout
    by_dir = run(["report", "verify", str(path), "--keyring", str(setup.root)], setup)
    assert by_dir.returncode == 0  # a directory holding keyring.yaml

    document = json.loads(path.read_text())
    document["checks"][0]["message"] += " (edited)"
    tampered = setup.root / "tampered.json"
    tampered.write_text(json.dumps(document))
    bad = run(["report", "verify", str(tampered), "--keyring", str(setup.keyring)], setup)
    assert bad.returncode == 1 and "INVALID" in bad.stdout
    assert "changed after signing" in bad.stdout

    del document["signature"]
    unsigned = setup.root / "unsigned.json"
    unsigned.write_text(json.dumps(document))
    result = run(["report", "verify", str(unsigned), "--keyring", str(setup.keyring)], setup)
    assert result.returncode == 1 and "not signed" in result.stdout

    other = setup.root / "other-keyring.yaml"
    keys = yaml.safe_load(setup.keyring.read_text())
    other.write_text(yaml.safe_dump({"keys": keys["keys"][:1]}))
    result = run(["report", "verify", str(path), "--keyring", str(other)], setup)
    assert result.returncode == 1 and "not in the keyring" in result.stdout


def test_report_is_no_go_when_the_review_is_for_another_release(setup: Setup) -> None:
    result = report(setup, "evidence", "2.2.0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("NO-GO: release 2.2.0")
    document = json.loads((setup.root / "evidence" / "readiness-report-2.2.0.json").read_text())
    review = next(c for c in document["checks"] if c["id"] == "1.1.4")
    assert review["status"] == "fail" and review["attestations"] == []
    assert document["go_live"] is False and document["blocking"] == ["1.1.4"]


def test_config_digest_is_stable_and_follows_every_change(setup: Setup) -> None:
    def digest(out: str) -> str:
        assert report(setup, out).returncode == 0
        text = (setup.root / out / "readiness-report-2.1.0.json").read_text()
        return str(json.loads(text)["configuration"]["sha256"])

    first, again = digest("a"), digest("b")
    setup.write_config(max_age="31d")
    assert first == again != digest("c")


def test_report_usage_errors_name_the_option(setup: Setup) -> None:
    missing = run(["report", "--output", str(setup.root / "x")], setup)
    assert missing.returncode == 2 and "--release is required" in missing.stderr
    key = setup.root / "locked.pem"
    key.write_bytes(_pem(Ed25519PrivateKey.generate(), b"correct horse battery"))
    locked = run(["report", "--release", "2.1.0", "--output", str(setup.root / "x"),
                  "--signing-key", str(key), "--passphrase-env", "KEY_PASSPHRASE"], setup)
    assert locked.returncode == 2
    assert "environment variable KEY_PASSPHRASE" in locked.stderr
    wrong = run(["report", "--release", "2.1.0", "--output", str(setup.root / "x"),
                 "--signing-key", str(key), "--passphrase-env", "KEY_PASSPHRASE"], setup,
                KEY_PASSPHRASE="wrong horse")
    assert wrong.returncode == 2 and "wrong or missing passphrase" in wrong.stderr
    assert "wrong horse" not in wrong.stderr + wrong.stdout
    assert not (setup.root / "x").exists()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while _get(url + "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "daemon not ready"
        time.sleep(0.1)


def test_board_serves_the_current_report_signed_when_a_key_is_configured(
        setup: Setup, start_daemon: Any) -> None:
    config = setup.config.read_text().replace("settings:\n", "settings:\n  release: 2.1.0\n")
    setup.config.write_text(config)
    daemon = start_daemon(["--config.file", str(setup.config)],
                          {"JWT_SECRET": STRONG_SECRET,
                           "READINESS_REPORT_SIGNING_KEY": str(setup.signing_key),
                           "READINESS_REPORT_KEY_ID": "release-bot"})
    _wait_ready(daemon.url)
    status, body = _get(daemon.url + "/report.json")
    assert status == 200
    document = json.loads(body)
    assert document["release"] == "2.1.0" and document["go_live"] is True
    assert verify(document, load_keyring(setup.keyring)).valid
    review = next(c for c in document["checks"] if c["id"] == "1.1.4")
    assert review["attestations"][0]["key_id"] == "erin-2026"
    status, html = _get(daemon.url + "/report.html")
    assert status == 200 and "Go-live evidence: release 2.1.0" in html
    assert STRONG_SECRET not in body + html


def test_board_report_is_unsigned_without_a_key_and_says_when_the_key_is_unusable(
        setup: Setup, start_daemon: Any) -> None:
    daemon = start_daemon(["--config.file", str(setup.config)], {"JWT_SECRET": STRONG_SECRET})
    _wait_ready(daemon.url)
    status, body = _get(daemon.url + "/report.json")
    assert status == 200 and "signature" not in json.loads(body)
    broken = start_daemon(["--config.file", str(setup.config)],
                          {"JWT_SECRET": STRONG_SECRET,
                           "READINESS_REPORT_SIGNING_KEY": str(setup.root / "absent.pem")})
    _wait_ready(broken.url)
    status, body = _get(broken.url + "/report.json")
    assert status == 500 and "READINESS_REPORT_SIGNING_KEY" in body


def test_options_shown_or_reported_never_carry_literal_credentials(
        behaviour_kind: None) -> None:
    from exporter.report.document import public_options, thresholds
    from tests.support.kinds import BehaviourCheck

    spec = BehaviourCheck(id="t", section="1", title="t", kind="test_behaviour",
                          behaviour="sleep", sleep=2.5, secret_in_exception="hunter2-literal",
                          token={"env": "API_TOKEN"})
    options = public_options(spec)
    assert options["secret_in_exception"] == "<redacted>"
    assert options["token"] == {"env": "API_TOKEN", "file": None}  # a reference stays
    assert "hunter2-literal" not in json.dumps(options)
    assert thresholds(spec) == {"sleep": 2.5}


def test_html_report_prints_to_pdf_in_chromium(setup: Setup) -> None:
    import shutil
    import tempfile

    assert report(setup).returncode == 0
    html = setup.root / "evidence" / "readiness-report-2.1.0.html"
    pdf = setup.root / "evidence.pdf"
    profile = tempfile.mkdtemp(prefix="readiness-chromium-")
    try:
        subprocess.run([shutil.which("chromium") or "/usr/bin/chromium", "--headless",
                        "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", f"--user-data-dir={profile}",
                        "--no-pdf-header-footer", f"--print-to-pdf={pdf}", html.as_uri()],
                       capture_output=True, timeout=90, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
