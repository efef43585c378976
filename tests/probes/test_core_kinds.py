"""The core probe kinds: env, secret_strength, file, config_value."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes import config_value, env, file, secret_strength
from exporter.runner import run_check

BASE = {"section": "6.1", "title": "t"}


def spec(kind: Any, **fields: Any) -> Any:
    return kind.KIND.spec.model_validate({"id": "t", "kind": kind.KIND.name, **BASE, **fields})


def values(outcome: Outcome, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value for m in outcome.measurements
            if m.family == family}


# --------------------------------------------------------------------------- env


async def test_env_required_missing_fails_and_never_exports_values(
    ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RE_A", "value-of-a-9f3")
    monkeypatch.setenv("RE_EMPTY", "  ")
    monkeypatch.delenv("RE_B", raising=False)
    outcome = await env.run(spec(env, required=["RE_A", "RE_B", "RE_EMPTY"],
                                 recommended=["RE_A"]), ctx)
    assert outcome.status is Status.FAIL
    assert outcome.message == "required missing: RE_B, RE_EMPTY"
    present = values(outcome, "readiness_env_variable_present")
    assert present[(("level", "required"), ("variable", "RE_A"))] == 1.0
    assert present[(("level", "required"), ("variable", "RE_B"))] == 0.0
    assert "value-of-a-9f3" not in repr(outcome)


async def test_env_conditional_and_recommended(
    ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RE_TLS", "true")
    monkeypatch.delenv("RE_CERT", raising=False)
    monkeypatch.delenv("RE_SENTRY", raising=False)
    check = spec(env, conditional=[{"when": "RE_TLS", "required": ["RE_CERT"]}],
                 recommended=["RE_SENTRY"])
    outcome = await env.run(check, ctx)
    assert outcome.status is Status.FAIL and "RE_CERT" in outcome.message
    monkeypatch.setenv("RE_TLS", "false")
    outcome = await env.run(check, ctx)
    assert outcome.status is Status.PASS
    assert outcome.message == "recommended missing: RE_SENTRY"
    strict = spec(env, recommended=["RE_SENTRY"], fail_on_recommended=True)
    assert (await env.run(strict, ctx)).status is Status.FAIL


async def test_env_from_dotenv_file(ctx: RuntimeContext, tmp_path: Path) -> None:
    dotenv = tmp_path / "app.env"
    dotenv.write_text('# app\nexport DATABASE_HOST=db\nREDIS_PASSWORD="p w"\nEMPTY=\n')
    outcome = await env.run(spec(env, required=["DATABASE_HOST", "REDIS_PASSWORD", "EMPTY"],
                                 env_file=str(dotenv)), ctx)
    assert outcome.status is Status.FAIL and outcome.message == "required missing: EMPTY"
    dotenv.write_text("not a pair\n")
    outcome = await env.run(spec(env, required=["X"], env_file=str(dotenv)), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert f"{dotenv}:1" in outcome.message


# --------------------------------------------------------------------------- secret_strength


@pytest.mark.parametrize(("value", "problem"), [
    ("tiny-1", "shorter than 32"),
    ("changeme" * 5, "looks like"),
    ("changeme-please", "placeholder"),
    ("83749201837465019283746501928374", "strength estimate 72 bits < 128"),
    ("<32+-char-secret>", "placeholder"),
    ("a" * 40, "repeated characters"),
    ("abcd" * 10, "strength estimate"),
    ("Secret123Secret123Secret123Secret123", "repeated pattern"),
], ids=["short", "repeated-word", "placeholder-word", "digits-only", "unfilled", "one-char",
       "abcd", "repeated-unit"])
async def test_weak_jwt_secrets_fail_without_leaking(
    ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("T_JWT", value)
    outcome = await secret_strength.run(spec(secret_strength, env="T_JWT"), ctx)
    assert outcome.status is Status.FAIL
    assert problem in outcome.message
    assert value not in outcome.message and value not in repr(outcome.measurements)


async def test_strong_secret_passes(ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    value = secrets.token_urlsafe(32)
    monkeypatch.setenv("T_JWT", value)
    outcome = await secret_strength.run(spec(secret_strength, env="T_JWT"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert values(outcome, "readiness_secret_entropy_bytes")[()] >= 16
    assert value not in repr(outcome)


@pytest.mark.parametrize(("encoded", "encoding", "ok"), [
    (secrets.token_hex(32), "auto", True),                                # 64 hex chars
    (base64.b64encode(secrets.token_bytes(32)).decode(), "auto", True),   # 44 base64 chars
    (secrets.token_urlsafe(24), "auto", True),                            # 32 raw chars
    (secrets.token_hex(16), "hex", False),                                # only 16 bytes
    (base64.b64encode(secrets.token_bytes(24)).decode(), "base64", False),  # 24 bytes
    (secrets.token_hex(32), "raw", False),                                # 64 raw bytes
], ids=["hex-32", "base64-32", "raw-32", "hex-16", "base64-24", "raw-64"])
async def test_encryption_key_must_be_32_bytes(
    ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch, encoded: str, encoding: str, ok: bool
) -> None:
    monkeypatch.setenv("T_KEY", encoded)
    check = spec(secret_strength, env="T_KEY", exact_bytes=32, min_length=32, encoding=encoding)
    outcome = await secret_strength.run(check, ctx)
    assert (outcome.status is Status.PASS) is ok, outcome.message
    rules = values(outcome, "readiness_secret_rule_ok")
    assert rules[(("rule", "key_size"),)] == (1.0 if ok else 0.0)


async def test_secret_from_file_and_missing(ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "jwt"
    value = secrets.token_urlsafe(48)
    path.write_text(value + "\n")
    outcome = await secret_strength.run(spec(secret_strength, file=str(path)), ctx)
    assert outcome.status is Status.PASS
    outcome = await secret_strength.run(spec(secret_strength, file=str(tmp_path / "no")), ctx)
    assert outcome.status is Status.FAIL and "is not set" in outcome.message
    assert values(outcome, "readiness_secret_present")[()] == 0.0


# --------------------------------------------------------------------------- file


async def test_file_digest_and_age(ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "runbook.md"
    path.write_text("# Recovery\n")
    digest = hashlib.sha256(b"# Recovery\n").hexdigest()
    outcome = await file.run(spec(file, path=str(path), sha256=digest, max_age="1d"), ctx)
    assert outcome.status is Status.PASS
    assert values(outcome, "readiness_file_digest_match")[()] == 1.0
    path.write_text("# Recovery (edited after review)\n")
    outcome = await file.run(spec(file, path=str(path), sha256=digest), ctx)
    assert outcome.status is Status.FAIL and "sha256 differs" in outcome.message
    old = time.time() - 3 * 86400
    os.utime(path, (old, old))
    outcome = await file.run(spec(file, path=str(path), max_age="2d"), ctx)
    assert outcome.status is Status.FAIL and "3.0 days ago" in outcome.message
    assert values(outcome, "readiness_file_modified_timestamp_seconds")[()] == pytest.approx(old)


async def test_file_missing_directory_and_empty(ctx: RuntimeContext, tmp_path: Path) -> None:
    outcome = await file.run(spec(file, path=str(tmp_path / "absent")), ctx)
    assert outcome.status is Status.FAIL and values(outcome, "readiness_file_present")[()] == 0
    outcome = await file.run(spec(file, path=str(tmp_path)), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    (tmp_path / "empty").write_text("")
    outcome = await file.run(spec(file, path=str(tmp_path / "empty")), ctx)
    assert outcome.status is Status.FAIL and "size 0 B" in outcome.message


def test_file_digest_must_be_hex() -> None:
    with pytest.raises(ValueError, match="64 hexadecimal"):
        spec(file, path="/x", sha256="abc")


# --------------------------------------------------------------------------- config_value

APP_CONFIG = """
database:
  pool_size: 50
  max_overflow: 20
  pool_timeout: 30
  pool_recycle: 1800
  password: hunter2-from-config
