"""`prometheus_query` against a real Prometheus (Debian package) started by the test.

The Prometheus scrapes itself as job `qbitel-api` and a port nothing listens on as job
`qbitel-worker` (so one application target is up and one is down), loads the bundled
rule group names plus one group whose rule fails to evaluate, and fires a critical
alert (`vector(1)`, evaluation every second).
"""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
import yaml
from aiohttp import web
from pydantic import ValidationError

from exporter.model import Outcome, Status
from exporter.probes.prometheus_query import KIND, PrometheusQueryCheck
from tests.probes import promstack
from tests.support.servers import free_port

PRESET = (Path(__file__).resolve().parents[2]
          / "exporter/presets/qbitel-production/70-observability.yaml")

RULES_TEXT = """
groups:
  - name: readiness-exporter.rules
    interval: 1s
    rules:
      - record: job:up:min
        expr: min by (job) (up)
  - name: readiness-exporter.alerts
    interval: 1s
    rules:
      - alert: QbitelCriticalTest
        expr: vector(1)
        labels: {severity: critical}
      - alert: QbitelWarningTest
        expr: vector(1)
        labels: {severity: warning}
  - name: qbitel.alerts
    interval: 1s
    rules:
      - alert: QbitelApiDown
        expr: up{job="qbitel-api"} == 2
        labels: {severity: critical}
  - name: broken.rules
    interval: 1s
    rules:
      # two input series collapse to one labelset once renamed: evaluation error
      - record: collide
        expr: '{__name__=~"up|scrape_duration_seconds", job="qbitel-api"}'
"""

BASIC_USER = "reader"
BASIC_PASSWORD = "prom-basic-S3cret-value-91"
BEARER_TOKEN = "prom-bearer-T0ken-value-57"


@pytest.fixture(scope="module")
def stack() -> Iterator[promstack.PrometheusServer]:
    """Prometheus scraping itself (qbitel-api) and a dead port (qbitel-worker)."""
    dead = free_port()

    def config(port: int) -> str:
        return promstack.prometheus_config(
            {"qbitel-api": [f"127.0.0.1:{port}"], "qbitel-worker": [f"127.0.0.1:{dead}"]},
            rule_files=["app.yml"],
        )

    port = free_port()
    root_rules = {"app.yml": RULES_TEXT}
    server = promstack.start_prometheus(config(port), rules=root_rules, port=port)
    try:
        server.wait_until(lambda: len(server.query('up{job=~"qbitel.*"}')) == 2,
                          what="both qbitel targets scraped")
        server.wait_until(lambda: bool(server.query('ALERTS{alertstate="firing"}')),
                          what="test alert firing")
        server.wait_until(lambda: _broken_rule_failed(server), what="broken rule evaluated")
        yield server
    finally:
        server.stop()


def _broken_rule_failed(server: promstack.PrometheusServer) -> bool:
    groups = server.get("/api/v1/rules")["data"]["groups"]
    return any(g["name"] == "broken.rules" and g["rules"][0]["health"] == "err"
               for g in groups)


