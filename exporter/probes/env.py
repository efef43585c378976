"""`env`: the environment the application runs with matches its contract (6.1, 1.2.3).

With `workload:` the variables are read from the application's pods through the
Kubernetes API (names from `env` and from the keys of the ConfigMaps and Secrets named by
`envFrom`; values only of literals and ConfigMap entries, never of Secrets). Without it,
from the exporter's own environment or a dotenv file the application uses. Required
names, values that must hold (`expect: {TLS_ENABLED: [true]}`), blocks required when a
switch is on (`conditional`) and the documented list (`required_from: .env.example`)
are judged; only names are reported, never a value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
)
from exporter.probes.appenv.reader import open_reader
from exporter.probes.appenv.variables import VarTable, from_mapping, resolve
from exporter.probes.appenv.workload import WorkloadOption
from exporter.probes.dotenv import DotenvError, parse_dotenv

TRUE_VALUES = ["true", "1", "yes", "on"]


class Condition(BaseModel):
    """Variables required only when another variable has a given value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(description="variable to test, e.g. TLS_ENABLED")
    equals: list[str] = Field(default=TRUE_VALUES,
                              description="values (case-insensitive) that switch it on")
    required: list[str] = Field(min_length=1)


class EnvCheck(CheckSpec):
    """`kind: env` options."""

    kind: Literal["env"]
    required: list[str] = Field(default=[], description="must be set and non-empty")
    recommended: list[str] = Field(default=[], description="reported when missing; "
                                   "fail only with fail_on_recommended")
    conditional: list[Condition] = []
    expect: dict[str, list[str]] = Field(default={}, description="variable -> accepted "
                                         "values (case-insensitive), e.g. TLS_ENABLED: [true]")
    required_from: Path | None = Field(default=None, description="the documented list: a "
                                       "dotenv-style file (.env.example) whose names are "
                                       "required (names of conditional blocks follow their "
                                       "condition, recommended ones stay recommended)")
    fail_on_recommended: bool = False
    fail_on_undocumented: bool = Field(default=False, description="fail when the "
                                       "application defines a name the lists do not name "
                                       "(pods or env_file only)")
    env_file: Path | None = Field(default=None, description="read this dotenv file "
                                  "instead of the exporter's environment")
    workload: WorkloadOption = Field(default=None, description="read the application's "
                                         "pods through the Kubernetes API instead")

    @model_validator(mode="after")
    def _one_source(self) -> EnvCheck:
        if self.env_file is not None and self.workload is not None:
            raise ValueError("set at most one of 'env_file' or 'workload'")
        for name, values in self.expect.items():
            if not values:
                raise ValueError(f"expect.{name}: give at least one accepted value")
        return self


PRESENT = MetricFamily(
    "readiness_env_variable_present",
    "1 when the variable is set and non-empty, 0 when missing (value never exported).",
    ("variable", "level"),
)
EXPECTED = MetricFamily(
    "readiness_env_variable_expected",
    "1 when the variable holds one of the accepted values of `expect`, 0 when it does not "
    "or cannot be read (value never exported).",
    ("variable",),
)
UNDOCUMENTED = MetricFamily(
    "readiness_env_undocumented_variables",
    "Variables the application defines that the documented list does not name.",
)


@dataclass(slots=True)
class Verdict:
    """What was found in one scope (names only)."""

    scope: str
    required: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    missing_recommended: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    undocumented: list[str] = field(default_factory=list)
    expected_ok: dict[str, bool] = field(default_factory=dict)


def _condition(cond: Condition, table: VarTable, verdict: Verdict) -> bool:
    var = table.variables.get(cond.when)
    if var is None or not var.present:
        if table.known(cond.when) is None:
            verdict.unknown.append(f"{cond.when} (may come from {', '.join(table.unresolved)})")
        return False
    if var.value is None:
        verdict.unknown.append(f"{cond.when} comes from {var.origin}: its value cannot be "
                               f"read, so {', '.join(cond.required)} cannot be judged")
        return False
    return var.value.strip().lower() in {v.lower() for v in cond.equals}


def _expect(name: str, accepted: list[str], table: VarTable, verdict: Verdict) -> None:
    var = table.variables.get(name)
    wanted = " or ".join(accepted)
    ok = False
    if var is None or not var.present:
        if table.known(name) is None:
            verdict.unknown.append(f"{name} (may come from {', '.join(table.unresolved)})")
        else:
            verdict.wrong.append(f"{name} is not set (must be {wanted})")
    elif var.value is None:
        verdict.unknown.append(f"{name} comes from {var.origin}: its value cannot be "
                               f"verified (must be {wanted}; keep it in a ConfigMap or a "
                               "literal)")
    elif var.value.strip().lower() not in {v.lower() for v in accepted}:
        verdict.wrong.append(f"{name} is not {wanted}")
    else:
        ok = True
    verdict.expected_ok[name] = ok


