"""secret_scan over a generated tree: every detector, references, allow-list, bounds."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.context import RuntimeContext
from exporter.model import Outcome, Status
from exporter.probes.secret_detectors import fingerprint
from exporter.probes.secret_scan import KIND, OTHER_FILES, SecretScanCheck

# Built by concatenation so this file itself does not look like it holds secrets.
AWS = "AKIA" + "QX7Z3KDL5MRT2WVB"
STRIPE = "sk_" + "live_" + "51Hq8Ld2eZvKYlo2C0aB3xYz"
SLACK = "xoxb-" + "112233445566-778899001122-" + "q7Lm3Np9Rt2Vx5Zb8Cd1Fg4H"
PAGERDUTY = "u+" + "Kq3Zx8LmP2vRt7NbWc5Y"
GCP = "AIza" + "SyD3fK9xLm2Qp7Rt4Vz8Bn1Cw6Hj0Ks5Uex"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + "." + "eyJzdWIiOiJxYml0ZWwtYWRtaW4ifQ" + "."
       + "Zm9yZ2VkLXNpZ25hdHVyZS1ub3QtcmVhbA")
LITERAL = "Tr0ub4dor&3-prod"
API_TOKEN = "tok_" + "8f7a6b5c4d3e2f1a9b"
ENTROPY = base64.b64encode(bytes(range(7, 250, 7))).decode()
SECRETS = [AWS, STRIPE, SLACK, PAGERDUTY, GCP, JWT, LITERAL, API_TOKEN, ENTROPY]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "config").mkdir(parents=True)
    (root / "deploy").mkdir()
    (root / "config" / "qbitel.production.yaml").write_text(
        "database:\n"
        "  host: db.internal\n"
        "  password: ${DATABASE_PASSWORD}\n"              # a reference: fine
        "  password_min_length: 12\n"
        "jwt:\n"
        '  secret: "{{ .Values.jwtSecret }}"\n'            # a template: fine
        "  token_ttl: 3600\n"
        "  token_url: https://idp.example.com:8443/oauth/token\n"
        "  secret_name: qbitel-db-credentials\n"
        f"  admin_password: {LITERAL}\n"                   # literal: keyword
        f"  api_token: {API_TOKEN}\n"                      # literal: keyword (token name)
        f"pagerduty:\n  pagerduty_api_key: {PAGERDUTY}\n")
    (root / ".env.production").write_text(
        f"AWS_ACCESS_KEY_ID={AWS}\nSTRIPE_SECRET_KEY={STRIPE}\nSLACK_BOT_TOKEN={SLACK}\n"
        "REDIS_PASSWORD=${REDIS_PASSWORD}\nLOG_LEVEL=info\n")
    (root / "deploy" / "app.py").write_text(
        f'MAPS_KEY_HINT = None\nbrowser_key = "{GCP}"\nSESSION = "{JWT}"\n'
        f'blob = "{ENTROPY}"\nname = "qbitel"\n')
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (root / "deploy" / "signing.pem").write_bytes(key)
    (root / "deploy" / "image.bin").write_bytes(b"\x00\x01" + AWS.encode() + b"\x00" * 100)
    (root / "README.md").write_text("Set DATABASE_PASSWORD in the secrets manager.\n")
    return root


def _spec(**fields: object) -> SecretScanCheck:
    return SecretScanCheck.model_validate({"id": "1.2.2", "section": "1.2", "title": "t",
                                           "kind": "secret_scan", **fields})


def _by(outcome: Outcome, family: str) -> dict[tuple[str, ...], float]:
    return {tuple(m.labels.values()): m.value
            for m in outcome.measurements if m.family == family}


def _assert_no_values(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    text = outcome.message + repr(outcome.measurements) + caplog.text
    for secret in SECRETS:
        assert secret not in text
    assert "PRIVATE KEY-----\nMC4C" not in text


async def test_finds_each_kind_of_secret_and_never_shows_values(
        tree: Path, ctx: RuntimeContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await KIND.run(_spec(paths=[str(tree)]), ctx)
    assert outcome.status is Status.FAIL
    detectors = _by(outcome, "readiness_secret_scan_detector_findings")
    assert {d: v for (d,), v in detectors.items() if v} == {
        "aws": 1, "stripe": 1, "slack": 1, "pagerduty": 1, "gcp_api_key": 1, "jwt": 1,
        "private_key": 1, "keyword": 2, "high_entropy_base64": 1}
    per_file = _by(outcome, "readiness_secret_scan_findings")
    config = str(tree / "config" / "qbitel.production.yaml")
    assert per_file[(config, "keyword")] == 2
    assert per_file[(config, "pagerduty")] == 1
    assert per_file[(str(tree / ".env.production"), "aws")] == 1
    assert _by(outcome, "readiness_secret_scan_skipped_files") == {(): 1}  # the binary
    assert _by(outcome, "readiness_secret_scan_files") == {(): 5}
    assert outcome.message.startswith("10 secret-like value(s) in 4 of 5 files")
    _assert_no_values(outcome, caplog)


async def test_references_and_plain_settings_pass(tmp_path: Path, ctx: RuntimeContext) -> None:
    clean = tmp_path / "values.yaml"
    clean.write_text(
        "postgres:\n  password: ${DATABASE_PASSWORD}\n  passwordSecretRef: db-credentials\n"
        "redis:\n  password: $REDIS_PASSWORD\n  existingSecret: redis-auth\n"
        "jwt:\n  secret: '{{ .Values.jwt }}'\n  token_lifetime: 900\n"
        "oauth:\n  token_endpoint: https://login.example.com/oauth2/v2.0/token\n"
        "api:\n  key_rotation_days: 90\n  secret_store: vault\n")
    outcome = await KIND.run(_spec(paths=[str(clean)]), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == f"no secret-like values in 1 files ({clean.stat().st_size} B)"


async def test_allow_list_by_fingerprint_and_exclude(tree: Path, ctx: RuntimeContext,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    allow = [fingerprint("keyword", LITERAL), fingerprint("keyword", API_TOKEN),
             fingerprint("pagerduty", PAGERDUTY)]
    config = tree / "config"
    outcome = await KIND.run(_spec(paths=[f"{config}/**/*.yaml"], allow=allow), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message.endswith("; 3 allow-listed")
    assert _by(outcome, "readiness_secret_scan_allowlisted_findings") == {(): 3}
    # A fingerprint for another detector does not allow the value.
    wrong = await KIND.run(_spec(paths=[f"{config}/**/*.yaml"],
                                 allow=[fingerprint("aws", LITERAL)]), ctx)
    assert wrong.status is Status.FAIL
    excluded = await KIND.run(_spec(paths=[str(tree)], exclude=["*.pem", "*/deploy/*.py",
                                                                 ".env*"], allow=allow), ctx)
    assert excluded.status is Status.PASS, excluded.message
    with pytest.raises(ValueError, match="never the value itself"):
        _spec(paths=["x"], allow=[LITERAL])
    _assert_no_values(outcome, caplog)


async def test_files_reported_are_bounded(tmp_path: Path, ctx: RuntimeContext) -> None:
    for i in range(6):
        lines = "".join(f"db_password_{j}: Pa55word{i}x{j}\n" for j in range(i + 1))
        (tmp_path / f"f{i}.yaml").write_text(lines)
    outcome = await KIND.run(_spec(paths=[str(tmp_path / "*.yaml")], max_files_reported=2,
                                   max_findings=100), ctx)
    assert outcome.status is Status.PASS
    size = sum(p.stat().st_size for p in tmp_path.glob("*.yaml"))
    assert outcome.message == f"21 tolerated finding(s) in 6 files ({size} B)"
    per_file = _by(outcome, "readiness_secret_scan_findings")
    assert per_file == {(str(tmp_path / "f5.yaml"), "keyword"): 6,
                        (str(tmp_path / "f4.yaml"), "keyword"): 5,
                        (OTHER_FILES, "keyword"): 10}
    failed = await KIND.run(_spec(paths=[str(tmp_path / "*.yaml")]), ctx)
    assert "and 3 more files" in failed.message


@pytest.mark.parametrize(("isolation", "workers"), [("thread", 1), ("process", 2)])
async def test_batches_cover_every_file(tmp_path: Path, ctx: RuntimeContext,
                                        isolation: str, workers: int) -> None:
    for i in range(40):
        body = "x = 1\n" * 500 + (f"SECRET_KEY=S3cr3t-{i:04d}-value\n" if i % 4 == 0 else "")
        (tmp_path / f"m{i:02d}.env").write_text(body)
    # 40 files of ~3 KB in batches of 10 KB: 10+ tasks, several in flight at once.
    outcome = await KIND.run(_spec(paths=[str(tmp_path)], batch_bytes=10_000,
                                   isolation=isolation, workers=workers), ctx)
    assert _by(outcome, "readiness_secret_scan_detector_findings")[("keyword",)] == 10
    assert _by(outcome, "readiness_secret_scan_files") == {(): 40}


async def test_long_lines_and_limits(tmp_path: Path, ctx: RuntimeContext) -> None:
    minified = tmp_path / "bundle.js"
    minified.write_text("var a=1;" * 5000 + f'var s="{JWT}";' + "var b=2;" * 5000)
    big = tmp_path / "big.log"
    big.write_text(f"password={LITERAL}\n" * 10 + "." * 2048)
    outcome = await KIND.run(_spec(paths=[str(tmp_path)], max_file_bytes=1024), ctx)
    assert _by(outcome, "readiness_secret_scan_skipped_files") == {(): 2}
    outcome = await KIND.run(_spec(paths=[str(tmp_path)]), ctx)
    assert _by(outcome, "readiness_secret_scan_findings") == {
        (str(minified), "jwt"): 1, (str(big), "keyword"): 1}


async def test_nothing_to_scan_fails(tmp_path: Path, ctx: RuntimeContext) -> None:
    outcome = await KIND.run(_spec(paths=[str(tmp_path / "nope" / "**")]), ctx)
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("no file matches")
    relaxed = await KIND.run(_spec(paths=[str(tmp_path / "nope")], require_files=False), ctx)
    assert relaxed.status is Status.PASS
    assert os.listdir(tmp_path) == ["state"] or not os.listdir(tmp_path)