@pytest.fixture(scope="module")
def secured() -> Iterator[promstack.PrometheusServer]:
    """A second Prometheus behind exporter-toolkit basic auth (--web.config.file)."""
    hashed = bcrypt.hashpw(BASIC_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = Path(tempfile.mkdtemp(prefix="readiness-webcfg-")) / "web.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {BASIC_USER: hashed}}))
    port = free_port()
    server = promstack.start_prometheus(promstack.prometheus_config(), port=port,
                                        extra_args=(f"--web.config.file={web_config}",),
                                        ready_auth=(BASIC_USER, BASIC_PASSWORD))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(web_config.parent, ignore_errors=True)


async def _start_proxy(upstream_url: str, token: str | None,
                       ssl_context: ssl.SSLContext | None) -> tuple[web.AppRunner, str]:
    """A kube-rbac-proxy-like front (optional bearer token, optional TLS) that forwards
    to the real Prometheus."""

    async def forward(request: web.Request) -> web.StreamResponse:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401, text="Unauthorized")
        body = await request.read()
        async with aiohttp.ClientSession() as session, session.request(
            request.method, upstream_url + request.path_qs, data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as upstream:
            return web.Response(status=upstream.status, body=await upstream.read(),
                                content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://127.0.0.1:{port}"


@pytest.fixture
async def bearer_proxy(stack: promstack.PrometheusServer) -> AsyncIterator[str]:
    runner, url = await _start_proxy(stack.url, BEARER_TOKEN, None)
    yield url
    await runner.cleanup()


@pytest.fixture
async def tls_proxy(stack: promstack.PrometheusServer,
                    tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """HTTPS in front of Prometheus with a certificate from a test CA; yields the URL and
    the CA bundle file."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    runner, url = await _start_proxy(stack.url, None, server_context)
    yield url, ca_file
    await runner.cleanup()


def check(url: str, **fields: Any) -> PrometheusQueryCheck:
    base: dict[str, Any] = {"id": "t", "section": "5.1", "title": "t",
                            "kind": "prometheus_query", "url": url}
    return PrometheusQueryCheck.model_validate({**base, **fields})


def preset_check(check_id: str, **overrides: Any) -> PrometheusQueryCheck:
    """The shipped preset entry `check_id`, with fields overridden (as a user would)."""
    entries = yaml.safe_load(PRESET.read_text(encoding="utf-8"))["checks"]
    entry = next(e for e in entries if e["id"] == check_id)
    return PrometheusQueryCheck.model_validate({**entry, **overrides})


def values(outcome: Outcome) -> dict[str, float]:
    return {m.family: m.value for m in outcome.measurements if not m.labels}


# --------------------------------------------------------------------------- query mode


async def test_preset_targets_up_fails_naming_the_down_target(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(preset_check("5.1.2", url=stack.url), ctx)
    assert outcome.status == Status.FAIL, outcome.message
    assert 'job="qbitel-worker"' in outcome.message
    assert "qbitel-api" not in outcome.message  # the healthy one is not blamed
    got = values(outcome)
    assert got["readiness_prometheus_query_result_samples"] == 2
    assert got["readiness_prometheus_query_failing_samples"] == 1
    assert got["readiness_prometheus_query_result_min"] == 0
    assert got["readiness_prometheus_query_result_max"] == 1
    assert got["readiness_prometheus_query_threshold"] == 1
    # bounded labels: no series label is copied into a measurement
    assert all(not m.labels for m in outcome.measurements)


async def test_targets_up_passes_for_the_up_job(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(check(stack.url, query='up{job="qbitel-api"}'), ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert "= 1" in outcome.message


async def test_match_any(stack: Any, ctx: Any) -> None:
    spec = check(stack.url, query='up{job=~"qbitel.*"}', match="any")
    assert (await KIND.run(spec, ctx)).status == Status.PASS
    spec = check(stack.url, query='up{job=~"qbitel.*"}', match="any", threshold=5)
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.FAIL and outcome.message.startswith("no sample")


async def test_scalar_result_and_operators(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(check(stack.url, query="scalar(vector(3))", op=">",
                                   threshold=2), ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert values(outcome)["readiness_prometheus_query_result_max"] == 3
    outcome = await KIND.run(check(stack.url, query="vector(3)", op="<=", threshold=2), ctx)
    assert outcome.status == Status.FAIL
    assert "= 3" in outcome.message and "<= 2" in outcome.message


@pytest.mark.parametrize(("on_empty", "status"), [
    ("pass", Status.PASS), ("fail", Status.FAIL), ("error", Status.ERROR),
])
async def test_empty_result_is_explicit(stack: Any, ctx: Any, on_empty: str,
                                        status: Status) -> None:
    spec = check(stack.url, query='up{job="no-such-job"}', on_empty=on_empty)
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == status
    assert "no sample" in outcome.message
    assert values(outcome)["readiness_prometheus_query_result_samples"] == 0
    assert "readiness_prometheus_query_result_min" not in values(outcome)


async def test_preset_incident_free_fails_while_a_critical_alert_fired(stack: Any,
                                                                      ctx: Any) -> None:
    outcome = await KIND.run(preset_check("11.3.5", url=stack.url), ctx)
    assert outcome.status == Status.FAIL, outcome.message
    assert "QbitelCriticalTest" in outcome.message
    assert "QbitelWarningTest" not in outcome.message


async def test_incident_free_passes_when_no_such_alert_fired(stack: Any, ctx: Any) -> None:
    query = 'max_over_time(ALERTS{alertstate="firing",severity="page-never"}[24h])'
    outcome = await KIND.run(preset_check("11.3.5", url=stack.url, query=query), ctx)
    assert outcome.status == Status.PASS, outcome.message


async def test_preset_sla_expression_fails_without_traffic(stack: Any, ctx: Any) -> None:
    # the Prometheus has no http_requests_total: no data must not count as meeting the SLA
    outcome = await KIND.run(preset_check("11.3.3-availability", url=stack.url), ctx)
    assert outcome.status == Status.FAIL and "no sample" in outcome.message
    # a real SLA-style expression over data it has: scrape success ratio of qbitel-api
    ratio = 'avg_over_time(up{job="qbitel-api"}[5m])'
    outcome = await KIND.run(preset_check("11.3.3-availability", url=stack.url,
                                          query=ratio), ctx)
    assert outcome.status == Status.PASS, outcome.message


async def test_bad_query_is_a_config_error(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(check(stack.url, query="sum(up"), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "config"
    assert "bad_data" in outcome.message


async def test_range_query_result_is_rejected(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(check(stack.url, query="up[1m]"), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "config"
    assert "matrix" in outcome.message


async def test_connection_refused_and_wrong_path(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(check(f"http://127.0.0.1:{free_port()}", query="up"), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "connect"
    outcome = await KIND.run(check(stack.url + "/not-prometheus", query="up"), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "config"


# --------------------------------------------------------------------------- rules mode


async def test_preset_rule_groups_loaded(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(preset_check("5.1.4", url=stack.url), ctx)
    assert outcome.status == Status.PASS, outcome.message
    loaded = {m.labels["group"]: m.value for m in outcome.measurements
              if m.family == "readiness_prometheus_rule_group_loaded"}
    assert loaded == {"readiness-exporter.rules": 1, "readiness-exporter.alerts": 1}


async def test_rule_groups_picked_up_after_a_reload(ctx: Any) -> None:
    with promstack.prometheus(promstack.prometheus_config()) as server:
        spec = check(server.url, rule_groups=["readiness-exporter.alerts"])
        before = await KIND.run(spec, ctx)
        assert before.status == Status.FAIL and "not loaded" in before.message
        server.write_rules({"alerts.yml": promstack.alert_rules(
            "readiness-exporter.alerts", {"ReadinessCheckFailing": {"severity": "critical"}})})
        server.reload(promstack.prometheus_config(rule_files=["alerts.yml"]))
        assert server.rule_groups() == ["readiness-exporter.alerts"]
        after = await KIND.run(spec, ctx)
        assert after.status == Status.PASS, after.message


async def test_missing_rule_group_fails(stack: Any, ctx: Any) -> None:
    spec = check(stack.url, rule_groups=["readiness-exporter.rules", "readiness-exporter.slo"])
    outcome = await KIND.run(spec, ctx)
    assert outcome.status == Status.FAIL
    assert "not loaded: readiness-exporter.slo" in outcome.message
    loaded = {m.labels["group"]: m.value for m in outcome.measurements
              if m.family == "readiness_prometheus_rule_group_loaded"}
    assert loaded["readiness-exporter.slo"] == 0


async def test_group_with_failing_rule(stack: Any, ctx: Any) -> None:
    outcome = await KIND.run(check(stack.url, rule_groups=["broken.rules"]), ctx)
    assert outcome.status == Status.FAIL and "broken.rules (1 failing)" in outcome.message
    unhealthy = [m.value for m in outcome.measurements
                 if m.family == "readiness_prometheus_rule_group_unhealthy_rules"]
    assert unhealthy == [1]
    spec = check(stack.url, rule_groups=["broken.rules"], require_healthy_rules=False)
    assert (await KIND.run(spec, ctx)).status == Status.PASS


# --------------------------------------------------------------------------- critical rules

EXPORTER_ONLY_RULES = """
groups:
  - name: readiness-exporter.rules
    rules:
      - record: job:up:min
        expr: min by (job) (up)
  - name: readiness-exporter.alerts
    rules:
      - alert: ReadinessCriticalCheckFailing
        expr: vector(1) == 0
        labels: {severity: critical}
  - name: qbitel.alerts
    rules:
      - alert: QbitelSlowRequests
        expr: vector(1) == 0
        labels: {severity: warning}
"""


@pytest.fixture(scope="module")
def exporter_only() -> Iterator[promstack.PrometheusServer]:
    """A Prometheus with the exporter's groups and an application group that has no
    critical alerting rule: nothing of the application could ever page."""
    with promstack.prometheus(promstack.prometheus_config(rule_files=["rules.yml"]),
                              rules={"rules.yml": EXPORTER_ONLY_RULES}) as server:
        server.wait_until(lambda: len(server.rule_groups()) == 3, what="rules loaded")
        yield server


async def test_preset_alert_rules_need_a_critical_rule_of_the_application(
        stack: Any, exporter_only: Any, ctx: Any) -> None:
    old_rule = check(exporter_only.url,
                     rule_groups=["readiness-exporter.rules", "readiness-exporter.alerts"])
    assert (await KIND.run(old_rule, ctx)).status == Status.PASS  # the old 5.1.4 verdict
    without = await KIND.run(preset_check("5.1.4", url=exporter_only.url), ctx)
    assert without.status == Status.ERROR and without.reason == "config", without.message
    assert "0 alerting rules with severity=critical loaded outside" in without.message
    assert "min_critical_alert_rules" in without.message
    assert values(without)["readiness_prometheus_critical_alert_rules"] == 0
    with_app = await KIND.run(preset_check("5.1.4", url=stack.url), ctx)
    assert with_app.status == Status.PASS, with_app.message
    assert "1 critical alerting rules" in with_app.message
    assert values(with_app)["readiness_prometheus_critical_alert_rules"] == 1


async def test_preset_incident_free_is_an_error_without_critical_rules(
        stack: Any, exporter_only: Any, ctx: Any) -> None:
    # no critical alert fired anywhere, but the application has no rule that could fire
    old_rule = preset_check("11.3.5", url=exporter_only.url, min_critical_alert_rules=0)
    assert (await KIND.run(old_rule, ctx)).status == Status.PASS  # the old verdict
    outcome = await KIND.run(preset_check("11.3.5", url=exporter_only.url), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "config", outcome.message
    assert values(outcome)["readiness_prometheus_critical_alert_rules"] == 0
    # with the application's critical rule loaded and nothing of that severity fired
    query = 'max_over_time(ALERTS{alertstate="firing",severity="page-never"}[24h])'
    quiet = await KIND.run(preset_check("11.3.5", url=stack.url, query=query), ctx)
    assert quiet.status == Status.PASS, quiet.message
    assert values(quiet)["readiness_prometheus_critical_alert_rules"] == 1


# --------------------------------------------------------------------------- auth


async def test_basic_auth_against_prometheus_web_config(
    secured: Any, ctx: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PROM_PASSWORD", BASIC_PASSWORD)
    monkeypatch.setenv("PROM_WRONG", "not-the-password-33")
    good = check(secured.url, query="vector(1)",
                 basic_auth={"username": BASIC_USER, "password": "${PROM_PASSWORD}"})
    accepted = await KIND.run(good, ctx)
    assert accepted.status == Status.PASS, accepted.message
    bad = check(secured.url, query="vector(1)",
                basic_auth={"username": BASIC_USER, "password": "${PROM_WRONG}"})
    refused = await KIND.run(bad, ctx)
    assert refused.status == Status.ERROR and refused.reason == "auth"
    anonymous = await KIND.run(check(secured.url, query="vector(1)"), ctx)
    assert anonymous.status == Status.ERROR and anonymous.reason == "auth"
    _assert_no_secret([accepted, refused, anonymous], caplog, BASIC_PASSWORD,
                      "not-the-password-33")


async def test_bearer_token_through_an_auth_proxy(
    bearer_proxy: str, ctx: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PROM_TOKEN", BEARER_TOKEN)
    good = check(bearer_proxy, query='up{job="qbitel-api"}', bearer_token="${PROM_TOKEN}")
    outcome = await KIND.run(good, ctx)
    assert outcome.status == Status.PASS, outcome.message
    missing = await KIND.run(check(bearer_proxy, query="up"), ctx)
    assert missing.status == Status.ERROR and missing.reason == "auth"
    monkeypatch.delenv("PROM_TOKEN")
    unset = await KIND.run(good, ctx)
    assert unset.status == Status.ERROR and unset.reason == "config"
    assert "PROM_TOKEN" in unset.message
    _assert_no_secret([outcome, missing, unset], caplog, BEARER_TOKEN)


async def test_https_with_a_private_ca(tls_proxy: tuple[str, Path], ctx: Any) -> None:
    url, ca_file = tls_proxy
    outcome = await KIND.run(check(url, query='up{job="qbitel-api"}',
                                   tls={"ca_file": str(ca_file)}), ctx)
    assert outcome.status == Status.PASS, outcome.message
    untrusted = await KIND.run(check(url, query="vector(1)"), ctx)
    assert untrusted.status == Status.ERROR and untrusted.reason == "tls"
    skipped = await KIND.run(check(url, query="vector(1)",
                                   tls={"insecure_skip_verify": True}), ctx)
    assert skipped.status == Status.PASS
    missing = await KIND.run(check(url, query="vector(1)",
                                   tls={"ca_file": str(ca_file) + ".missing"}), ctx)
    assert missing.status == Status.ERROR and missing.reason == "config"


def _assert_no_secret(outcomes: list[Outcome], caplog: pytest.LogCaptureFixture,
                      *secrets: str) -> None:
    for secret in secrets:
        for outcome in outcomes:
            assert secret not in outcome.message
            for measurement in outcome.measurements:
                assert secret not in repr(measurement.labels)
        assert secret not in caplog.text


# --------------------------------------------------------------------------- validation


def test_spec_validation() -> None:
    with pytest.raises(ValidationError, match="exactly one of query or rule_groups"):
        check("http://prometheus:9090")
    with pytest.raises(ValidationError, match="exactly one of query or rule_groups"):
        check("http://prometheus:9090", query="up", rule_groups=["x"])
    with pytest.raises(ValidationError, match="credentials"):
        check("http://user:pw@prometheus:9090", query="up")
    with pytest.raises(ValidationError, match="inline value"):
        check("http://prometheus:9090", query="up", bearer_token="plain-token")
    with pytest.raises(ValidationError, match="credentials"):
        check("http://prometheus:9090", query="up", headers={"Authorization": "x"})
    with pytest.raises(ValidationError):
        check("http://prometheus:9090", query="up", op="=~")
    with pytest.raises(ValidationError):
        check("http://prometheus:9090", query="up", on_empty="ignore")
