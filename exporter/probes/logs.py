"""`logs`: the application writes structured logs (5.2.1).

Samples the latest N lines of a log file (read backwards from the end, so the file's
size does not matter) and checks the share that parse as a JSON object carrying the
required fields (time, level, message, correlation id; names configurable). Log
content is never copied into messages or labels.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
)

FIELD_ROLES = ("time", "level", "message", "correlation_id")
_BLOCK = 64 * 1024


class LogFields(BaseModel):
    """Accepted names (dotted paths for nested objects) of each required field.

    A line has the field when any of the names is present and not empty; an empty list
    makes that field optional.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: list[str] = ["time", "timestamp", "@timestamp", "ts"]
    level: list[str] = ["level", "severity", "levelname", "log.level"]
    message: list[str] = ["message", "msg", "event"]
    correlation_id: list[str] = ["correlation_id", "correlationId", "request_id",
                                 "requestId", "trace_id", "traceId"]


class LogsCheck(CheckSpec):
    """`kind: logs` options."""

    kind: Literal["logs"]
    path: Path = Field(description="application log file")
    lines: int = Field(default=200, gt=0, le=100_000, description="latest lines sampled")
    min_share: float = Field(default=0.95, ge=0, le=1, description="share of sampled lines "
                             "that must be structured")
    min_lines: int = Field(default=1, ge=1, description="fewer sampled lines fail")
    fields: LogFields = LogFields()
    max_age: Duration | None = Field(default=None, gt=0, description="the file must have "
                                     "been written within this time (null: not checked)")
    max_bytes: int = Field(default=8 * 1024 * 1024, gt=0, description="read at most this "
                           "much from the end of the file")


SAMPLED = MetricFamily("readiness_logs_sampled_lines", "Log lines sampled (the latest N).")
STRUCTURED = MetricFamily("readiness_logs_structured_lines",
                          "Sampled lines that are JSON objects with every required field.")
NOT_JSON = MetricFamily("readiness_logs_unparsed_lines",
                        "Sampled lines that are not a JSON object.")
MISSING = MetricFamily("readiness_logs_missing_field_lines",
                       "Sampled JSON lines without the field.", ("field",))
RATIO = MetricFamily("readiness_logs_structured_ratio",
                     "Share of sampled lines that are structured (0-1).")
TARGET = MetricFamily("readiness_logs_structured_ratio_target",
                      "Minimum share of structured lines (the objective).")
MODIFIED = MetricFamily("readiness_logs_modified_timestamp_seconds",
                        "Last modification time of the log file.")
METRICS = (SAMPLED, STRUCTURED, NOT_JSON, MISSING, RATIO, TARGET, MODIFIED)


@dataclass(frozen=True, slots=True)
class Tail:
    lines: list[bytes]
    modified: float


def read_tail(path: Path, count: int, max_bytes: int) -> Tail:
    """The last `count` non-empty lines of `path`, reading blocks backwards."""
    with path.open("rb") as handle:
        modified = os.fstat(handle.fileno()).st_mtime
        end = handle.seek(0, os.SEEK_END)
        position = end
        chunks: list[bytes] = []
        newlines = 0
        while position > 0 and newlines <= count and end - position < max_bytes:
            step = min(_BLOCK, position, max_bytes - (end - position))
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    lines = data.split(b"\n")
    if position > 0:
        lines = lines[1:]  # the first piece is a partial line
    kept = [line.rstrip(b"\r") for line in lines if line.strip()]
    return Tail(kept[-count:], modified)


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    if dotted in record:
        return record[dotted]
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class Sample:
    sampled: int
    structured: int
    not_json: int
    missing: dict[str, int]


def classify(lines: list[bytes], fields: LogFields) -> Sample:
    """Count structured lines, non-JSON lines and missing fields."""
    missing: Counter[str] = Counter()
    structured = not_json = 0
    names = {role: getattr(fields, role) for role in FIELD_ROLES}
    for raw in lines:
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            not_json += 1
            continue
        if not isinstance(record, dict):
            not_json += 1
            continue
        complete = True
        for role, candidates in names.items():
            if candidates and not any(_lookup(record, n) not in (None, "") for n in candidates):
                missing[role] += 1
                complete = False
        structured += complete
    return Sample(len(lines), structured, not_json, {r: missing[r] for r in FIELD_ROLES
                                                     if names[r]})


async def run(spec: LogsCheck, ctx: ProbeContext) -> Outcome:
    """Sample the log's tail and compare the structured share with `min_share`."""
    try:
        tail = await ctx.run_blocking(read_tail, spec.path, spec.lines, spec.max_bytes)
    except FileNotFoundError:
        return Outcome.failed(f"log file {spec.path} does not exist")
    except IsADirectoryError:
        return Outcome.errored(Reason.CONFIG, f"{spec.path} is a directory, not a log file")
    except OSError as exc:
        return Outcome.errored(Reason.CONFIG, f"log file {spec.path} cannot be read: "
                               f"{exc.strerror}")
    sample = await ctx.run_blocking(classify, tail.lines, spec.fields)
    ratio = sample.structured / sample.sampled if sample.sampled else 0.0
    measurements = [
        Measurement(SAMPLED.name, float(sample.sampled)),
        Measurement(STRUCTURED.name, float(sample.structured)),
        Measurement(NOT_JSON.name, float(sample.not_json)),
        Measurement(RATIO.name, ratio),
        Measurement(TARGET.name, spec.min_share),
        Measurement(MODIFIED.name, tail.modified),
        *(Measurement(MISSING.name, float(n), {"field": f}) for f, n in sample.missing.items()),
    ]
    problems: list[str] = []
    if sample.sampled < spec.min_lines:
        problems.append(f"only {sample.sampled} lines (min {spec.min_lines})")
    if spec.max_age is not None and ctx.now() - tail.modified > spec.max_age:
        problems.append(f"not written for {(ctx.now() - tail.modified) / 60:.0f} min")
    summary = (f"{ratio:.1%} of the last {sample.sampled} lines structured "
               f"(min {spec.min_share:.0%})")
    if sample.sampled and ratio < spec.min_share:
        details = [f"{sample.not_json} not JSON"] if sample.not_json else []
        details += [f"{n} without {f}" for f, n in sample.missing.items() if n]
        problems.append(", ".join(details))
    if problems:
        return Outcome.failed(f"{summary}: " + "; ".join(problems), tuple(measurements))
    return Outcome.passed(summary, tuple(measurements))


KIND = ProbeKind(
    name="logs",
    spec=LogsCheck,
    run=run,
    summary="The latest N lines of the application log are JSON with time, level, message "
    "and correlation id (share against a threshold).",
    metrics=METRICS,
)