def judge(spec: EnvCheck, table: VarTable, documented: list[str]) -> Verdict:
    """Judge one scope against the spec and the documented names."""
    verdict = Verdict(table.scope)
    conditional = {n for c in spec.conditional for n in c.required}
    required = list(spec.required) + [n for n in documented if n not in conditional
                                      and n not in spec.recommended]
    for cond in spec.conditional:
        if _condition(cond, table, verdict):
            required += cond.required
    for name, accepted in spec.expect.items():
        _expect(name, accepted, table, verdict)
    verdict.required = list(dict.fromkeys(required))
    for name in verdict.required:
        state = table.known(name)
        if state is None:
            verdict.unknown.append(f"{name} (may come from {', '.join(table.unresolved)})")
        elif not state:
            verdict.missing.append(name)
    verdict.missing_recommended = [n for n in spec.recommended if table.known(n) is False]
    if table.complete and (documented or spec.fail_on_undocumented):
        named = set(documented) | set(spec.required) | set(spec.recommended) | conditional \
            | set(spec.expect) | {c.when for c in spec.conditional}
        verdict.undocumented = sorted(n for n, var in table.variables.items()
                                      if n not in named and not var.downward)
    return verdict


def _failing(spec: EnvCheck, verdict: Verdict) -> bool:
    return bool(verdict.missing or verdict.wrong
                or (spec.fail_on_recommended and verdict.missing_recommended)
                or (spec.fail_on_undocumented and verdict.undocumented))


def _describe(verdict: Verdict, prefix: bool) -> str:
    parts = []
    if verdict.missing:
        parts.append(f"required missing: {', '.join(verdict.missing)}")
    parts += verdict.wrong
    if verdict.missing_recommended:
        parts.append(f"recommended missing: {', '.join(verdict.missing_recommended)}")
    if verdict.undocumented:
        parts.append(f"not in the documented list: {', '.join(verdict.undocumented)}")
    if verdict.unknown:
        parts.append(f"cannot verify: {'; '.join(verdict.unknown)}")
    text = "; ".join(parts)
    return f"{verdict.scope}: {text}" if prefix and text else text


def _measurements(spec: EnvCheck, verdicts: list[Verdict],
                  tables: list[VarTable]) -> tuple[Measurement, ...]:
    out: list[Measurement] = []
    required = list(dict.fromkeys(n for v in verdicts for n in v.required))
    for level, names in (("required", required), ("recommended", spec.recommended)):
        for name in names:
            present = all(t.known(name) is True for t in tables)
            out.append(Measurement(PRESENT.name, 1.0 if present else 0.0,
                                   {"variable": name, "level": level}))
    for name in spec.expect:
        ok = all(v.expected_ok.get(name, False) for v in verdicts)
        out.append(Measurement(EXPECTED.name, 1.0 if ok else 0.0, {"variable": name}))
    if any(t.complete for t in tables):
        out.append(Measurement(UNDOCUMENTED.name,
                               float(len({n for v in verdicts for n in v.undocumented}))))
    return tuple(out)


async def _tables(spec: EnvCheck, ctx: ProbeContext) -> list[VarTable]:
    if spec.workload is not None:
        reader = await open_reader(ctx, spec.workload)
        pods = await reader.templates(spec.workload.source or "pods")
        return [await resolve(reader, pod) for pod in pods]
    if spec.env_file is not None:
        env = await ctx.run_blocking(parse_dotenv, spec.env_file)
        return [from_mapping(env, str(spec.env_file), complete=True)]
    return [from_mapping(dict(os.environ), "the exporter's environment", complete=False)]


def _summary(spec: EnvCheck, verdicts: list[Verdict], documented: list[str]) -> str:
    checked = len({n for v in verdicts for n in v.required}) + len(spec.recommended)
    text = f"all {checked} variables set"
    if spec.expect:
        values = [f"{name} is {' or '.join(accepted)}" for name, accepted in spec.expect.items()]
        text += f", {', '.join(values)}"
    if documented:
        text += f", every name matches the documented list ({len(documented)} names)"
    if spec.workload is not None:
        text += f" in {', '.join(v.scope for v in verdicts)}"
    return text


async def run(spec: EnvCheck, ctx: ProbeContext) -> Outcome:
    """Judge the variables of every scope (each pod template, or one environment)."""
    try:
        documented = list(await ctx.run_blocking(parse_dotenv, spec.required_from)) \
            if spec.required_from is not None else []
        tables = await _tables(spec, ctx)
    except DotenvError as exc:
        return Outcome.errored(Reason.CONFIG, str(exc))
    verdicts = [judge(spec, table, documented) for table in tables]
    measurements = _measurements(spec, verdicts, tables)
    prefix = spec.workload is not None
    message = "; ".join(m for m in (_describe(v, prefix) for v in verdicts) if m)
    if any(_failing(spec, v) for v in verdicts):
        return Outcome.failed(message, measurements)
    if any(v.unknown for v in verdicts):
        return Outcome.errored(Reason.CONFIG, message, measurements)
    return Outcome.passed(message or _summary(spec, verdicts, documented), measurements)


KIND = ProbeKind(
    name="env",
    spec=EnvCheck,
    run=run,
    summary="The application's environment (its pods through the Kubernetes API, or the "
    "exporter's environment) defines the required and documented variables with the "
    "expected values (never exports values).",
    metrics=(PRESENT, EXPECTED, UNDOCUMENTED),
)
