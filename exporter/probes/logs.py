"""`logs`: the application writes structured logs (5.2.1).

Samples the latest N lines of a log file (read backwards from the end, so the file's
size does not matter) or of a pod's log through the Kubernetes API (`tailLines`,
bounded by `limitBytes`), and checks the share that parse as a JSON object carrying the
required fields (time, level, message, correlation id; names configurable). Log
content is never copied into messages or labels.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.appenv.workload import AppWorkload, WorkloadOption
from exporter.probes.kubernetes.connection import cluster_of

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


_POD_OPTIONS = ("connection", "namespace", "pod", "label_selector", "container")


class LogsCheck(CheckSpec):
    """`kind: logs` options: `source: file` (`path`) or `source: pod` (Kubernetes API)."""

    connection_fields: ClassVar[dict[str, str]] = {"connection": "kubernetes"}

    kind: Literal["logs"]
    source: Literal["file", "pod"] = Field(default="file", description="where the log is "
                                           "read: a file, or a pod's log through the API")
    workload: WorkloadOption = Field(
        default=None, description="the application's workload ({namespace, selector}, "
        "`inputs.app_workload`): when set, its Running pods' logs are read (source: pod, "
        "label_selector: its selector) and `path` is only the non-Kubernetes fallback")
    path: Path | None = Field(default=None, description="application log file (source: file)")
    connection: str | None = Field(default=None, description="`kubernetes` connection "
                                   "(source: pod)")
    namespace: str | None = Field(default=None, min_length=1,
                                  description="the pod's namespace (source: pod)")
    pod: str | None = Field(default=None, min_length=1, description="pod name")
    label_selector: str | None = Field(default=None, min_length=1, description="or: the "
                                       "newest Running pods matching this selector")
    container: str | None = Field(default=None, min_length=1, description="container "
                                  "(default: the pod's only container)")
    max_pods: int = Field(default=1, ge=1, le=10, description="with label_selector: "
                          "sample this many of the newest Running pods, merged")
    lines: int = Field(default=200, gt=0, le=100_000, description="latest lines sampled")
    min_share: float = Field(default=0.95, ge=0, le=1, description="share of sampled lines "
                             "that must be structured")
    min_lines: int = Field(default=1, ge=1, description="fewer sampled lines fail")
    fields: LogFields = LogFields()
    max_age: Duration | None = Field(default=None, gt=0, description="the file must have "
                                     "been written within this time (null: not checked)")
    max_bytes: int = Field(default=8 * 1024 * 1024, gt=0, description="read at most this "
                           "much from the end of the file (per pod: `limitBytes`)")
    max_error_share: float | None = Field(default=None, ge=0, le=1, description="error "
                                          "rate: at most this share of the sampled lines "
                                          "may be errors (null: not checked)")
    error_levels: list[str] = Field(
        default=["error", "err", "critical", "crit", "fatal", "alert", "emerg",
                 "emergency", "panic"], min_length=1,
        description="level values (case-insensitive) that make a line an error; numeric "
                    "levels count from 50 (pino/bunyan error) up")

    @model_validator(mode="before")
    @classmethod
    def _from_workload(cls, data: Any) -> Any:
        """`workload:` set: read its pods' logs instead of `path`."""
        if not isinstance(data, dict) or data.get("workload") is None:
            return data
        workload = AppWorkload.model_validate(data["workload"])
        pods = {"source": "pod", "connection": data.get("connection") or workload.connection,
                "namespace": workload.namespace, "label_selector": workload.selector}
        if len(workload.containers) == 1 and data.get("container") is None:
            pods["container"] = workload.containers[0]
        return {**{k: v for k, v in data.items() if k != "path"}, **pods}

    @model_validator(mode="after")
    def _source_options(self) -> Self:
        if self.source == "file":
            if self.path is None:
                raise ValueError("path is required with source: file")
            extra = [name for name in _POD_OPTIONS if getattr(self, name) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)}: only with source: pod")
            return self
        if self.path is not None:
            raise ValueError("path: only with source: file")
        if self.connection is None or self.namespace is None:
            raise ValueError("source: pod needs connection and namespace")
        if (self.pod is None) == (self.label_selector is None):
            raise ValueError("source: pod needs exactly one of pod and label_selector")
        if self.pod is not None and self.max_pods != 1:
            raise ValueError("max_pods: only with label_selector")
        return self


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
                        "Last modification time of the log file (pod: newest line's time).")
ERRORS = MetricFamily("readiness_logs_error_lines",
                      "Sampled lines at an error level (with max_error_share).")
