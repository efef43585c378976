"""`env`: environment variables of the deployment contract are set (6.1, 1.2.3).

Reads the exporter's own environment, or a dotenv file the application uses. Only
names and presence are reported, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
)
from exporter.probes.dotenv import DotenvError, parse_dotenv


class Condition(BaseModel):
    """Variables required only when another variable has a given value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(description="variable to test, e.g. TLS_ENABLED")
    equals: list[str] = Field(default=["true", "1", "yes", "on"],
                              description="values (case-insensitive) that switch it on")
    required: list[str] = Field(min_length=1)


class EnvCheck(CheckSpec):
    """`kind: env` options."""

    kind: Literal["env"]
    required: list[str] = Field(default=[], description="must be set and non-empty")
    recommended: list[str] = Field(default=[], description="reported when missing; "
                                   "fail only with fail_on_recommended")
    conditional: list[Condition] = []
    fail_on_recommended: bool = False
    env_file: Path | None = Field(default=None, description="read this dotenv file "
                                  "instead of the exporter's environment")


PRESENT = MetricFamily(
    "readiness_env_variable_present",
    "1 when the variable is set and non-empty, 0 when missing (value never exported).",
    ("variable", "level"),
)


def _missing(names: list[str], env: Mapping[str, str]) -> list[str]:
    return [name for name in names if not env.get(name, "").strip()]


async def run(spec: EnvCheck, ctx: ProbeContext) -> Outcome:
    """Check which variables are present."""
    if spec.env_file is not None:
        try:
            env: Mapping[str, str] = await ctx.run_blocking(parse_dotenv, spec.env_file)
        except DotenvError as exc:
            return Outcome.errored(Reason.CONFIG, str(exc))
    else:
        env = os.environ

    required = list(spec.required)
    for condition in spec.conditional:
        if env.get(condition.when, "").strip().lower() in {v.lower() for v in condition.equals}:
            required.extend(condition.required)

    measurements: list[Measurement] = []
    for level, names in (("required", required), ("recommended", spec.recommended)):
        for name in names:
            present = 1.0 if env.get(name, "").strip() else 0.0
            measurements.append(Measurement(PRESENT.name, present,
                                            {"variable": name, "level": level}))

    missing_required = _missing(required, env)
    missing_recommended = _missing(spec.recommended, env)
    parts = []
    if missing_required:
        parts.append(f"required missing: {', '.join(missing_required)}")
    if missing_recommended:
        parts.append(f"recommended missing: {', '.join(missing_recommended)}")
    checked = len(required) + len(spec.recommended)
    message = "; ".join(parts) or f"all {checked} variables set"
    if missing_required or (spec.fail_on_recommended and missing_recommended):
        return Outcome.failed(message, tuple(measurements))
    return Outcome.passed(message, tuple(measurements))


KIND = ProbeKind(
    name="env",
    spec=EnvCheck,
    run=run,
    summary="Required / recommended environment variables are set (never exports values).",
    metrics=(PRESENT,),
)