security:
  session_timeout_minutes: 30
compliance:
  framework: SOC2
servers:
  - port: 8443
"""


async def test_config_value_assertions(ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "qbitel.production.yaml"
    path.write_text(APP_CONFIG)
    check = spec(config_value, file=str(path), assertions=[
        {"path": "database.pool_size", "op": "==", "value": 50},
        {"path": "database.pool_recycle", "op": "==", "value": 3600},
        {"path": "compliance.framework", "op": "in", "value": ["SOC2", "HIPAA"]},
        {"path": "servers.0.port", "op": ">=", "value": 443},
        {"path": "database.password", "op": "==", "value": "x"},
        {"path": "tracing.sampler", "op": "exists"},
    ])
    outcome = await run_check(check, ctx)
    result = outcome[0]
    assert result.status is Status.FAIL
    assert "database.pool_recycle is 1800, expected == 3600" in result.message
    assert "tracing.sampler is missing" in result.message
    assert "database.password is a 19-character string, expected == 'x'" in result.message
    assert "hunter2-from-config" not in repr(result)
    ok = values(result, "readiness_config_value_ok")
    assert ok[(("path", "database.pool_size"),)] == 1.0
    assert ok[(("path", "compliance.framework"),)] == 1.0
    assert ok[(("path", "servers.0.port"),)] == 1.0
    assert values(result, "readiness_config_value")[(("path", "database.pool_recycle"),)] == 1800


async def test_config_value_dotenv_json_and_unreadable(ctx: RuntimeContext, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("POOL_SIZE=50\nTLS_ENABLED=true\n")
    check = spec(config_value, file=str(tmp_path / ".env"), assertions=[
        {"path": "POOL_SIZE", "op": "==", "value": 50},
        {"path": "TLS_ENABLED", "op": "==", "value": True},
    ])
    assert (await config_value.run(check, ctx)).status is Status.PASS
    (tmp_path / "c.json").write_text('{"sampling": {"ratio": 0.1}}')
    check = spec(config_value, file=str(tmp_path / "c.json"),
                 assertions=[{"path": "sampling.ratio", "op": "<=", "value": 1}])
    assert (await config_value.run(check, ctx)).status is Status.PASS
    (tmp_path / "bad.yaml").write_text("a: [\n")
    check = spec(config_value, file=str(tmp_path / "bad.yaml"),
                 assertions=[{"path": "a", "op": "exists"}])
    result, _ = await run_check(check, ctx)
    assert result.status is Status.ERROR and result.reason is Reason.CONFIG
    assert "not valid yaml" in result.message


# Keys whose names do not look secret (the old rule hid only pass/secret/token/key/...).
OBSERVED_SECRETS = {
    "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-0123456789",
    "pwd": "correct-horse-battery-staple-42",
    "cookie": "session=0f3c9a7e5d1b4a2c8e6f0a9b7c5d3e1f",
    "auth": "admin:Sup3r-S3cret-Passw0rd",
}


@pytest.mark.parametrize("file_format", ["yaml", "dotenv"])
@pytest.mark.parametrize("op", ["==", "in", "<", ">="])
async def test_config_value_never_shows_an_unconfigured_string(
        ctx: RuntimeContext, tmp_path: Path, file_format: str, op: str) -> None:
    if file_format == "yaml":
        path = tmp_path / "app.yaml"
        path.write_text("".join(f"{k}: '{v}'\n" for k, v in OBSERVED_SECRETS.items()))
    else:
        path = tmp_path / ".env"
        path.write_text("".join(f"{k}={v}\n" for k, v in OBSERVED_SECRETS.items()))
    operand: dict[str, Any] = {
        "==": {"value": "expected-public-value"},
        "in": {"value": ["one-public-value", "another"]},
        "<": {"value": "0"},  # strings compare; every value here sorts after "0"
        ">=": {"value": 12},  # a number against a string: not comparable
    }[op]
    check = spec(config_value, file=str(path), assertions=[
        {"path": key, "op": op, **operand} for key in OBSERVED_SECRETS])
    result, _ = await run_check(check, ctx)
    assert result.status is Status.FAIL
    for key, value in OBSERVED_SECRETS.items():
        assert f"{key} is a {len(value)}-character string" in result.message
        for fragment in (value, value[:12], value[-12:]):
            assert fragment not in repr(result)


async def test_config_value_shows_a_string_equal_to_a_configured_value(
        ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("tracing:\n  sampler: always_on\n  ratio: 1.5\n  enabled: true\n")
    check = spec(config_value, file=str(path), assertions=[
        {"path": "tracing.sampler", "op": "!=", "value": "always_on"},
        {"path": "tracing.ratio", "op": "<=", "value": 1},
        {"path": "tracing.enabled", "op": "==", "value": False},
    ])
    result, _ = await run_check(check, ctx)
    assert result.status is Status.FAIL
    assert "tracing.sampler is 'always_on', expected != 'always_on'" in result.message
    assert "tracing.ratio is 1.5, expected <= 1" in result.message
    assert "tracing.enabled is True, expected == False" in result.message


def test_config_value_operand_validation() -> None:
    with pytest.raises(ValueError, match="'in' needs a list"):
        spec(config_value, file="/x", assertions=[{"path": "a", "op": "in", "value": 1}])
