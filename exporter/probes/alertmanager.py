"""`alertmanager`: alerts in flight and notification routing (5.4.1, 5.4.2, 11.3.2).

Two modes against the Alertmanager v2 API:

- `active_alerts`: `GET /api/v2/alerts?active=true&silenced=false&inhibited=false`, counted
  per configured severity; passes while at most `max_active` remain.
- `receivers`: the running configuration (`GET /api/v2/status`, `config.original`) must
  route to a receiver that has an integration of a required type with its key set.
  Alertmanager shows secrets as `<secret>`: that counts as set. A receiver no route
  refers to does not count.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

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
from exporter.probes.prometheus_query import ApiEndpoint, fetch_json
from exporter.probes.wording import shortened
from exporter.transport.http_auth import HttpUrl

__all__ = ["INTEGRATION_KEYS", "KIND", "AlertmanagerCheck", "keyed_integrations",
           "routed_receivers", "run"]

Integration = Literal["pagerduty", "opsgenie", "slack", "msteams", "webhook", "email",
                      "victorops", "telegram", "discord", "pushover", "sns", "webex"]

# integration -> (config list key, fields of which one must be set, global fallbacks)
INTEGRATION_KEYS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "pagerduty": ("pagerduty_configs",
                  ("routing_key", "service_key", "routing_key_file", "service_key_file"), ()),
    "opsgenie": ("opsgenie_configs", ("api_key", "api_key_file"),
                 ("opsgenie_api_key", "opsgenie_api_key_file")),
    "slack": ("slack_configs", ("api_url", "api_url_file"),
              ("slack_api_url", "slack_api_url_file")),
    "msteams": ("msteams_configs", ("webhook_url", "webhook_url_file"), ()),
    "webhook": ("webhook_configs", ("url", "url_file"), ()),
    "email": ("email_configs", ("to",), ()),
    "victorops": ("victorops_configs", ("api_key", "api_key_file"),
                  ("victorops_api_key", "victorops_api_key_file")),
    "telegram": ("telegram_configs", ("bot_token", "bot_token_file"), ()),
    "discord": ("discord_configs", ("webhook_url", "webhook_url_file"), ()),
    "pushover": ("pushover_configs", ("user_key", "user_key_file"), ()),
    "sns": ("sns_configs", ("topic_arn", "phone_number", "target_arn"), ()),
    "webex": ("webex_configs", ("room_id",), ()),
}
_LIST_IN_MESSAGE = 3


class AlertmanagerCheck(CheckSpec, ApiEndpoint):
    """`kind: alertmanager` options."""

    kind: Literal["alertmanager"]
    url: HttpUrl = Field(default="http://alertmanager:9093", description="Alertmanager base URL")
    mode: Literal["active_alerts", "receivers"] = Field(
        description="active_alerts: count alerts in flight; receivers: inspect routing")
    severities: list[str] = Field(
        default=["critical"], min_length=1,
        description="active_alerts: values of severity_label that count")
    severity_label: str = Field(default="severity", min_length=1)
    filters: list[str] = Field(
        default=[], description="active_alerts: extra Alertmanager matchers, e.g. "
        "'namespace=\"qbitel\"' (sent as filter=)")
    max_active: int = Field(default=0, ge=0,
                            description="active_alerts: pass while at most this many")
    integrations: list[Integration] = Field(
        default=[], description="receivers: a routed receiver with a keyed integration of "
        "any one of these types must exist")

    @model_validator(mode="after")
    def _mode_fields(self) -> AlertmanagerCheck:
        if self.mode == "receivers" and not self.integrations:
            raise ValueError("mode receivers needs integrations, e.g. [pagerduty, opsgenie]")
        if self.mode == "active_alerts" and self.integrations:
            raise ValueError("integrations is only used with mode receivers")
        return self


ACTIVE = MetricFamily(
    "readiness_alertmanager_active_alerts",
    "Active alerts of this severity, silenced and inhibited ones excluded.",
    ("severity",),
)
MAX_ACTIVE = MetricFamily(
    "readiness_alertmanager_active_alerts_max",
    "The most active alerts the check allows (the objective).",
)
ROUTED = MetricFamily(
    "readiness_alertmanager_routed_receivers",
    "Receivers referenced by the route tree that have a keyed integration of this type.",
    ("integration",),
)
UNROUTED = MetricFamily(
    "readiness_alertmanager_unrouted_receivers",
    "Receivers with a keyed integration of this type that no route refers to.",
    ("integration",),
)


def _listing(items: list[str]) -> str:
    return shortened(items, _LIST_IN_MESSAGE)


def _is_set(value: Any) -> bool:
    """A key is set when non-empty; Alertmanager's `<secret>` mask counts as set."""
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | dict):
        return bool(value)
    return value is not None


