"""`prometheus_query`: a PromQL instant query compared with a threshold, or rule groups
loaded (5.1.2, 5.1.4, 11.3.3, 11.3.5).

Talks to the Prometheus HTTP API (`/api/v1/query`, `/api/v1/rules`) through the shared
aiohttp session; works with anything speaking that API (Thanos Query, Mimir, VictoriaMetrics
with a path prefix in `url`). Series labels appear in messages only, never as metric labels:
the exported facts are the sample count, min and max.

The small HTTP helpers here (`ApiEndpoint`, `fetch_json`) are shared with the
`alertmanager` kind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretReference,
)
from exporter.probes.wording import shortened
from exporter.transport.base import request_budget
from exporter.transport.http import HTTP, HttpOptions, reject_credentials, target_of
from exporter.transport.http_auth import (
    BasicAuth,
    HttpUrl,
    check_plain_headers,
    credential_headers,
)
from exporter.transport.tls import TlsClientOptions

__all__ = [
    "KIND",
    "ApiEndpoint",
    "BasicAuth",
    "PrometheusQueryCheck",
    "fetch_json",
    "run",
]

_JSON_IN_THREAD_BYTES = 256 * 1024
_LIST_IN_MESSAGE = 3


# --------------------------------------------------------------------------- HTTP helpers


class ApiEndpoint(BaseModel):
    """Where an HTTP API lives and how to authenticate (mixed into check specs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl = Field(description="base URL of the API (a path prefix is kept)")
    bearer_token: SecretReference | None = Field(
        default=None, description="sent as `Authorization: Bearer <token>`")
    basic_auth: BasicAuth | None = None
    headers: dict[str, str] = Field(
        default={}, description="extra non-secret headers, e.g. X-Scope-OrgID for Mimir")
    max_response_bytes: int = Field(default=16 * 1024 * 1024, gt=0, le=512 * 1024 * 1024,
                                     description="a larger answer is an error")
    tls: TlsClientOptions = Field(default_factory=TlsClientOptions,
                                  description="TLS client options (ca_file, cert_file, "
                                  "key_file, server_name, insecure_skip_verify)")

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        return check_plain_headers(value, alternatives="bearer_token or basic_auth")

    @model_validator(mode="after")
    def _one_auth(self) -> ApiEndpoint:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("use bearer_token or basic_auth, not both")
        return self

    def endpoint(self, path: str) -> str:
        """`url` joined with an API path, keeping any path prefix of `url`."""
        return self.url.rstrip("/") + path

    def request_headers(self) -> dict[str, str]:
        """Headers including credentials (resolved now; `ProbeError(config)` if missing)."""
        return {"Accept": "application/json", **self.headers,
                **credential_headers(bearer_token=self.bearer_token,
                                     basic_auth=self.basic_auth)}


async def fetch_json(
    ctx: ProbeContext,
    api: ApiEndpoint,
    path: str,
    *,
    what: str,
    request_timeout: float,
    params: Sequence[tuple[str, str]] | None = None,
    form: Mapping[str, str] | None = None,
    accept_error_status: Callable[[int], bool] = lambda status: False,
) -> tuple[int, Any]:
    """GET (or POST `form`) `api.url + path` and decode JSON; raise `ProbeError`.

    401/403 are `auth`, 404 `config`, other non-2xx statuses `protocol` unless
    `accept_error_status(status)` lets the caller read the JSON error body itself.
    """
    headers = api.request_headers()
    client = await ctx.client(HTTP, HttpOptions(tls=api.tls))
    response = await client.request(
        "POST" if form is not None else "GET", api.endpoint(path),
        budget=request_budget(request_timeout),
        params=params, data=form, headers=headers, max_body_bytes=api.max_response_bytes,
        limit_option="max_response_bytes")
    status, body = response.status, response.body
    if status in (401, 403):
        raise reject_credentials(api.url, status)
    if status == 404:
        raise ProbeError(Reason.CONFIG, f"{what}: HTTP 404 at {target_of(api.url)}{path} "
                         "(is url the API base?)")
    if not 200 <= status < 300 and not accept_error_status(status):
        raise ProbeError(Reason.PROTOCOL, f"{what}: HTTP {status}")
    try:
        if len(body) > _JSON_IN_THREAD_BYTES:
            document = await ctx.run_blocking(json.loads, body)
        else:
            document = json.loads(body)
    except ValueError:
        raise ProbeError(Reason.PROTOCOL, f"{what}: answer is not JSON (HTTP {status})") from None
    return status, document


# --------------------------------------------------------------------------- the check

Op = Literal["==", "!=", "<", "<=", ">", ">="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class PrometheusQueryCheck(CheckSpec, ApiEndpoint):
    """`kind: prometheus_query` options: `query` (+ op/threshold) or `rule_groups`."""

    kind: Literal["prometheus_query"]
    url: HttpUrl = Field(default="http://prometheus:9090",
                     description="Prometheus (or Thanos/Mimir query) base URL")
    query: str | None = Field(default=None, min_length=1,
                              description="PromQL instant query (vector or scalar result)")
    op: Op = Field(default="==", description="comparison of each sample with threshold")
    threshold: float = Field(default=1.0, description="value compared against")
    match: Literal["all", "any"] = Field(
        default="all", description="all samples must satisfy the comparison, or any one")
    on_empty: Literal["pass", "fail", "error"] = Field(
        default="fail", description="outcome when the query returns no sample")
    rule_groups: list[str] = Field(
        default=[], description="rules mode: these rule group names must be loaded")
    require_healthy_rules: bool = Field(
        default=True, description="rules mode: a rule whose last evaluation failed fails")
    min_critical_alert_rules: int = Field(
        default=0, ge=0, description="both modes: at least this many alerting rules "
        "carrying critical_labels must be loaded (outside critical_rules_ignore_groups), "
        "else error/config; 0 = not checked")
    critical_labels: dict[str, str] = Field(
        default={"severity": "critical"}, min_length=1,
        description="labels that make an alerting rule critical")
    critical_rules_ignore_groups: list[str] = Field(
        default=[], description="rule groups whose rules do not count as the "
        "application's (e.g. the exporter's own readiness-exporter.alerts)")

    @model_validator(mode="after")
    def _one_mode(self) -> PrometheusQueryCheck:
        if (self.query is None) == (not self.rule_groups):
            raise ValueError("set exactly one of query or rule_groups")
        return self


SAMPLES = MetricFamily(
    "readiness_prometheus_query_result_samples",
    "Number of samples the query returned (0 when empty).",
)
MIN_VALUE = MetricFamily(
    "readiness_prometheus_query_result_min",
    "Smallest sample value of the query result (absent when empty).",
)
MAX_VALUE = MetricFamily(
    "readiness_prometheus_query_result_max",
    "Largest sample value of the query result (absent when empty).",
)
THRESHOLD = MetricFamily(
    "readiness_prometheus_query_threshold",
    "The threshold each sample is compared with (the objective).",
)
FAILING = MetricFamily(
    "readiness_prometheus_query_failing_samples",
    "Samples that do not satisfy the comparison.",
)
GROUP_LOADED = MetricFamily(
    "readiness_prometheus_rule_group_loaded",
    "1 when the configured rule group is loaded in Prometheus, else 0.",
    ("group",),
)
CRITICAL_RULES = MetricFamily(
    "readiness_prometheus_critical_alert_rules",
    "Loaded alerting rules carrying the critical labels, outside the ignored groups.",
)
GROUP_UNHEALTHY = MetricFamily(
    "readiness_prometheus_rule_group_unhealthy_rules",
    "Rules of the group whose last evaluation failed (health 'err').",
    ("group",),
)

_ERROR_TYPES = {
    "timeout": Reason.TIMEOUT,
    "canceled": Reason.TIMEOUT,
    "bad_data": Reason.CONFIG,
    "execution": Reason.CONFIG,
    "unavailable": Reason.CONNECT,
}


def _series(metric: Mapping[str, Any]) -> str:
    name = str(metric.get("__name__", ""))
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{labels}}}" if labels or not name else name