ERROR_RATIO = MetricFamily("readiness_logs_error_ratio",
                           "Share of sampled lines at an error level (0-1).")
ERROR_TARGET = MetricFamily("readiness_logs_error_ratio_target",
                            "Maximum share of error lines (the objective).")
METRICS = (SAMPLED, STRUCTURED, NOT_JSON, MISSING, RATIO, TARGET, MODIFIED, ERRORS,
           ERROR_RATIO, ERROR_TARGET)


@dataclass(frozen=True, slots=True)
class Tail:
    """Sampled lines, the log's last write time (None: unknown) and what was read."""

    lines: list[bytes]
    modified: float | None
    where: str = ""


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
    errors: int = 0


_PLAIN_ERROR = re.compile(rb"\b(ERROR|CRITICAL|FATAL|PANIC)\b")
_NUMERIC_ERROR = 50  # pino/bunyan error (40 is their warn, though Python's ERROR)


def is_error_level(value: Any, error_levels: frozenset[str]) -> bool:
    """Whether a level value (name or number) is an error level."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value >= _NUMERIC_ERROR
    return isinstance(value, str) and value.strip().lower() in error_levels


def classify(lines: list[bytes], fields: LogFields,
             error_levels: frozenset[str] = frozenset()) -> Sample:
    """Count structured lines, non-JSON lines, missing fields and error lines (a JSON
    line by its level field, a plain line by an ERROR/CRITICAL/FATAL/PANIC word)."""
    missing: Counter[str] = Counter()
    structured = not_json = errors = 0
    names = {role: getattr(fields, role) for role in FIELD_ROLES}
    for raw in lines:
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            not_json += 1
            errors += bool(_PLAIN_ERROR.search(raw))
            continue
        if not isinstance(record, dict):
            not_json += 1
            continue
        levels = (_lookup(record, name) for name in fields.level)
        errors += any(is_error_level(v, error_levels) for v in levels if v is not None)
        complete = True
        for role, candidates in names.items():
            if candidates and not any(_lookup(record, n) not in (None, "") for n in candidates):
                missing[role] += 1
                complete = False
        structured += complete
    return Sample(len(lines), structured, not_json, {r: missing[r] for r in FIELD_ROLES
                                                     if names[r]}, errors)


# --------------------------------------------------------------------------- pod source


class _NotFound(Exception):
    """The pod (or a matching Running pod) does not exist: the check fails."""


def split_timestamp(line: bytes) -> tuple[float | None, bytes]:
    """Split `timestamps=true` output: `2026-11-28T10:00:00.123456789Z {...}`."""
    head, sep, rest = line.partition(b" ")
    if not sep or len(head) < 20 or head[4:5] != b"-":
        return None, line
    text = head.decode("ascii", "replace")
    if "." in text:  # nanoseconds: datetime keeps microseconds
        whole, _, fraction = text.partition(".")
        digits = fraction.rstrip("Z")
        text = f"{whole}.{digits[:6]}{fraction[len(digits):]}"
    try:
        return datetime.fromisoformat(text).timestamp(), rest
    except ValueError:
        return None, line


def pod_lines(body: bytes, truncated: bool, count: int) -> tuple[list[bytes], float | None]:
    """Non-empty lines of a pod log answer (timestamps stripped) and the newest time.

    When the answer was cut at `limitBytes`, its last line may be partial: dropped.
    """
    raw = body.split(b"\n")
    if truncated and not body.endswith(b"\n"):
        raw = raw[:-1]
    lines: list[bytes] = []
    newest: float | None = None
    for line in raw:
        stamp, text = split_timestamp(line.rstrip(b"\r"))
        if stamp is not None:
            newest = stamp if newest is None else max(newest, stamp)
        if text.strip():
            lines.append(text)
    return lines[-count:], newest


async def _api_get(api: Any, path: str, query: list[tuple[str, str]], accept: str,
                   what: str, seconds: float, limit: int) -> tuple[int, bytes, bool]:
    """GET through the connection's Kubernetes transport client (`KubeClient`, which
    refreshes expired credentials): (status, at most `limit` bytes, truncated)."""
    try:
        async with asyncio.timeout(seconds), api.stream(
                path, query=query, accept=accept, connect_timeout=seconds,
                read_timeout=seconds) as response:
            status: int = response.status
            chunks: list[bytes] = []
            size = 0
            while size < limit:
                chunk = await response.content.read(limit - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            truncated = size >= limit
    except TimeoutError:
        raise ProbeError(Reason.TIMEOUT, f"{what}: the API server did not answer within "
                         f"{seconds:g}s") from None
    except aiohttp.ClientSSLError:
        raise ProbeError(Reason.TLS, f"{what}: TLS with the API server failed") from None
    except aiohttp.ClientConnectorDNSError:
        raise ProbeError(Reason.DNS, f"{what}: the API server's host name does not "
                         "resolve") from None
    except aiohttp.ClientConnectorError as exc:
        raise ProbeError(Reason.CONNECT, f"{what}: cannot connect to the API server "
                         f"{exc.host}:{exc.port}") from None
    except aiohttp.ClientError as exc:
        raise ProbeError(Reason.PROTOCOL, f"{what}: the connection failed "
                         f"({type(exc).__name__})") from None
    return status, b"".join(chunks), truncated


def _api_message(body: bytes) -> str:
    """The `message` of a Kubernetes Status answer, shortened (no log content)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message[:200] if isinstance(message, str) else ""


