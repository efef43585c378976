"""`alertmanager` against a real Alertmanager (Debian package) fed by a real Prometheus.

Alerts in flight: Prometheus fires `vector(1)` alerts every second into Alertmanager:
one critical alert that stays active, one critical alert silenced through the v2 API,
one critical alert inhibited by a warning (inhibit rule), and warnings.
Routing: a second Alertmanager is reloaded with configurations with and without
PagerDuty, Opsgenie and Slack receivers. Every notification URL points at a loopback
port nothing listens on, so nothing leaves the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from exporter.model import Outcome, Status
from exporter.probes.alertmanager import (
    KIND,
    AlertmanagerCheck,
    keyed_integrations,
    routed_receivers,
)
from tests.probes import promstack
from tests.support.servers import free_port

PRESET = (Path(__file__).resolve().parents[2]
          / "exporter/presets/qbitel-production/70-observability.yaml")

PD_KEY = "pd-routing-Key-0123456789abcdef"
OG_KEY = "opsgenie-Key-fedcba9876543210"
SLACK_HOOK_PATH = "/services/T000/B000/slack-Hook-Secret-42"
SECRETS = (PD_KEY, OG_KEY, SLACK_HOOK_PATH)

DEAD = promstack.dead_url()
SLACK_URL = DEAD.rstrip("/") + SLACK_HOOK_PATH

ALERTS = {
    "CriticalFiring": {"severity": "critical"},
    "SilencedCritical": {"severity": "critical"},
    "InhibitedCritical": {"severity": "critical"},
    "Inhibitor": {"severity": "warning"},
    "WarningOnly": {"severity": "warning"},
}


def am_config(receivers: list[dict[str, Any]], route: dict[str, Any],
              global_: dict[str, Any] | None = None, inhibit: bool = False) -> str:
    config: dict[str, Any] = {"route": {"group_wait": "1h", **route}, "receivers": receivers}
    if global_:
        config["global"] = global_
    if inhibit:
        config["inhibit_rules"] = [{"source_matchers": ['alertname="Inhibitor"'],
                                    "target_matchers": ['alertname="InhibitedCritical"']}]
    return yaml.safe_dump(config)


PAGER = {"name": "pager", "pagerduty_configs": [{"routing_key": PD_KEY, "url": DEAD}]}
SLACK = {"name": "chat", "slack_configs": [{"api_url": SLACK_URL, "channel": "#ops"}]}
OPSGENIE = {"name": "genie", "opsgenie_configs": [{"api_key": OG_KEY, "api_url": DEAD}]}
NULL = {"name": "null"}


@pytest.fixture(scope="module")
def alerting() -> Iterator[promstack.AlertmanagerServer]:
    """Alertmanager with alerts in flight (fed by Prometheus), one silenced, one inhibited."""
    config = am_config([NULL, PAGER, SLACK],
                       {"receiver": "null",
                        "routes": [{"receiver": "pager", "matchers": ['severity="critical"']}]},
                       inhibit=True)
    with promstack.alertmanager(config) as am:
        am.silence({"alertname": "SilencedCritical"})
        prom_config = promstack.prometheus_config(rule_files=["alerts.yml"],
                                                  alertmanagers=[f"127.0.0.1:{am.port}"])
        rules = {"alerts.yml": promstack.alert_rules("readiness-exporter.alerts", ALERTS)}
        with promstack.prometheus(prom_config, rules=rules):
            am.wait_until(lambda: _settled(am), timeout=60, what="alerts in Alertmanager")
            yield am


def _settled(am: promstack.AlertmanagerServer) -> bool:
    by_name = {a["labels"]["alertname"]: a["status"] for a in am.alerts()}
    return (set(by_name) == set(ALERTS)
            and bool(by_name["SilencedCritical"]["silencedBy"])
            and bool(by_name["InhibitedCritical"]["inhibitedBy"]))


@pytest.fixture(scope="module")
def routing_am() -> Iterator[promstack.AlertmanagerServer]:
    """An Alertmanager without alerts; tests reload it with the configuration they need."""
    with promstack.alertmanager(am_config([NULL], {"receiver": "null"})) as am:
        yield am


def check(url: str, **fields: Any) -> AlertmanagerCheck:
    base: dict[str, Any] = {"id": "t", "section": "5.4", "title": "t", "kind": "alertmanager",
                            "url": url}
    return AlertmanagerCheck.model_validate({**base, **fields})


def preset_check(check_id: str, **overrides: Any) -> AlertmanagerCheck:
    entries = yaml.safe_load(PRESET.read_text(encoding="utf-8"))["checks"]
    entry = next(e for e in entries if e["id"] == check_id)
    return AlertmanagerCheck.model_validate({**entry, **overrides})


def gauge(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in outcome.measurements
             if m.family == family and dict(m.labels) == labels]
    assert len(found) == 1, (family, labels, outcome.measurements)
    return found[0]


def assert_no_secret(outcomes: list[Outcome], caplog: pytest.LogCaptureFixture) -> None:
    for secret in SECRETS:
        for outcome in outcomes:
            assert secret not in outcome.message
            assert all(secret not in repr(m.labels) for m in outcome.measurements)
        assert secret not in caplog.text


# --------------------------------------------------------------------------- alerts


async def test_preset_no_critical_alerts_counts_only_unsilenced_uninhibited(
    alerting: promstack.AlertmanagerServer, ctx: Any,
) -> None:
    # the silenced and the inhibited critical alerts are in Alertmanager, just muted
    states = {a["labels"]["alertname"]: a["status"]["state"] for a in alerting.alerts()}
    assert states["SilencedCritical"] == "suppressed"
    assert states["InhibitedCritical"] == "suppressed"
    assert alerting.amtool("silence", "query", "--quiet").strip()  # the silence exists

    outcome = await KIND.run(preset_check("11.3.2", url=alerting.url), ctx)
    assert outcome.status == Status.FAIL, outcome.message
    assert "CriticalFiring" in outcome.message
    assert "SilencedCritical" not in outcome.message
    assert "InhibitedCritical" not in outcome.message
    assert gauge(outcome, "readiness_alertmanager_active_alerts", severity="critical") == 1
    assert gauge(outcome, "readiness_alertmanager_active_alerts_max") == 0


async def test_filters_narrow_the_alerts(alerting: Any, ctx: Any) -> None:
    spec = check(alerting.url, mode="active_alerts", filters=['alertname="SilencedCritical"'])
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert gauge(outcome, "readiness_alertmanager_active_alerts", severity="critical") == 0
    spec = check(alerting.url, mode="active_alerts", filters=['alertname=~"Critical.*"'])
    assert (await KIND.run(spec, ctx)).status == Status.FAIL


async def test_bad_filter_is_a_config_error(alerting: Any, ctx: Any) -> None:
    spec = check(alerting.url, mode="active_alerts", filters=["alertname"])
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "config", outcome.message
    assert "bad matcher format" in outcome.message


async def test_other_severities_and_max_active(alerting: Any, ctx: Any) -> None:
    spec = check(alerting.url, mode="active_alerts", severities=["warning"], max_active=1)
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.FAIL
    assert "Inhibitor" in outcome.message and "WarningOnly" in outcome.message
    assert gauge(outcome, "readiness_alertmanager_active_alerts", severity="warning") == 2
    spec = check(alerting.url, mode="active_alerts", severities=["warning", "critical"],
                 max_active=3)
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert gauge(outcome, "readiness_alertmanager_active_alerts", severity="critical") == 1


async def test_other_severity_label(alerting: Any, ctx: Any) -> None:
    spec = check(alerting.url, mode="active_alerts", severity_label="priority")
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.PASS  # no alert carries a priority label


async def test_alertmanager_down_is_connect_error(ctx: Any) -> None:
    outcome = await KIND.run(check(f"http://127.0.0.1:{free_port()}", mode="active_alerts"),
                             ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "connect"


# --------------------------------------------------------------------------- routing


async def test_pagerduty_routed_passes_and_slack_fails_without_slack(
    routing_am: promstack.AlertmanagerServer, ctx: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    routing_am.reload(am_config([NULL, PAGER], {
        "receiver": "null",
        "routes": [{"receiver": "pager", "matchers": ['severity="critical"']}]}))
    pager = await KIND.run(preset_check("5.4.1", url=routing_am.url), ctx)
    assert pager.status == Status.PASS, pager.message
    assert "pager (pagerduty)" in pager.message
    assert gauge(pager, "readiness_alertmanager_routed_receivers", integration="pagerduty") == 1
    assert gauge(pager, "readiness_alertmanager_routed_receivers", integration="opsgenie") == 0
    slack = await KIND.run(preset_check("5.4.2", url=routing_am.url), ctx)
    assert slack.status == Status.FAIL
    assert_no_secret([pager, slack], caplog)


async def test_defined_but_unrouted_receivers_do_not_count(routing_am: Any, ctx: Any,
                                                          caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    routing_am.reload(am_config([NULL, PAGER, SLACK], {"receiver": "null"}))
    pager = await KIND.run(preset_check("5.4.1", url=routing_am.url), ctx)
    assert pager.status == Status.FAIL
    assert "defined but not routed: pager (pagerduty)" in pager.message
    assert gauge(pager, "readiness_alertmanager_unrouted_receivers", integration="pagerduty") == 1
    slack = await KIND.run(preset_check("5.4.2", url=routing_am.url), ctx)
    assert slack.status == Status.FAIL and "chat (slack)" in slack.message
    assert_no_secret([pager, slack], caplog)


async def test_slack_in_a_nested_route_and_opsgenie_from_global_key(routing_am: Any, ctx: Any,
                                                                    caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    genie_without_key = {"name": "genie", "opsgenie_configs": [{"api_url": DEAD}]}
    routing_am.reload(am_config(
        [NULL, genie_without_key, SLACK],
        {"receiver": "null", "routes": [
            {"matchers": ['team="ops"'], "routes": [
                {"receiver": "chat", "matchers": ['severity="warning"']}]},
            {"receiver": "genie", "matchers": ['severity="critical"']},
        ]},
        global_={"opsgenie_api_key": OG_KEY},
    ))
    status = routing_am.get("/api/v2/status")["config"]["original"]
    assert OG_KEY not in status and "<secret>" in status  # the mask the probe relies on
    pager = await KIND.run(preset_check("5.4.1", url=routing_am.url), ctx)
    assert pager.status == Status.PASS, pager.message
    assert "genie (opsgenie)" in pager.message
    slack = await KIND.run(preset_check("5.4.2", url=routing_am.url), ctx)
    assert slack.status == Status.PASS, slack.message
    assert_no_secret([pager, slack], caplog)


async def test_no_pager_receiver_at_all(routing_am: Any, ctx: Any) -> None:
    hook = {"name": "hook", "webhook_configs": [{"url": DEAD}]}
    routing_am.reload(am_config([NULL, hook], {"receiver": "hook"}))
    pager = await KIND.run(preset_check("5.4.1", url=routing_am.url), ctx)
    assert pager.status == Status.FAIL
    assert pager.message == "no routed pagerduty or opsgenie receiver with a key set"
    webhook = await KIND.run(check(routing_am.url, mode="receivers", integrations=["webhook"]),
                             ctx)
    assert webhook.status == Status.PASS


def test_routed_receivers_walks_the_whole_tree() -> None:
    config = {"route": {"receiver": "root", "routes": [
        {"receiver": "a", "routes": [{"receiver": "b"}, {"matchers": ["x=y"]}]},
        {"routes": [{"receiver": "c"}]},
    ]}, "receivers": [{"name": n} for n in ("root", "a", "b", "c", "orphan")]}
    assert routed_receivers(config) == {"root", "a", "b", "c"}


def test_key_rules_secret_mask_files_and_globals() -> None:
    # what /api/v2/status shows: secrets masked as <secret>, which counts as set
    assert keyed_integrations({"pagerduty_configs": [{"routing_key": "<secret>"}]},
                              {}) == {"pagerduty": "keyed"}
    assert keyed_integrations({"pagerduty_configs": [{"service_key": "<secret>"}]},
                              {}) == {"pagerduty": "keyed"}
    assert keyed_integrations({"pagerduty_configs": [{"routing_key_file": "/run/pd"}]},
                              {}) == {"pagerduty": "keyed"}
    assert keyed_integrations({"pagerduty_configs": [{"routing_key": ""}]},
                              {}) == {"pagerduty": "no key"}
    assert keyed_integrations({"opsgenie_configs": [{"api_url": "x"}]},
                              {}) == {"opsgenie": "no key"}
    assert keyed_integrations({"opsgenie_configs": [{"api_url": "x"}]},
                              {"opsgenie_api_key": "<secret>"}) == {"opsgenie": "keyed"}
    assert keyed_integrations({"slack_configs": [{"channel": "#x"}],
                               "email_configs": [{"to": "ops@example.org"}]},
                              {"slack_api_url_file": "/run/slack"}) == {
        "slack": "keyed", "email": "keyed"}
    assert keyed_integrations({"name": "null"}, {}) == {}


def test_spec_validation() -> None:
    with pytest.raises(ValidationError, match="needs integrations"):
        check("http://alertmanager:9093", mode="receivers")
    with pytest.raises(ValidationError, match="only used with mode receivers"):
        check("http://alertmanager:9093", mode="active_alerts", integrations=["slack"])
    with pytest.raises(ValidationError):
        check("http://alertmanager:9093", mode="receivers", integrations=["carrier-pigeon"])
    with pytest.raises(ValidationError):
        check("http://alertmanager:9093", mode="active_alerts", max_active=-1)
    with pytest.raises(ValidationError):
        check("http://alertmanager:9093")  # mode is required
