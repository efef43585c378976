"""The observability entries of the `qbitel-production` preset (70-observability.yaml).

The fragment must load in an empty environment and carry every ID it owns. The `http`
entries run, through the real `http` kind, against a local aiohttp app that answers
with each system's documented response shape (named at each handler); the URL of the
entry is overridden the way a user would, by repeating the check id. 5.1.1 runs
against a real Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from exporter import config, registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.runner import run_check
from tests.probes import promstack
from tests.support.servers import free_port

FRAGMENT = "70-observability.yaml"
OWNED = {
    "5.1.1": "http", "5.1.2": "prometheus_query", "5.1.3": "http",
    "5.1.4": "prometheus_query", "5.2.2": "http", "5.2.3": "http", "5.3.1": "http",
    "5.3.3": "http", "2.4.2": "http|qradar_events", "5.4.1": "alertmanager", "5.4.2": "alertmanager",
    "11.3.1": "aggregate", "11.3.2": "alertmanager", "11.3.3": "prometheus_query",
    "11.3.5": "prometheus_query",
}
GRAFANA_TOKEN = "glsa_grafanaToken_0123456789abcdef"
QRADAR_TOKEN = "qradar-sec-token-5b7e1c2d"
HEC_TOKEN = "6f1e2d3c-hec-token-4b5a-9c8d-7e6f5a4b3c2d"


def fragment() -> dict[str, Any]:
    """The parsed preset fragment."""
    return config.preset_file("qbitel-production", FRAGMENT)  # inputs at their defaults


def load(overrides: list[dict[str, Any]], environ: dict[str, str] | None = None
         ) -> config.Config:
    """The fragment with user overrides merged by check id, validated like a config file."""
    merged = config._merge(fragment(), {"checks": overrides})
    return config.build(merged, "test", environ or {})


# --------------------------------------------------------------------------- loading


def test_fragment_loads_in_an_empty_environment() -> None:
    loaded = load([], environ={})
    items: dict[str, set[str]] = {}
    for spec in loaded.checks:
        items.setdefault(spec.item_id, set()).add(spec.kind)
    for item, kind in OWNED.items():
        assert items.get(item) == set(kind.split("|")), (item, items.get(item))
    assert set(items) == set(OWNED)


def test_token_checks_ship_enabled_and_the_siem_alternatives_disabled() -> None:
    """Tokens are resolved at each run, so the Grafana checks and the default SIEM's
    (Splunk) ship enabled; the other SIEMs are alternatives chosen by SIEM_TYPE."""
    checks = load([], environ={}).checks
    for spec in checks:
        if spec.item_id == "5.1.3" or spec.id == "2.4.2":
            assert spec.enabled, spec.id
        if spec.id in ("2.4.2-elasticsearch", "2.4.2-qradar"):
            assert not spec.enabled and "SIEM_TYPE" in (spec.disabled_reason or "")
        if not spec.enabled:
            assert spec.disabled_reason, spec.id
    enabled = {spec.id for spec in checks if spec.enabled}
    assert {"5.1.1", "5.1.2", "5.1.4", "5.4.1", "11.3.1", "11.3.2", "11.3.5"} <= enabled


async def test_unset_tokens_are_config_errors_of_those_checks_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.delenv("SPLUNK_HEC_TOKEN", raising=False)
    cfg = load([], environ={})
    context = RuntimeContext(cfg.connections, state_dir=tmp_path / "state")
    try:
        for check_id, variable in (("5.1.3-overview", "GRAFANA_TOKEN"),
                                   ("2.4.2", "SPLUNK_HEC_TOKEN")):
            outcome, _ = await run_check(cfg.check(check_id), context)
            assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
            assert variable in outcome.message, outcome.message
    finally:
        await context.aclose()


def _token_warnings(cfg: config.Config, environ: dict[str, str]) -> list[str]:
    from exporter import lint

    return [w for w in lint.config_warnings(cfg, environ) if "cannot be resolved now" in w]


def test_enabling_a_token_check_needs_the_variable() -> None:
    """Resolved at each run: without the variable the load warns, naming it."""
    override = [{"id": "5.1.3-overview", "enabled": True, "bearer_token": "${GRAFANA_TOKEN}"}]
    assert any("GRAFANA_TOKEN" in w for w in _token_warnings(load(override, environ={}), {}))
    loaded = load(override, environ={"GRAFANA_TOKEN": "x"})
    assert loaded.check("5.1.3-overview").enabled
    assert not any("GRAFANA_TOKEN" in w for w in _token_warnings(loaded, {"GRAFANA_TOKEN": "x"}))


# --------------------------------------------------------------------------- local systems


@dataclass
class Systems:
    """What the fake observability systems answer; tests flip `healthy` and friends."""

    healthy: bool = True
    services: list[str] = field(default_factory=lambda: ["qbitel-api", "jaeger-query"])
    dependencies: list[dict[str, Any]] = field(default_factory=lambda: [
        {"parent": "qbitel-api", "child": "postgres", "callCount": 42}])
    log_streams: int = 1
    retention: bool = True
    dashboards: tuple[str, ...] = ("readiness-overview", "readiness-tls", "readiness-dr",
                                   "readiness-platform")
    seen_auth: list[str] = field(default_factory=list)
    hec_events: list[dict[str, Any]] = field(default_factory=list)
    recent_events: int = 3


def make_app(state: Systems) -> web.Application:
    async def loki_ready(_: web.Request) -> web.Response:
        # Loki `GET /ready`: 200 with the body "ready"; 503 with the reason while not ready.
        if state.healthy:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="Ingester not ready: waiting for 15s after "
                            "being ready\n")

    async def loki_query_range(request: web.Request) -> web.Response:
        # Loki `GET /loki/api/v1/query_range` with a log selector: status + data.resultType
        # "streams" + data.result [{stream: {labels}, values: [[ns timestamp, line]]}].
        assert request.query["query"] == '{namespace="qbitel"}'
        result = [{"stream": {"namespace": "qbitel", "app": "qbitel-api"},
                   "values": [["1764000000000000000", '{"level":"info","msg":"ok"}']]}
                  ] * state.log_streams
        return web.json_response({"status": "success", "data": {
            "resultType": "streams", "result": result,
            "stats": {"summary": {"totalLinesProcessed": len(result)}}}})

    async def loki_config(_: web.Request) -> web.Response:
        # Loki `GET /config`: the running configuration as YAML text.
        enabled = "true" if state.retention else "false"
        period = "744h" if state.retention else "0s"
        text = (f"target: all\nauth_enabled: false\nlimits_config:\n  ingestion_rate_mb: 4\n"
                f"  retention_period: {period}\n  max_query_lookback: 0s\ncompactor:\n"
                f"  working_directory: /loki/compactor\n  compaction_interval: 10m\n"
                f"  retention_enabled: {enabled}\n  retention_delete_delay: 2h\n")
        return web.Response(text=text, content_type="text/plain")

    async def es_health(_: web.Request) -> web.Response:
        # Elasticsearch `GET /_cluster/health`: cluster_name, status green|yellow|red, ...
        return web.json_response({
            "cluster_name": "logs", "status": "green" if state.healthy else "red",
            "timed_out": False, "number_of_nodes": 3, "number_of_data_nodes": 3,
            "active_primary_shards": 12, "active_shards": 24, "relocating_shards": 0,
            "initializing_shards": 0, "unassigned_shards": 0 if state.healthy else 6,
            "active_shards_percent_as_number": 100.0 if state.healthy else 80.0})

    async def es_ilm(request: web.Request) -> web.Response:
        # Elasticsearch `GET /_ilm/policy/<name>`: {<name>: {version, modified_date,
        # policy: {phases: {hot: ..., delete: {min_age, actions: {delete: {}}}}}}};
        # an unknown policy is a 404 with an error object.
        name = request.match_info["name"]
        if not state.retention:
            return web.json_response({"error": {"root_cause": [
                {"type": "resource_not_found_exception",
                 "reason": f"Lifecycle policy not found: {name}"}],
                "type": "resource_not_found_exception",
                "reason": f"Lifecycle policy not found: {name}"}, "status": 404}, status=404)
        return web.json_response({name: {
            "version": 1, "modified_date": "2025-01-01T00:00:00.000Z",
            "policy": {"phases": {
                "hot": {"min_age": "0ms", "actions": {"rollover": {"max_age": "1d"}}},
                "delete": {"min_age": "30d", "actions": {"delete": {}}}}},
            "in_use_by": {"indices": [], "data_streams": ["logs-qbitel"],
                          "composable_templates": []}}})

    async def jaeger_services(_: web.Request) -> web.Response:
        # Jaeger query `GET /api/services`: {"data": [names], "total", "limit", "offset",
        # "errors"}.
        return web.json_response({"data": state.services, "total": len(state.services),
                                  "limit": 0, "offset": 0, "errors": None})

    async def jaeger_dependencies(request: web.Request) -> web.Response:
        # Jaeger query `GET /api/dependencies?endTs=&lookback=`: {"data": [{parent, child,
        # callCount}], ...}.
        assert request.query["lookback"] == "86400000"
        return web.json_response({"data": state.dependencies, "total": 0, "limit": 0,
                                  "offset": 0, "errors": None})

    async def splunk_health(_: web.Request) -> web.Response:
        # Splunk HEC `GET /services/collector/health`: {"text":"HEC is healthy","code":17};
        # busy: 503 {"text":"Server is busy","code":9}.
        if state.healthy:
            return web.json_response({"text": "HEC is healthy", "code": 17})
        return web.json_response({"text": "Server is busy", "code": 9}, status=503)

    async def splunk_event(request: web.Request) -> web.Response:
        # Splunk HEC `POST /services/collector/event` with `Authorization: Splunk <token>`:
        # 200 {"text":"Success","code":0}; no token 401 {"text":"Token is required",
        # "code":2}; wrong token 403 {"text":"Invalid token","code":4}; no event field 400
        # {"text":"Event field is required","code":12}.
        auth = request.headers.get("Authorization", "")
        if not auth:
            return web.json_response({"text": "Token is required", "code": 2}, status=401)
        if auth != f"Splunk {HEC_TOKEN}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        body = await request.json()
        if "event" not in body:
            return web.json_response({"text": "Event field is required", "code": 12},
                                     status=400)
        state.hec_events.append(body)
        return web.json_response({"text": "Success", "code": 0})

    async def es_search(request: web.Request) -> web.Response:
        # Elasticsearch `POST /<index>/_search` with size 0 and track_total_hits:
        # {took, timed_out, _shards, hits: {total: {value, relation}, max_score, hits}}.
        body = await request.json()
        assert body["query"]["range"]["@timestamp"]["gte"] == "now-1h"
        return web.json_response({
            "took": 3, "timed_out": False,
            "_shards": {"total": 2, "successful": 2, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": state.recent_events, "relation": "eq"},
                     "max_score": None, "hits": []}})

    async def qradar_about(request: web.Request) -> web.Response:
        # QRadar REST API `GET /api/system/about` (SEC token header): build and release facts.
        if request.headers.get("SEC") != QRADAR_TOKEN:
            return web.json_response({"http_response": {"code": 401, "message": "Unauthorized"},
                                      "code": 10, "message": "No SEC header present"},
                                     status=401)
        return web.json_response({"build_version": "2023.10.0.20231013120000",
                                  "external_version": "7.5.0", "fips_enabled": False,
                                  "release_name": "7.5.0 UpdatePackage 7"})

    async def grafana_dashboard(request: web.Request) -> web.Response:
        # Grafana HTTP API `GET /api/dashboards/uid/<uid>`: {"dashboard": {uid, title, ...},
        # "meta": {...}}; 401 {"message": "Unauthorized"}; 404 {"message": "Dashboard not
        # found"}.
        auth = request.headers.get("Authorization", "")
        state.seen_auth.append(auth)
        if auth != f"Bearer {GRAFANA_TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        uid = request.match_info["uid"]
        if uid not in state.dashboards:
            return web.json_response({"message": "Dashboard not found"}, status=404)
        return web.json_response({
            "dashboard": {"id": 7, "uid": uid, "title": uid.replace("-", " ").title(),
                          "schemaVersion": 39, "version": 3, "panels": []},
            "meta": {"type": "db", "slug": uid, "url": f"/d/{uid}/{uid}",
                     "provisioned": True, "folderTitle": "Readiness"}})

    app = web.Application()
    app.router.add_get("/ready", loki_ready)
    app.router.add_get("/loki/api/v1/query_range", loki_query_range)
    app.router.add_get("/config", loki_config)
    app.router.add_get("/_cluster/health", es_health)
    app.router.add_get("/_ilm/policy/{name}", es_ilm)
    app.router.add_get("/api/services", jaeger_services)
    app.router.add_get("/api/dependencies", jaeger_dependencies)
    app.router.add_get("/services/collector/health", splunk_health)
    app.router.add_post("/services/collector/event", splunk_event)
    app.router.add_post("/{index}/_search", es_search)
    app.router.add_get("/api/system/about", qradar_about)
    app.router.add_get("/api/dashboards/uid/{uid}", grafana_dashboard)
    return app


@pytest.fixture
async def systems() -> AsyncIterator[tuple[Systems, str]]:
    state = Systems()
    runner = web.AppRunner(make_app(state))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def entry(check_id: str, base: str, environ: dict[str, str] | None = None,
          **overrides: Any) -> CheckSpec:
    """The preset entry with its URL moved to `base` (same path and query) + overrides."""
    original = next(c for c in fragment()["checks"] if c["id"] == check_id)
    url = str(URL(base).with_path(URL(original["url"]).path)
              .with_query(URL(original["url"]).query))
    return load([{"id": check_id, "url": url, **overrides}], environ).check(check_id)


async def run(spec: CheckSpec, ctx: Any) -> Outcome:
    return await registry.probe_kind(spec.kind).run(spec, ctx)


@pytest.mark.parametrize("check_id", [
    "5.2.2", "5.2.2-recent-logs", "5.2.2-elasticsearch", "5.2.3", "5.2.3-period",
    "5.2.3-elasticsearch-ilm", "5.3.1", "5.3.3",
])
async def test_entry_passes_on_a_healthy_system(systems: Any, ctx: Any, check_id: str) -> None:
    _, base = systems
    outcome = await run(entry(check_id, base, enabled=True), ctx)
    assert outcome.status == Status.PASS, (check_id, outcome.message)


@pytest.mark.parametrize(("check_id", "breakage"), [
    ("5.2.2", {"healthy": False}),
    ("5.2.2-recent-logs", {"log_streams": 0}),
    ("5.2.2-elasticsearch", {"healthy": False}),
    ("5.2.3", {"retention": False}),
    ("5.2.3-period", {"retention": False}),
    ("5.2.3-elasticsearch-ilm", {"retention": False}),
    ("5.3.1", {"services": ["billing", "jaeger-query"]}),
    ("5.3.1", {"services": []}),
    ("5.3.3", {"dependencies": []}),
])
async def test_entry_fails_on_an_unhealthy_system(systems: Any, ctx: Any, check_id: str,
                                                  breakage: dict[str, Any]) -> None:
    state, base = systems
    for name, value in breakage.items():
        setattr(state, name, value)
    outcome = await run(entry(check_id, base, enabled=True), ctx)
    assert outcome.status == Status.FAIL, (check_id, outcome.status, outcome.message)


async def test_siem_splunk_sends_an_authenticated_test_event(
        systems: Any, ctx: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state, base = systems
    environ = {"SPLUNK_HEC_TOKEN": HEC_TOKEN}
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", HEC_TOKEN)
    spec = entry("2.4.2", base, environ, enabled=True)
    outcome = await run(spec, ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert len(state.hec_events) == 1 and state.hec_events[0]["source"] == "readiness-exporter"
    # the old rule: HEC health answers 17 whatever the token is
    health = load([{"id": "2.4.2-old", "section": "2.4", "title": "old", "kind": "http",
                    "url": f"{base}/services/collector/health",
                    "json_assertions": [{"path": "code", "op": "==", "value": 17}]}])
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", "revoked-hec-token-0000")
    assert (await run(health.check("2.4.2-old"), ctx)).status == Status.PASS
    revoked = await run(spec, ctx)
    assert revoked.status == Status.ERROR and revoked.reason == "auth", revoked.message
    assert len(state.hec_events) == 1
    text = caplog.text + outcome.message + revoked.message
    assert HEC_TOKEN not in text and "revoked-hec-token-0000" not in text


def test_siem_token_is_required_to_enable_it() -> None:
    cfg = load([{"id": "2.4.2", "enabled": True}], environ={})
    assert any("SPLUNK_HEC_TOKEN" in w for w in _token_warnings(cfg, {}))


@pytest.mark.parametrize(("recent", "status"), [(3, Status.PASS), (0, Status.FAIL)])
async def test_siem_elasticsearch_needs_recent_events(systems: Any, ctx: Any, recent: int,
                                                      status: Status) -> None:
    state, base = systems
    state.recent_events = recent
    outcome = await run(entry("2.4.2-elasticsearch", base, enabled=True), ctx)
    assert outcome.status == status, outcome.message
    # the old rule (cluster health green) passed in both cases
    old = load([{"id": "h", "section": "2.4", "title": "old", "kind": "http",
                 "url": f"{base}/_cluster/health", "json_assertions": [
                     {"path": "status", "op": "in", "value": ["green", "yellow"]}]}])
    assert (await run(old.check("h"), ctx)).status == Status.PASS


async def test_loki_not_listening_is_an_error(ctx: Any) -> None:
    outcome = await run(entry("5.2.2", f"http://127.0.0.1:{free_port()}"), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "connect"


async def test_grafana_dashboards_with_a_token(systems: Any, ctx: Any,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state, base = systems
    monkeypatch.setenv("GRAFANA_TOKEN", GRAFANA_TOKEN)
    environ = {"GRAFANA_TOKEN": GRAFANA_TOKEN}
    ids = ["5.1.3-overview", "5.1.3-tls", "5.1.3-dr", "5.1.3-platform"]
    outcomes = []
    for check_id in ids:
        spec = entry(check_id, base, environ, enabled=True, bearer_token="${GRAFANA_TOKEN}")
        outcomes.append(await run(spec, ctx))
        assert outcomes[-1].status == Status.PASS, (check_id, outcomes[-1].message)
    assert state.seen_auth == [f"Bearer {GRAFANA_TOKEN}"] * 4

    state.dashboards = ("readiness-overview",)  # readiness-dr was never imported
    spec = entry("5.1.3-dr", base, environ, enabled=True, bearer_token="${GRAFANA_TOKEN}")
    missing = await run(spec, ctx)
    assert missing.status == Status.FAIL and "404" in missing.message

    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_revoked_token")
    revoked = await run(spec, ctx)
    assert revoked.status == Status.ERROR and revoked.reason == "auth"
    outcomes += [missing, revoked]
    for outcome in outcomes:
        assert GRAFANA_TOKEN not in outcome.message
        assert all(GRAFANA_TOKEN not in repr(m.labels) for m in outcome.measurements)
    assert GRAFANA_TOKEN not in caplog.text


def test_qradar_alternative_searches_events() -> None:
    """2.4.2-qradar runs an Ariel event search (tests/probes/test_qradar.py runs it)."""
    spec = load([{"id": "2.4.2-qradar", "enabled": True}],
                {"QRADAR_TOKEN": QRADAR_TOKEN}).check("2.4.2-qradar")
    assert spec.kind == "qradar_events" and spec.enabled
    assert QRADAR_TOKEN not in repr(spec)


# --------------------------------------------------------------------------- 5.1.1


@pytest.fixture(scope="module")
def prometheus() -> Iterator[promstack.PrometheusServer]:
    with promstack.prometheus(promstack.prometheus_config()) as server:
        yield server


async def test_prometheus_ready(prometheus: promstack.PrometheusServer, ctx: Any) -> None:
    outcome = await run(entry("5.1.1", prometheus.url), ctx)
    assert outcome.status == Status.PASS, outcome.message
    outcome = await run(entry("5.1.1", f"http://127.0.0.1:{free_port()}"), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "connect"