def _check_status(status: int, body: bytes, what: str, permission: str) -> None:
    if 200 <= status < 300:
        return
    if status == 401:
        raise ProbeError(Reason.AUTH, f"{what}: the API server rejected the credentials (401)")
    if status == 403:
        raise ProbeError(Reason.AUTH, f"{what}: forbidden, missing RBAC permission "
                         f"{permission}")
    if status == 400:  # no such container, several containers and none named...
        raise ProbeError(Reason.CONFIG, f"{what}: {_api_message(body) or 'bad request (400)'}")
    raise ProbeError(Reason.PROTOCOL, f"{what}: the API server answered HTTP {status}")


def _started(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    metadata = pod.get("metadata") or {}
    return str(status.get("startTime") or metadata.get("creationTimestamp") or "")


async def _select_pods(api: Any, spec: LogsCheck, seconds: float) -> list[str]:
    """The newest `max_pods` Running pods matching the label selector (newest first)."""
    namespace, selector = spec.namespace, spec.label_selector
    assert namespace is not None and selector is not None
    what = f"list pods {selector} in namespace {namespace}"
    status, body, _ = await _api_get(
        api, f"/api/v1/namespaces/{namespace}/pods",
        [("labelSelector", selector), ("fieldSelector", "status.phase=Running"),
         ("limit", "500")], "application/json", what, seconds, 64 * 1024 * 1024)
    _check_status(status, body, what, f"list pods in namespace {namespace}")
    try:
        data = json.loads(body)
        items = [i for i in data["items"] if isinstance(i, dict)]
    except (ValueError, KeyError, TypeError):
        raise ProbeError(Reason.PROTOCOL, f"{what}: the answer is not a pod list") from None
    running = [i for i in items if (i.get("status") or {}).get("phase") == "Running"]
    if not running:
        raise _NotFound(f"no Running pod matches {selector} in namespace {namespace}")
    running.sort(key=lambda pod: (_started(pod), str((pod.get("metadata") or {})
                                                     .get("name"))), reverse=True)
    return [str(pod["metadata"]["name"]) for pod in running[:spec.max_pods]]


async def _read_pod_log(api: Any, spec: LogsCheck, pod: str,
                        seconds: float) -> tuple[list[bytes], float | None]:
    namespace = spec.namespace
    query = [("tailLines", str(spec.lines)), ("limitBytes", str(spec.max_bytes)),
             ("timestamps", "true")]
    if spec.container is not None:
        query.append(("container", spec.container))
    what = f"log of pod {namespace}/{pod}" + (f" container {spec.container}"
                                               if spec.container else "")
    status, body, truncated = await _api_get(
        api, f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query, "text/plain", what,
        seconds, spec.max_bytes)
    if status == 404:
        raise _NotFound(f"pod {namespace}/{pod} not found")
    _check_status(status, body, what, f"get pods/log in namespace {namespace}")
    return pod_lines(body, truncated or len(body) >= spec.max_bytes, spec.lines)


async def read_pods(spec: LogsCheck, ctx: ProbeContext) -> Tail:
    """The latest `lines` lines of each sampled pod's log, merged."""
    assert spec.connection is not None
    cluster = await cluster_of(ctx, spec.connection)
    api = await cluster.client()
    timeout = float(cluster.spec.request_timeout)
    pods = [spec.pod] if spec.pod is not None else await _select_pods(api, spec, timeout)
    results = await asyncio.gather(*(_read_pod_log(api, spec, pod, timeout) for pod in pods))
    lines = [line for part, _ in results for line in part]
    stamps = [stamp for _, stamp in results if stamp is not None]
    shown = ", ".join(pods[:3]) + (f" +{len(pods) - 3}" if len(pods) > 3 else "")
    return Tail(lines, max(stamps) if stamps else None, f"pod {spec.namespace}/{shown}")


async def _read(spec: LogsCheck, ctx: ProbeContext) -> Tail | Outcome:
    """The sampled tail, or the outcome that ends the run (missing log, bad access)."""
    if spec.source == "pod":
        try:
            return await read_pods(spec, ctx)
        except _NotFound as exc:
            return Outcome.failed(str(exc))
        except ProbeError as exc:
            return Outcome.errored(exc.reason, exc.message)
    path = spec.path
    assert path is not None
    try:
        tail: Tail = await ctx.run_blocking(read_tail, path, spec.lines, spec.max_bytes)
    except FileNotFoundError:
        return Outcome.failed(f"log file {path} does not exist")
    except IsADirectoryError:
        return Outcome.errored(Reason.CONFIG, f"{path} is a directory, not a log file")
    except OSError as exc:
        return Outcome.errored(Reason.CONFIG, f"log file {path} cannot be read: "
                               f"{exc.strerror}")
    return tail


def objectives(spec: LogsCheck) -> tuple[Measurement, ...]:
    """The configured shares: exported also when the log cannot be read (issue 13)."""
    kept = [Measurement(TARGET.name, spec.min_share)]
    if spec.max_error_share is not None:
        kept.append(Measurement(ERROR_TARGET.name, spec.max_error_share))
    return tuple(kept)


async def run(spec: LogsCheck, ctx: ProbeContext) -> Outcome:
    """Sample the log's tail and compare the structured share with `min_share`."""
    tail = await _read(spec, ctx)
    if isinstance(tail, Outcome):
        return Outcome(tail.status, tail.message, (*tail.measurements, *objectives(spec)),
                       tail.reason)
    levels = frozenset(level.lower() for level in spec.error_levels)
    sample = await ctx.run_blocking(classify, tail.lines, spec.fields, levels)
    ratio = sample.structured / sample.sampled if sample.sampled else 0.0
    measurements = [
        Measurement(SAMPLED.name, float(sample.sampled)),
        Measurement(STRUCTURED.name, float(sample.structured)),
        Measurement(NOT_JSON.name, float(sample.not_json)),
        Measurement(RATIO.name, ratio),
        *objectives(spec),
        *(Measurement(MISSING.name, float(n), {"field": f}) for f, n in sample.missing.items()),
    ]
    if tail.modified is not None:
        measurements.append(Measurement(MODIFIED.name, tail.modified))
    problems: list[str] = []
    if sample.sampled < spec.min_lines:
        problems.append(f"only {sample.sampled} lines (min {spec.min_lines})")
    if spec.max_age is not None and tail.modified is not None and \
            ctx.now() - tail.modified > spec.max_age:
        problems.append(f"not written for {(ctx.now() - tail.modified) / 60:.0f} min")
    summary = (f"{ratio:.1%} of the last {sample.sampled} lines structured "
               f"(min {spec.min_share:.0%})")
    if tail.where:
        summary += f" in {tail.where}"
    if sample.sampled and ratio < spec.min_share:
        details = [f"{sample.not_json} not JSON"] if sample.not_json else []
        details += [f"{n} without {f}" for f, n in sample.missing.items() if n]
        problems.append(", ".join(details))
    if spec.max_error_share is not None:
        error_ratio = sample.errors / sample.sampled if sample.sampled else 0.0
        measurements += [Measurement(ERRORS.name, float(sample.errors)),
                         Measurement(ERROR_RATIO.name, error_ratio)]
        summary += (f"; {sample.errors} error lines ({error_ratio:.1%}, max "
                    f"{spec.max_error_share:.1%})")
        if sample.sampled and error_ratio > spec.max_error_share:
            problems.append(f"error rate {error_ratio:.1%} > {spec.max_error_share:.1%}")
    if problems:
        return Outcome.failed(f"{summary}: " + "; ".join(problems), tuple(measurements))
    return Outcome.passed(summary, tuple(measurements))


KIND = ProbeKind(
    name="logs",
    spec=LogsCheck,
    run=run,
    summary="The latest N lines of the application log (a file or a pod's log) are JSON "
    "with time, level, message and correlation id (share against a threshold).",
    metrics=METRICS,
)
