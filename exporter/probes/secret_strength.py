"""`secret_strength`: a secret is long, hard to guess and not a placeholder (2.1.1, 6.1).

The secret comes from an environment variable or a file. Its strength is estimated by
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

from pydantic import Field, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
)
from exporter.probes.strength_estimate import estimate_bits

PLACEHOLDERS = (
    "changeme", "change-me", "change_me", "secret", "password", "example", "default",
    "placeholder", "your-secret", "your_secret", "yoursecret", "todo", "fixme", "xxx",
    "dummy", "test", "insecure", "notsecret", "replace", "12345",
)


class SecretStrengthCheck(CheckSpec):
    """`kind: secret_strength` options."""

    kind: Literal["secret_strength"]
    env: str | None = Field(default=None, description="environment variable holding it")
    file: Path | None = Field(default=None, description="file holding it")
    min_length: int = Field(default=32, ge=1, description="minimum length in characters")
    exact_bytes: int | None = Field(default=None, gt=0, description=(
        "required key size in bytes after decoding (32 for AES-256)"))
    encoding: Literal["auto", "raw", "hex", "base64"] = Field(default="auto", description=(
        "how a key is written; auto accepts raw bytes, hex or base64 of exact_bytes"))
    min_entropy_bits: float = Field(default=128.0, ge=0, description=(
        "minimum strength estimate in bits (exported as bytes: bits / 8)"))

    @model_validator(mode="after")
    def _one_source(self) -> SecretStrengthCheck:
        if (self.env is None) == (self.file is None):
            raise ValueError("set exactly one of 'env' or 'file'")
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


async def run(spec: SecretStrengthCheck, ctx: ProbeContext) -> Outcome:
    """Assess the secret's strength."""
    source = spec.env if spec.env is not None else str(spec.file)
    value = await ctx.run_blocking(_read, spec) if spec.file else _read(spec)
    target = Measurement(ENTROPY_MIN.name, spec.min_entropy_bits / 8)
    if value is None:
        return Outcome.failed(f"{source} is not set", (Measurement(PRESENT.name, 0.0), target))
    result = await ctx.run_blocking(assess, value, spec)  # zxcvbn is CPU work
    del value
    rules = {
        "length": result.length >= spec.min_length,
        "key_size": spec.exact_bytes is None or result.decoded_bytes == spec.exact_bytes,
        "entropy": result.entropy_bits >= spec.min_entropy_bits,
        "placeholder": not any(p.startswith("looks like") for p in result.problems),
    }
    measurements = (
        Measurement(PRESENT.name, 1.0),
        Measurement(ENTROPY.name, round(result.entropy_bits / 8, 2)),
        target,
        *(Measurement(RULE.name, 1.0 if ok else 0.0, {"rule": rule}) for rule, ok in rules.items()),
    )
    if result.problems:
        return Outcome.failed(f"{source} is weak: {'; '.join(result.problems)}", measurements)
    return Outcome.passed(
        f"{source} is strong (about {result.entropy_bits:.0f} bits)", measurements
    )


KIND = ProbeKind(
    name="secret_strength",
    spec=SecretStrengthCheck,
    run=run,
    summary="A secret (env or file) is long, hard to guess (structure-aware estimate), "
    "the right key size and no placeholder.",
    metrics=(PRESENT, ENTROPY, ENTROPY_MIN, RULE),
)