def _value(raw: Any) -> float:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ProbeError(Reason.PROTOCOL, "query answer: a sample is not [time, value]")
    try:
        return float(raw[1])
    except (TypeError, ValueError):
        raise ProbeError(Reason.PROTOCOL, "query answer: a sample value is not a number") from None


def _samples(document: Any) -> list[tuple[str, float]]:
    """(series description, value) of a vector or scalar result."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise ProbeError(Reason.PROTOCOL, "query answer has no data object")
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return [("scalar", _value(result))]
    if result_type == "vector" and isinstance(result, list):
        samples = []
        for entry in result:
            if not isinstance(entry, dict):
                raise ProbeError(Reason.PROTOCOL, "query answer: a vector entry is not an object")
            metric = entry.get("metric")
            samples.append((_series(metric if isinstance(metric, dict) else {}),
                            _value(entry.get("value"))))
        return samples
    if result_type in ("matrix", "string"):
        raise ProbeError(Reason.CONFIG, f"query returns a {result_type}; use an instant "
                         "expression giving a vector or scalar (e.g. wrap a range in "
                         "max_over_time)")
    raise ProbeError(Reason.PROTOCOL, "query answer has an unknown resultType")


def _listing(items: list[str]) -> str:
    return shortened(items, _LIST_IN_MESSAGE)


async def _run_query(spec: PrometheusQueryCheck, ctx: ProbeContext) -> Outcome:
    assert spec.query is not None
    rules: list[Measurement] = []
    if spec.min_critical_alert_rules:
        rules.append(_require_critical_rules(spec, await _rule_groups(spec, ctx)))
    outcome = await _judge_query(spec, ctx)
    return dataclasses.replace(outcome, measurements=(*rules, *outcome.measurements))


async def _judge_query(spec: PrometheusQueryCheck, ctx: ProbeContext) -> Outcome:
    assert spec.query is not None
    _, document = await fetch_json(
        ctx, spec, "/api/v1/query", what="Prometheus query", request_timeout=spec.timeout,
        form={"query": spec.query, "timeout": f"{max(1, int(spec.timeout * 1000))}ms"},
        accept_error_status=lambda status: status in (400, 422, 503),
    )
    if not isinstance(document, dict):
        raise ProbeError(Reason.PROTOCOL, "Prometheus answer is not a JSON object")
    if document.get("status") != "success":
        error_type = str(document.get("errorType", ""))
        detail = str(document.get("error", "no detail"))[:200]
        reason = _ERROR_TYPES.get(error_type, Reason.PROTOCOL)
        return Outcome.errored(reason, f"query rejected ({error_type or 'error'}): {detail}")

    samples = _samples(document)
    measurements = [Measurement(SAMPLES.name, float(len(samples))),
                    Measurement(THRESHOLD.name, spec.threshold)]
    if not samples:
        measurements.append(Measurement(FAILING.name, 0.0))
        message = "query returned no sample"
        if spec.on_empty == "pass":
            return Outcome.passed(message, tuple(measurements))
        if spec.on_empty == "error":
            return Outcome.errored(Reason.PROTOCOL, message, tuple(measurements))
        return Outcome.failed(message, tuple(measurements))

    values = [value for _, value in samples]
    finite = [value for value in values if not math.isnan(value)]
    if finite:
        measurements.append(Measurement(MIN_VALUE.name, min(finite)))
        measurements.append(Measurement(MAX_VALUE.name, max(finite)))
    compare = _OPS[spec.op]
    failing = [(series, value) for series, value in samples
               if not compare(value, spec.threshold)]
    measurements.append(Measurement(FAILING.name, float(len(failing))))
    wanted = f"{spec.op} {spec.threshold:g}"
    ok = not failing if spec.match == "all" else len(failing) < len(samples)
    if ok:
        if len(samples) == 1:
            message = f"{samples[0][0]} = {samples[0][1]:g} ({wanted})"
        else:
            message = f"{len(samples) - len(failing)} of {len(samples)} samples {wanted}"
        return Outcome.passed(message, tuple(measurements))
    shown = [f"{series} = {value:g}" for series, value in failing]
    prefix = "no sample" if spec.match == "any" else f"{len(failing)} of {len(samples)} not"
    return Outcome.failed(f"{prefix} {wanted}: {_listing(shown)}", tuple(measurements))


async def _rule_groups(spec: PrometheusQueryCheck, ctx: ProbeContext) -> list[Any]:
    _, document = await fetch_json(ctx, spec, "/api/v1/rules", what="Prometheus rules API",
                                   request_timeout=spec.timeout)
    data = document.get("data") if isinstance(document, dict) else None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ProbeError(Reason.PROTOCOL, "rules answer has no data.groups list")
    return groups


def _critical_rules(spec: PrometheusQueryCheck, groups: list[Any]) -> int:
    """Alerting rules carrying `critical_labels`, outside the ignored groups."""
    count = 0
    for group in groups:
        if not isinstance(group, dict) or group.get("name") in spec.critical_rules_ignore_groups:
            continue
        rules = group.get("rules")
        for rule in rules if isinstance(rules, list) else []:
            labels = rule.get("labels") if isinstance(rule, dict) else None
            if (rule.get("type") == "alerting" and isinstance(labels, dict)
                    and all(labels.get(k) == v for k, v in spec.critical_labels.items())):
                count += 1
    return count


def _require_critical_rules(spec: PrometheusQueryCheck, groups: list[Any]) -> Measurement:
    """The count as a measurement; `ProbeError(config)` when below the minimum: no
    critical alert can fire without a critical rule, so "none fired" would prove nothing."""
    count = _critical_rules(spec, groups)
    measurement = Measurement(CRITICAL_RULES.name, float(count))
    if count < spec.min_critical_alert_rules:
        labels = ",".join(f"{k}={v}" for k, v in spec.critical_labels.items())
        ignored = (f" outside {_listing(spec.critical_rules_ignore_groups)}"
                   if spec.critical_rules_ignore_groups else "")
        raise ProbeError(Reason.CONFIG, f"{count} alerting rules with {labels} loaded"
                         f"{ignored}, {spec.min_critical_alert_rules} required: load the "
                         "application's alert rules into Prometheus "
                         "(min_critical_alert_rules)").with_measurements([measurement])
    return measurement


async def _run_rules(spec: PrometheusQueryCheck, ctx: ProbeContext) -> Outcome:
    groups = await _rule_groups(spec, ctx)
    loaded: dict[str, int] = {}
    for group in groups:
        if not isinstance(group, dict):
            continue
        name = str(group.get("name", ""))
        rules = group.get("rules")
        unhealthy = sum(1 for rule in rules if isinstance(rule, dict)
                        and rule.get("health") == "err") if isinstance(rules, list) else 0
        loaded[name] = loaded.get(name, 0) + unhealthy
    measurements = []
    if spec.min_critical_alert_rules:
        measurements.append(_require_critical_rules(spec, groups))
    missing, broken = [], []
    for name in spec.rule_groups:
        present = name in loaded
        measurements.append(Measurement(GROUP_LOADED.name, 1.0 if present else 0.0,
                                        {"group": name}))
        if not present:
            missing.append(name)
            continue
        measurements.append(Measurement(GROUP_UNHEALTHY.name, float(loaded[name]),
                                        {"group": name}))
        if loaded[name] and spec.require_healthy_rules:
            broken.append(f"{name} ({loaded[name]} failing)")
    problems = []
    if missing:
        problems.append(f"not loaded: {_listing(missing)}")
    if broken:
        problems.append(f"rules failing to evaluate: {_listing(broken)}")
    if problems:
        return Outcome.failed("; ".join(problems), tuple(measurements))
    critical = (f", {int(measurements[0].value)} critical alerting rules"
                if spec.min_critical_alert_rules else "")
    return Outcome.passed(f"all {len(spec.rule_groups)} rule groups loaded{critical}",
                          tuple(measurements))


async def run(spec: PrometheusQueryCheck, ctx: ProbeContext) -> Outcome:
    """Run the instant query (or the rule-group check) once."""
    try:
        if spec.query is not None:
            return await _run_query(spec, ctx)
        return await _run_rules(spec, ctx)
    except ProbeError as exc:  # the objective is kept beside the error
        objective = [Measurement(THRESHOLD.name, spec.threshold)] if spec.query else []
        return exc.with_measurements(objective).outcome()


KIND = ProbeKind(
    name="prometheus_query",
    spec=PrometheusQueryCheck,
    run=run,
    summary="A PromQL instant query compared with a threshold, or rule groups loaded "
            "(Prometheus HTTP API).",
    metrics=(SAMPLES, MIN_VALUE, MAX_VALUE, THRESHOLD, FAILING, GROUP_LOADED, GROUP_UNHEALTHY,
             CRITICAL_RULES),
)
