"""`secret_strength`: a secret is long, hard to guess and not a placeholder (2.1.1, 6.1).

The secret comes from an environment variable, a file, a Kubernetes Secret
(`secret: {namespace, name, key}`) or, with `workload:`, from wherever the application's
pods take the variable `env` (reading a Secret is opt-in: the connection's
`secrets: data`). Its strength is estimated by
`strength_estimate` (words, separators, years and keyboard runs count for what they
are). Only derived facts (length rule met, strength estimate, which rule failed) leave
the probe, never the value.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import (
    CheckSpec,
    KubernetesConnectionName,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
)
from exporter.probes.appenv.reader import open_secret_value
from exporter.probes.appenv.secret_source import Found, app_secret
from exporter.probes.appenv.workload import WorkloadOption
from exporter.probes.strength_estimate import estimate_bits

PLACEHOLDERS = (
    "changeme", "change-me", "change_me", "secret", "password", "example", "default",
    "placeholder", "your-secret", "your_secret", "yoursecret", "todo", "fixme", "xxx",
    "dummy", "test", "insecure", "notsecret", "replace", "12345",
)


class SecretKey(BaseModel):
    """One key of a Kubernetes Secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class SecretStrengthCheck(CheckSpec):
    """`kind: secret_strength` options."""

    kind: Literal["secret_strength"]
    env: str | None = Field(default=None, description="environment variable holding it")
    file: Path | None = Field(default=None, description="file holding it")
    secret: SecretKey | None = Field(default=None, description="the Kubernetes Secret key "
                                     "holding it (needs the connection's secrets: data)")
    connection: KubernetesConnectionName | None = Field(
        default=None, description="the kubernetes connection of `secret` (default: "
        "kubernetes)")
    workload: WorkloadOption = Field(default=None, description="with env: read the "
                                         "variable where the application's pods take it "
                                         "from (a Secret needs its connection's "
                                         "secrets: data)")
    min_length: int = Field(default=32, ge=1, description="minimum length in characters")
    exact_bytes: int | None = Field(default=None, gt=0, description=(
        "required key size in bytes after decoding (32 for AES-256)"))
    encoding: Literal["auto", "raw", "hex", "base64"] = Field(default="auto", description=(
        "how a key is written; auto accepts raw bytes, hex or base64 of exact_bytes"))
    min_entropy_bits: float = Field(default=128.0, ge=0, description=(
        "minimum strength estimate in bits (exported as bytes: bits / 8)"))

    @model_validator(mode="before")
    @classmethod
    def _secret_connection(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("secret") is not None \
                and data.get("connection") is None:
            return {**data, "connection": "kubernetes"}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> SecretStrengthCheck:
        if sum(x is not None for x in (self.env, self.file, self.secret)) != 1:
            raise ValueError("set exactly one of 'env', 'file' or 'secret'")
        if self.workload is not None and self.env is None:
            raise ValueError("workload reads the variable named by 'env'; set env")
        return self


@dataclass(frozen=True, slots=True)
class Assessment:
    """What was found about a secret (no value)."""

    length: int
    entropy_bits: float
    problems: tuple[str, ...]
    decoded_bytes: int | None


# Bytes, the base unit (promtool flags `_bits`): 16 bytes = 128 bits.
ENTROPY = MetricFamily(
    "readiness_secret_entropy_bytes",
    "Estimated strength of the secret (log2 of the guesses needed) in bytes, i.e. bits / 8 "
    "(the value itself is never exported).",
)
ENTROPY_MIN = MetricFamily(
    "readiness_secret_entropy_target_bytes",
    "Minimum strength the check requires (min_entropy_bits / 8), in bytes.",
)
PRESENT = MetricFamily("readiness_secret_present", "1 when the secret is set, else 0.")
RULE = MetricFamily(
    "readiness_secret_rule_ok",
    "1 when the secret meets the rule (length, key_size, entropy, placeholder), else 0.",
    ("rule",),
)


def _decoded_size(value: str, encoding: str, wanted: int) -> int | None:
    candidates: list[int] = []
    if encoding in ("auto", "raw"):
        candidates.append(len(value.encode("utf-8")))
    if encoding in ("auto", "hex") and re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) % 2 == 0:
        candidates.append(len(value) // 2)
    if encoding in ("auto", "base64"):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(len(base64.b64decode(value + "=" * (-len(value) % 4),
                                                   altchars=b"-_" if "-" in value or "_" in value
                                                   else None, validate=True)))
    if not candidates:
        return None
    return wanted if wanted in candidates else candidates[0]


def _looks_placeholder(value: str) -> str | None:
    lowered = value.lower()
    if re.fullmatch(r"<[^>]*>", value.strip()) or "${" in value:
        return "an unfilled placeholder"
    if len(set(value)) <= 2:
        return "repeated characters"
    for word in PLACEHOLDERS:
        if lowered == word or (word in lowered and len(lowered) < len(word) * 3):
            return "a well-known placeholder"
    if re.fullmatch(r"(.{1,16}?)\1+", value):
        return "a repeated pattern"
    return None


def assess(value: str, spec: SecretStrengthCheck) -> Assessment:
    """Judge `value` against the spec's rules."""
    problems = []
    if len(value) < spec.min_length:
        problems.append(f"shorter than {spec.min_length} characters")
    decoded: int | None = None
    if spec.exact_bytes is not None:
        decoded = _decoded_size(value, spec.encoding, spec.exact_bytes)
        if decoded != spec.exact_bytes:
            problems.append(f"not a {spec.exact_bytes}-byte key ({spec.encoding})")
    bits = estimate_bits(value)
    placeholder = _looks_placeholder(value)
    if placeholder:
        problems.append(f"looks like {placeholder}")
    if bits < spec.min_entropy_bits:
        problems.append(f"strength estimate {bits:.0f} bits < {spec.min_entropy_bits:.0f}")
    return Assessment(len(value), bits, tuple(problems), decoded)


def _read(spec: SecretStrengthCheck) -> str | None:
    if spec.env is not None:
        value = os.environ.get(spec.env)
        return value if value else None
    assert spec.file is not None
    try:
        return spec.file.read_text(encoding="utf-8").rstrip("\r\n") or None
    except (OSError, UnicodeDecodeError):
        return None


async def _sources(spec: SecretStrengthCheck, ctx: ProbeContext) -> list[Found]:
    """Every value to judge, each with a description of where it comes from."""
    if spec.workload is not None and spec.env is not None:
        return await app_secret(ctx, spec.workload, spec.env)
    if spec.secret is not None:
        ref = spec.secret
        connection = spec.connection or "kubernetes"
        value = await open_secret_value(ctx, connection, ref.namespace, ref.name, ref.key)
        return [Found(f"Secret {ref.namespace}/{ref.name} key {ref.key}", value or None)]
    source = spec.env if spec.env is not None else str(spec.file)
    return [Found(source, await ctx.run_blocking(_read, spec) if spec.file else _read(spec))]


def _rules(spec: SecretStrengthCheck, result: Assessment) -> dict[str, bool]:
    return {
        "length": result.length >= spec.min_length,
        "key_size": spec.exact_bytes is None or result.decoded_bytes == spec.exact_bytes,
        "entropy": result.entropy_bits >= spec.min_entropy_bits,
        "placeholder": not any(p.startswith("looks like") for p in result.problems),
    }


async def run(spec: SecretStrengthCheck, ctx: ProbeContext) -> Outcome:
    """Assess the secret's strength (each source the application uses, the worst counts)."""
    target = Measurement(ENTROPY_MIN.name, spec.min_entropy_bits / 8)
    found = await _sources(spec, ctx)
    missing = [f.origin for f in found if f.value is None]
    if missing:
        return Outcome.failed(f"{', '.join(missing)} is not set",
                              (Measurement(PRESENT.name, 0.0), target))
    results: list[tuple[str, Assessment]] = []
    for item in found:
        assert item.value is not None
        results.append((item.origin, await ctx.run_blocking(assess, item.value, spec)))
    del found  # zxcvbn is CPU work (above); the values are not needed any more
    rules = {name: all(_rules(spec, r)[name] for _, r in results)
             for name in ("length", "key_size", "entropy", "placeholder")}
    weakest = min(r.entropy_bits for _, r in results)
    measurements = (
        Measurement(PRESENT.name, 1.0),
        Measurement(ENTROPY.name, round(weakest / 8, 2)),
        target,
        *(Measurement(RULE.name, 1.0 if ok else 0.0, {"rule": rule}) for rule, ok in rules.items()),
    )
    weak = [f"{origin} is weak: {'; '.join(r.problems)}" for origin, r in results if r.problems]
    if weak:
        return Outcome.failed("; ".join(weak), measurements)
    return Outcome.passed("; ".join(f"{origin} is strong (about {r.entropy_bits:.0f} bits)"
                                    for origin, r in results), measurements)


KIND = ProbeKind(
    name="secret_strength",
    spec=SecretStrengthCheck,
    run=run,
    summary="A secret (env, file, or the Kubernetes Secret the application uses) is long, "
    "hard to guess (structure-aware estimate), the right key size and no placeholder.",
    metrics=(PRESENT, ENTROPY, ENTROPY_MIN, RULE),
)
