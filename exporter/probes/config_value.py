"""`config_value`: values in the application's config file meet policy (2.1.5, 2.4.4, 9.3).

Reads a YAML, JSON or `.env` file and compares values at dotted paths
(`database.pool_size`, `servers.0.port`) with `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`.
Numbers and booleans are shown in messages and exported; a string is shown only when it
equals a configured value of the assertion (any file value may be a password, whatever
its key is called: `Authorization`, `pwd`, `cookie`), otherwise only its length; strings
are never exported.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.dotenv import DotenvError, parse_dotenv
from exporter.probes.observed import describe

Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "exists"]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
MISSING = object()
"""What `lookup` returns when the path is absent."""


class Assertion(BaseModel):
    """One comparison: the value at `path` `op` `value`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, description="dotted path, list indexes as numbers")
    op: Op = "=="
    value: Any = None

    @model_validator(mode="after")
    def _operand(self) -> Assertion:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("'in' needs a list value")
        if self.op != "exists" and self.value is None:
            raise ValueError(f"'{self.op}' needs a value")
        return self


class ConfigValueCheck(CheckSpec):
    """`kind: config_value` options."""

    kind: Literal["config_value"]
    file: Path
    format: Literal["auto", "yaml", "json", "dotenv"] = "auto"
    assertions: list[Assertion] = Field(min_length=1)


OK = MetricFamily(
    "readiness_config_value_ok", "1 when the value at the path meets the assertion, else 0.",
    ("path",),
)
VALUE = MetricFamily(
    "readiness_config_value", "The numeric value found at the path (numbers and booleans only).",
    ("path",),
)


def load_document(path: Path, fmt: str) -> Any:
    """Parse the file; `ProbeError(config)` naming the problem when it cannot be read."""
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = {".json": "json", ".env": "dotenv"}.get(suffix, "yaml")
        if path.name.startswith(".env"):
            fmt = "dotenv"
    try:
        if fmt == "dotenv":
            return parse_dotenv(path)
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except DotenvError as exc:
        raise ProbeError(Reason.CONFIG, str(exc)) from None
    except FileNotFoundError:
        raise ProbeError(Reason.CONFIG, f"{path} does not exist") from None
    except OSError as exc:
        raise ProbeError(Reason.CONFIG, f"{path} cannot be read: {exc.strerror}") from None
    except (ValueError, yaml.YAMLError):
        raise ProbeError(Reason.CONFIG, f"{path} is not valid {fmt}") from None


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path, or a sentinel when absent."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def _coerce(found: Any, expected: Any) -> Any:
    """Make `.env` strings comparable with numbers and booleans in the config."""
    if isinstance(found, str) and isinstance(expected, bool):
        lowered = found.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
    if isinstance(found, str) and isinstance(expected, int | float) and not isinstance(
        expected, bool
    ):
        try:
            return float(found) if "." in found else int(found)
        except ValueError:
            return found
    return found


def _show(assertion: Assertion, value: Any) -> str:
    """The found value as a message may show it (strings only when configured)."""
    public = assertion.value if isinstance(assertion.value, list) else [assertion.value]
    return describe(value, public)


def evaluate(assertion: Assertion, document: Any) -> tuple[bool, Any, str | None]:
    """(ok, found value, problem text or None)."""
    found = lookup(document, assertion.path)
    if found is MISSING:
        return False, None, f"{assertion.path} is missing"
    if assertion.op == "exists":
        return True, found, None
    if assertion.op == "in":
        options = assertion.value
        found_c = _coerce(found, options[0]) if options else found
        ok = found_c in options
    else:
        found_c = _coerce(found, assertion.value)
        try:
            ok = bool(_OPS[assertion.op](found_c, assertion.value))
        except TypeError:
            return False, found, (f"{assertion.path} is {_show(assertion, found)}, "
                                  f"not comparable with {assertion.value!r}")
    if ok:
        return True, found_c, None
    return False, found_c, (f"{assertion.path} is {_show(assertion, found_c)}, "
                            f"expected {assertion.op} {assertion.value!r}")


async def run(spec: ConfigValueCheck, ctx: ProbeContext) -> Outcome:
    """Evaluate every assertion against the file."""
    document = await ctx.run_blocking(load_document, spec.file, spec.format)
    measurements: list[Measurement] = []
    problems: list[str] = []
    for assertion in spec.assertions:
        ok, found, problem = evaluate(assertion, document)
        labels = {"path": assertion.path}
        measurements.append(Measurement(OK.name, 1.0 if ok else 0.0, labels))
        if isinstance(found, bool | int | float):
            measurements.append(Measurement(VALUE.name, float(found), labels))
        if problem:
            problems.append(problem)
    if problems:
        return Outcome.failed(f"{spec.file}: {'; '.join(problems[:5])}", tuple(measurements))
    return Outcome.passed(
        f"{spec.file}: {len(spec.assertions)} value(s) within policy", tuple(measurements)
    )


KIND = ProbeKind(
    name="config_value",
    spec=ConfigValueCheck,
    run=run,
    summary="Values in a YAML/JSON/.env config file compared with ==, !=, <, <=, >, >=, in.",
    metrics=(OK, VALUE),
)