def _walk_routes(route: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(route, Mapping):
        return
    yield route
    children = route.get("routes")
    if isinstance(children, list):
        for child in children:
            yield from _walk_routes(child)


def routed_receivers(config: Mapping[str, Any]) -> set[str]:
    """Receiver names referenced anywhere in the route tree."""
    return {str(node["receiver"]) for node in _walk_routes(config.get("route"))
            if _is_set(node.get("receiver"))}


def keyed_integrations(receiver: Mapping[str, Any],
                        global_config: Mapping[str, Any]) -> dict[str, str]:
    """integration -> 'keyed' or 'no key', for the integrations the receiver has."""
    found: dict[str, str] = {}
    for integration, (list_key, fields, globals_) in INTEGRATION_KEYS.items():
        entries = receiver.get(list_key)
        if not isinstance(entries, list) or not entries:
            continue
        global_set = any(_is_set(global_config.get(name)) for name in globals_)
        keyed = any(isinstance(entry, Mapping)
                    and (any(_is_set(entry.get(name)) for name in fields) or global_set)
                    for entry in entries)
        found[integration] = "keyed" if keyed else "no key"
    return found


def _parse_config(text: str) -> Mapping[str, Any]:
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ProbeError(Reason.PROTOCOL, "config.original of /api/v2/status is not YAML"
                         ) from None
    if not isinstance(config, Mapping):
        raise ProbeError(Reason.PROTOCOL, "config.original of /api/v2/status is not a mapping")
    return config


async def _run_receivers(spec: AlertmanagerCheck, ctx: ProbeContext) -> Outcome:
    _, status = await fetch_json(ctx, spec, "/api/v2/status", what="Alertmanager status API",
                                 request_timeout=spec.timeout)
    config_block = status.get("config") if isinstance(status, Mapping) else None
    original = config_block.get("original") if isinstance(config_block, Mapping) else None
    if not isinstance(original, str):
        raise ProbeError(Reason.PROTOCOL, "/api/v2/status has no config.original")
    config = (await ctx.run_blocking(_parse_config, original) if len(original) > 64 * 1024
              else _parse_config(original))
    global_config = config.get("global")
    if not isinstance(global_config, Mapping):
        global_config = {}
    routed = routed_receivers(config)
    receivers = config.get("receivers")
    receivers = receivers if isinstance(receivers, list) else []

    good: dict[str, list[str]] = {name: [] for name in spec.integrations}
    unrouted: dict[str, list[str]] = {name: [] for name in spec.integrations}
    keyless: list[str] = []
    for receiver in receivers:
        if not isinstance(receiver, Mapping):
            continue
        name = str(receiver.get("name", ""))
        for integration, state in keyed_integrations(receiver, global_config).items():
            if integration not in good:
                continue
            if state != "keyed":
                keyless.append(f"{name} ({integration})")
            elif name in routed:
                good[integration].append(name)
            else:
                unrouted[integration].append(name)

    measurements = []
    for integration in spec.integrations:
        measurements.append(Measurement(ROUTED.name, float(len(good[integration])),
                                        {"integration": integration}))
        measurements.append(Measurement(UNROUTED.name, float(len(unrouted[integration])),
                                        {"integration": integration}))
    wanted = " or ".join(spec.integrations)
    passing = [f"{name} ({integration})" for integration, names in good.items()
               for name in names]
    if passing:
        return Outcome.passed(f"routed {wanted} receiver: {_listing(passing)}",
                              tuple(measurements))
    details = []
    not_routed = [f"{name} ({integration})" for integration, names in unrouted.items()
                  for name in names]
    if not_routed:
        details.append(f"defined but not routed: {_listing(not_routed)}")
    if keyless:
        details.append(f"without a key: {_listing(keyless)}")
    detail = f" ({'; '.join(details)})" if details else ""
    return Outcome.failed(f"no routed {wanted} receiver with a key set{detail}",
                          tuple(measurements))


async def _run_alerts(spec: AlertmanagerCheck, ctx: ProbeContext) -> Outcome:
    params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    params += [("filter", matcher) for matcher in spec.filters]
    status, alerts = await fetch_json(ctx, spec, "/api/v2/alerts",
                                      what="Alertmanager alerts API",
                                      request_timeout=spec.timeout, params=params,
                                      accept_error_status=lambda code: code == 400)
    if status == 400:  # the body is a JSON string (or an object with a message)
        detail = alerts.get("message") if isinstance(alerts, Mapping) else alerts
        raise ProbeError(Reason.CONFIG,
                         f"Alertmanager rejected the filters: {str(detail).strip()[:200]}")
    if not isinstance(alerts, list):
        raise ProbeError(Reason.PROTOCOL, "/api/v2/alerts did not return a list")
    counts = {severity: 0 for severity in spec.severities}
    names: list[str] = []
    for alert in alerts:
        if not isinstance(alert, Mapping):
            continue
        state = alert.get("status")
        if isinstance(state, Mapping) and (
            state.get("state") not in (None, "active")
            or state.get("silencedBy") or state.get("inhibitedBy")
        ):
            continue  # defence in depth: the query already excludes these
        labels = alert.get("labels")
        labels = labels if isinstance(labels, Mapping) else {}
        severity = labels.get(spec.severity_label)
        if severity not in counts:
            continue
        counts[str(severity)] += 1
        alertname = str(labels.get("alertname", "unnamed"))
        if alertname not in names:
            names.append(alertname)
    measurements = [Measurement(ACTIVE.name, float(count), {"severity": severity})
                    for severity, count in counts.items()]
    measurements.append(Measurement(MAX_ACTIVE.name, float(spec.max_active)))
    total = sum(counts.values())
    which = "/".join(spec.severities)
    if total > spec.max_active:
        return Outcome.failed(
            f"{total} active {which} alert{'s' if total != 1 else ''} (allowed "
            f"{spec.max_active}; silenced and inhibited excluded): {_listing(names)}",
            tuple(measurements))
    if total:
        return Outcome.passed(f"{total} active {which} alerts, within {spec.max_active}",
                              tuple(measurements))
    return Outcome.passed(f"no active {which} alerts (silenced and inhibited excluded)",
                          tuple(measurements))


async def run(spec: AlertmanagerCheck, ctx: ProbeContext) -> Outcome:
    """Count active alerts or inspect the routing, by `mode`."""
    try:
        if spec.mode == "receivers":
            return await _run_receivers(spec, ctx)
        return await _run_alerts(spec, ctx)
    except ProbeError as exc:  # the objective is kept beside the error
        objective = ([Measurement(MAX_ACTIVE.name, float(spec.max_active))]
                     if spec.mode == "active_alerts" else [])
        return exc.with_measurements(objective).outcome()


KIND = ProbeKind(
    name="alertmanager",
    spec=AlertmanagerCheck,
    run=run,
    summary="Alertmanager v2 API: no active alerts of a severity, or a routed receiver "
            "(PagerDuty/Opsgenie/Slack ...) with its key set.",
    metrics=(ACTIVE, MAX_ACTIVE, ROUTED, UNROUTED),
)
