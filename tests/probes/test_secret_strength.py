"""2.1.1: the JWT secret's strength counts words, separators, years and keyboard runs for
what they are; the exposition of its metrics passes promtool."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from exporter import config
from exporter.context import RuntimeContext
from exporter.daemon import families_of
from exporter.metrics import Exposition, ReloadState
from exporter.model import Measurement, Outcome, Status
from exporter.probes import secret_strength
from exporter.probes.strength_estimate import alphabet_bits, estimate_bits
from exporter.store import Store

# Human phrases: long enough, many character classes, yet guessable word by word.
HUMAN_PHRASES = [
    "qbitel-production-jwt-secret-2024",
    "Qbitel_Production_JWT_Secret_2024!",
    "correct-horse-battery-staple-qwerty-2024-qbitel",
    "zaq12wsxcde34rfvbgt56yhnmju78ik,",  # a keyboard run, 32 characters
]


def jwt_check(**fields: Any) -> secret_strength.SecretStrengthCheck:
    return secret_strength.SecretStrengthCheck.model_validate({
        "id": "2.1.1", "section": "2.1", "title": "t", "kind": "secret_strength",
        "env": "T_JWT", "min_length": 32, "min_entropy_bits": 128, **fields})


def values(outcome: Outcome, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value for m in outcome.measurements
            if m.family == family}


@pytest.mark.parametrize("phrase", HUMAN_PHRASES, ids=["dashes", "underscores", "words",
                                                        "keyboard-run"])
async def test_human_phrase_fails_the_strength_rule(
        phrase: str, ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(phrase) >= 32
    # The character-class estimate alone (the old rule) let these through.
    assert alphabet_bits(phrase) >= 128
    monkeypatch.setenv("T_JWT", phrase)
    outcome = await secret_strength.run(jwt_check(), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "strength estimate" in outcome.message
    rules = values(outcome, "readiness_secret_rule_ok")
    assert rules[(("rule", "entropy"),)] == 0.0
    assert rules[(("rule", "length"),)] == 1.0
    assert values(outcome, "readiness_secret_entropy_bytes")[()] < 16
    assert phrase not in repr(outcome)
    for word in ("qbitel", "production", "secret", "horse", "zaq12"):
        if word in phrase.lower():
            assert word not in outcome.message.lower()


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(32),
                                  lambda: secrets.token_hex(32),
                                  lambda: secrets.token_urlsafe(200)],
                         ids=["urlsafe-32-bytes", "hex-32-bytes", "urlsafe-200-bytes"])
async def test_random_secret_passes(make: Any, ctx: RuntimeContext,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    value = make()
    monkeypatch.setenv("T_JWT", value)
    outcome = await secret_strength.run(jwt_check(), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert values(outcome, "readiness_secret_entropy_bytes")[()] >= 16
    assert values(outcome, "readiness_secret_entropy_target_bytes")[()] == 16
    assert value not in repr(outcome)


def test_a_longer_phrase_is_not_rescued_by_length() -> None:
    phrase = "qbitel-production-jwt-secret-2024-do-not-share-with-anyone-ever"
    assert estimate_bits(phrase) < 128 <= alphabet_bits(phrase)


async def test_short_random_secret_fails_length_not_strength(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_JWT", secrets.token_urlsafe(23))  # 31 characters
    outcome = await secret_strength.run(jwt_check(), ctx)
    assert outcome.status is Status.FAIL
    assert "shorter than 32 characters" in outcome.message


def exposition_of(cfg: config.Config) -> bytes:
    """One sample of every family the configured kinds may emit, rendered as served."""
    specs = list(cfg.checks)
    families = families_of(specs)
    store = Store(specs)
    sample = tuple(Measurement(f.name, 1.0, dict.fromkeys(f.labels, "x"))
                   for f in families.values())
    for spec in specs:
        store.record(spec.id, Outcome.passed("ok", sample), time.time(), 0.1)
    return Exposition(store, families, ReloadState(successful=True,
                                                   last_success=time.time())).render(False)


def promtool_problems(body: bytes) -> list[str]:
    result = subprocess.run(["promtool", "check", "metrics"], input=body,
                            capture_output=True, timeout=60, check=False)
    return [line for line in (result.stdout + result.stderr).decode().splitlines()
            if line.strip()]


def test_embedded_default_exposition_passes_promtool() -> None:
    assert promtool_problems(exposition_of(config.load(None, {}))) == []


def test_full_preset_secret_metrics_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text("include: [qbitel-production]\n")
    cfg = config.load(path, {})
    body = exposition_of(cfg)
    assert b"readiness_secret_entropy_bytes" in body
    # Families of the kinds this change owns; others' names are their owners' tests.
    mine = ("readiness_secret_", "readiness_report_", "readiness_file_",
            "readiness_aggregate_", "readiness_docker_", "readiness_tls_")
    assert [p for p in promtool_problems(body) if p.startswith(mine)] == []
