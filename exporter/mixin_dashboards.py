"""The Grafana dashboards of readiness-exporter, built from one panel list.

`PANELS` is the single source of truth: every panel names the dashboard it belongs to,
its query (written with the `$job`/`$instance` selector and `$__rate_interval`), unit
and description. `build()` turns the list into the four dashboard documents, for a
label selector and board/runbook URLs (`readiness-exporter mixin`); dashboards/*.json
are the reference rendering (`dashboards/generate.py`). Per-check series are
deduplicated across replicas (`max by (check)`) and limited with `topk`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
"""The label selector every query starts with (the dashboard's variables)."""

PanelType = Literal["stat", "timeseries", "table", "bargauge"]
Steps = tuple[tuple[float | None, str], ...]

GREEN_ONLY: Steps = ((None, "green"),)
PASS_RATIO: Steps = ((None, "red"), (0.8, "orange"), (1.0, "green"))
ZERO_GOOD: Steps = ((None, "green"), (1.0, "red"))
ONE_GOOD: Steps = ((None, "red"), (1.0, "green"))
DAYS_LEFT: Steps = ((None, "red"), (7.0, "orange"), (30.0, "green"))


def sel(extra: str = "") -> str:
    """`{job=~"$job", instance=~"$instance", <extra>}`."""
    return "{" + SEL + (", " + extra if extra else "") + "}"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel and the dashboard (uid) it belongs to."""

    dashboard: str
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    type: PanelType = "timeseries"
    width: int = 12
    height: int = 8
    steps: Steps = GREEN_ONLY
    mappings: tuple[tuple[str, str, str], ...] = ()
    """Value mappings: (value, text, colour)."""
    minimum: float | None = None
    maximum: float | None = None
    hidden_columns: tuple[str, ...] = ()
    """Table panels: label columns to hide besides Time, __name__ and job."""
    runbook: str = ""
    """Table panels with a `check` column: the alert whose runbook section it links."""


@dataclass(frozen=True)
class Dashboard:
    """Title, description and tags of one dashboard."""

    uid: str
    title: str
    description: str
    tags: tuple[str, ...] = field(default=("readiness",))


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard("readiness-overview", "Readiness / Go-live overview",
              "The go/no-go signal, pass ratio per checklist section, failing and erroring "
              "critical checks, stale checks and the exporter's own health."),
    Dashboard("readiness-tls", "Readiness / Certificates and TLS",
              "Days to expiry per certificate and endpoint, TLS protocol versions accepted, "
              "negotiated key-exchange groups (including post-quantum) and certificate "
              "facts."),
    Dashboard("readiness-dr", "Readiness / Backups and disaster recovery",
              "Recovery point age against the RPO per scenario, restore drill duration "
              "against the RTO, drill recency and backup sizes."),
    Dashboard("readiness-platform", "Readiness / Platform",
              "PostgreSQL, Redis, RabbitMQ and Kubernetes workload coverage (PDB, HPA, "
              "limits, network policy) as seen by the readiness checks."),
)

CRITICAL_BAD = ("max by (check, section, status) (readiness_check_status"
                + sel('severity="critical", status=~"fail|error"') + ")")
WITH_TITLE = ("* on (check) group_left (title, section_title) "
              "max by (check, title, section_title) (readiness_check_info" + sel() + ")")
JOB = '{job=~"$job"}'
TOP = 20
"""Per-check time series show the `TOP` highest checks (tables show every check)."""
LEGACY_TLS = "readiness_tls_endpoint_version_info" + sel(r'version=~"1\\.[01]", result="accepted"')

PANELS: tuple[Panel, ...] = (
    # ------------------------------------------------------------------ overview
    Panel("readiness-overview", "Go-live",
          "GO when every enabled critical check passes with a fresh result on every "
          "shard and no exporter is down (recording rule readiness:go_live), else NO-GO.",
          "none", (Query(f"min(readiness:go_live{JOB})"),), "stat", 6, 5,
          ONE_GOOD, (("1", "GO", "green"), ("0", "NO-GO", "red")), 0, 1),
    Panel("readiness-overview", "Checks passing",
          "Share of enabled (not skipped) checks whose latest run passed "
          "(recording rule readiness:pass:ratio).",
          "percentunit", (Query(f"min(readiness:pass:ratio{JOB})"),), "stat", 6, 5,
          PASS_RATIO, (), 0, 1),
    Panel("readiness-overview", "Critical checks failing or erroring",
          "Number of critical checks whose latest run failed or could not tell; any "
          "of them blocks go-live.", "none",
          (Query(f"count({CRITICAL_BAD} == 1) or vector(0)"),), "stat", 6, 5, ZERO_GOOD),
    Panel("readiness-overview", "Stale checks",
          "Enabled checks whose latest result is stale on every replica "
          "(readiness_check_stale: older than settings.stale_after_intervals intervals "
          "plus the timeout; disabled checks are never stale).", "none",
          (Query(f"count(min by (check) (readiness_check_stale{sel()}) == 1) or vector(0)"),),
          "stat", 6, 5, ZERO_GOOD),
    Panel("readiness-overview", "Pass ratio per checklist section",
          "Share of the enabled checks of each checklist section that pass "
          "(recording rule readiness:section_pass:ratio); skipped checks are left out.",
          "percentunit",
          (Query(f"min by (section) (readiness:section_pass:ratio{JOB})", "{{section}}"),),
          "bargauge", 12, 10, PASS_RATIO, (), 0, 1),
    Panel("readiness-overview", "Failing and erroring critical checks",
          "Critical checks whose latest run is fail (the target is not ready) or error "
          "(the probe could not tell): check id, title, section and status; the check "
          "links to its board row (latest message) and the runbook.",
          "none",
          (Query(f"({CRITICAL_BAD} == 1) {WITH_TITLE}"),), "table", 12, 10,
          hidden_columns=("Value",), runbook="ReadinessCriticalCheckFailing"),
    Panel("readiness-overview", "Stale checks (age in intervals)",
          "Stale checks (readiness_check_stale = 1 on every replica): the value is the "
          "age of the newest result divided by the check's interval.", "none",
          (Query(f"readiness:check_age:intervals{JOB} and on (job, check) "
                 f"(readiness:check_stale:min{JOB} == 1)"),), "table", 12, 8,
          runbook="ReadinessCheckStale"),
    Panel("readiness-overview", "Checks by status",
          "Number of checks in each status (pass, fail, error, skipped) over time.",
          "none",
          (Query(f"sum by (status) (max by (check, status) (readiness_check_status{sel()}))",
                 "{{status}}"),),
          "timeseries", 12, 8),
    Panel("readiness-overview", "Check errors by reason",
          "Runs that ended in error per check and bounded reason (timeout, dns, connect, "
          "tls, auth, protocol, config, internal) over the rate interval; the checks with "
          "the most errors.", "none",
          (Query(f"topk({TOP}, sum by (check, reason) (increase(readiness_check_errors_total"
                 f"{sel()}[$__rate_interval])))", "{{check}} {{reason}}"),), "timeseries", 12, 8),
    Panel("readiness-overview", "Check runs per second",
          "How often the exporter runs checks, per check (the most frequent).", "ops",
          (Query(f"topk({TOP}, max by (check) (rate(readiness_check_runs_total{sel()}"
                 "[$__rate_interval])))", "{{check}}"),), "timeseries", 12, 8),
    Panel("readiness-overview", "Check duration",
          "How long each check's latest run took (the slowest).", "s",
          (Query(f"topk({TOP}, max by (check) (readiness_check_duration_seconds{sel()}))",
                 "{{check}}"),), "timeseries", 12, 8),
    Panel("readiness-overview", "Exporter configuration and version",
          "1 when the exporter's last configuration load or reload succeeded, with its "
          "version; 0 means a reload was rejected and the previous configuration runs.",
          "none",
          (Query(f"readiness_config_last_reload_successful{sel()} * on (job, instance) "
                 f"group_left (version) readiness_exporter_build_info{sel()}"),),
          "table", 12, 8, ONE_GOOD),
    # ------------------------------------------------------------------ TLS
    Panel("readiness-tls", "Days to certificate expiry",
          "Days until each watched certificate expires (served chains, certificate "
          "files, Kubernetes TLS Secrets, SAML metadata): orange under 30 days, red "
          "under 7 (recording rule readiness:certificate_expiry:seconds).", "d",
          (Query(f"bottomk({TOP}, min by (certificate, subject_cn) "
                 f"(readiness:certificate_expiry:seconds{JOB})) / 86400",
                 "{{subject_cn}} {{certificate}}"),),
          "bargauge", 24, 10, DAYS_LEFT),
    Panel("readiness-tls", "Legacy TLS versions accepted",
          "Endpoints that complete a handshake limited to TLS 1.0 or 1.1 (must be 0).",
          "none",
          (Query(f"count({LEGACY_TLS} == 1) or vector(0)"),), "stat", 6, 5, ZERO_GOOD),
    Panel("readiness-tls", "Post-quantum key exchange",
          "Per endpoint check: 1 when the negotiated key-exchange group includes ML-KEM "
          "(hybrid such as X25519MLKEM768, or pure), else 0.", "none",
          (Query(f"max by (check) (readiness_tls_endpoint_key_exchange_post_quantum{sel()})",
                 "{{check}}"),),
          "stat", 6, 5, ONE_GOOD, (("1", "ML-KEM", "green"), ("0", "classical", "orange"))),
    Panel("readiness-tls", "TLS handshake duration",
          "How long the verifying handshake of each endpoint check took.", "s",
          (Query(f"topk({TOP}, max by (check) "
                 f"(readiness_tls_endpoint_handshake_duration_seconds{sel()}))", "{{check}}"),),
          "timeseries", 12, 5),
    Panel("readiness-tls", "Protocol versions per endpoint",
          "Result of a handshake limited to each TLS version: accepted, refused, "
          "untestable (the local TLS library cannot offer it) or error.", "none",
          (Query(f"readiness_tls_endpoint_version_info{sel()} == 1"),), "table", 12, 8,
          hidden_columns=("Value",)),
    Panel("readiness-tls", "Negotiated version, cipher and key-exchange group",
          "What the verifying handshake of each endpoint negotiated; group `none` when "
          "the library does not report one.", "none",
          (Query(f"readiness_tls_endpoint_negotiated_info{sel()}"),), "table", 12, 8,
          hidden_columns=("Value",)),
    Panel("readiness-tls", "Certificates",
          "Facts of each watched certificate: subject and issuer, key type and size, "
          "signature algorithm and whether it is post-quantum (ML-DSA).", "none",
          (Query(f"readiness_tls_endpoint_cert_info{sel()}"),
           Query(f"readiness_tls_file_cert_info{sel()}")), "table", 24, 8,
          hidden_columns=("Value",)),
    Panel("readiness-tls", "HSTS max-age against target",
          "HSTS max-age served by HTTP checks and the minimum the check requires.", "s",
          (Query(f"readiness_http_hsts_max_age_seconds{sel()}", "{{check}} served"),
           Query(f"readiness_http_hsts_max_age_target_seconds{sel()}", "{{check}} target")),
          "timeseries", 24, 6),
    # ------------------------------------------------------------------ DR
    Panel("readiness-dr", "Recovery point age against RPO",
          "Per scenario: how far back the newest restorable point is (now minus the "
          "recovery point) and the recovery point objective.", "s",
          (Query(f"readiness_rpo_seconds{sel()}", "{{scenario}} age"),
           Query(f"readiness_rpo_target_seconds{sel()}", "{{scenario}} RPO")),
          "timeseries", 12, 8),
    Panel("readiness-dr", "Restore drill duration against RTO",
          "Per scenario: wall time of the newest successful restore drill (the measured "
          "RTO) and the recovery time objective.", "s",
          (Query(f"max by (scenario) (readiness_restore_drill_duration_seconds{sel()})",
                 "{{scenario}} drill"),
           Query(f"max by (scenario) (readiness_rto_target_seconds{sel()})",
                 "{{scenario}} RTO")),
          "timeseries", 12, 8),
    Panel("readiness-dr", "Time since last successful drill",
          "Per scenario: age of the newest successful restore drill against the "
          "configured maximum age.", "s",
          (Query(f"time() - readiness_restore_drill_last_success_timestamp_seconds{sel()}",
                 "{{scenario}} age"),
           Query(f"readiness_restore_drill_max_age_seconds{sel()}", "{{scenario}} max age")),
          "timeseries", 12, 8),
    Panel("readiness-dr", "Last drill result",
          "Per scenario: 1 when the newest restore drill succeeded, 0 when it failed.",
          "none",
          (Query(f"max by (check, scenario) "
                 f"(readiness_restore_drill_last_result_success{sel()})", "{{scenario}}"),),
          "stat", 12, 8, ONE_GOOD, (("1", "succeeded", "green"), ("0", "failed", "red"))),
    Panel("readiness-dr", "Backup size",
          "Size of the newest backup and of the one before it, per backup check (a "
          "sudden shrink is suspicious).", "bytes",
          (Query(f"readiness_backup_last_size_bytes{sel()}", "{{check}} newest"),
           Query(f"readiness_backup_previous_size_bytes{sel()}", "{{check}} previous")),
          "timeseries", 12, 8),
    Panel("readiness-dr", "Backup age against maximum",
          "Per backup check: age of the newest backup and the configured maximum age.",
          "s",
          (Query(f"time() - readiness_backup_last_completion_timestamp_seconds{sel()}",
                 "{{check}} age"),
           Query(f"readiness_backup_max_age_seconds{sel()}", "{{check}} max age")),
          "timeseries", 12, 8),
    Panel("readiness-dr", "Backups found, encrypted, checksum",
          "Per backup check: number of backups found, whether the newest is encrypted "
          "and whether it matches its checksum sidecar (1 yes, 0 no): 0 is red.", "none",
          (Query(f"max by (check) (readiness_backup_backups_found{sel()})",
                 "{{check}} backups found"),
           Query(f"max by (check) (readiness_backup_encrypted{sel()})", "{{check}} encrypted"),
           Query(f"max by (check) (readiness_backup_checksum_ok{sel()})",
                 "{{check}} checksum ok")),
          "stat", 24, 5, ONE_GOOD),
    # ------------------------------------------------------------------ platform
    Panel("readiness-platform", "PostgreSQL connections used",
          "Connections in use over max_connections, against the check's maximum.",
          "percentunit",
          (Query(f"readiness_postgres_connections_used_ratio{sel()}", "{{check}} used"),
           Query(f"readiness_postgres_connections_used_ratio_target{sel()}",
                 "{{check}} target")), "timeseries", 12, 8, GREEN_ONLY, (), 0, 1),
    Panel("readiness-platform", "PostgreSQL replication lag",
          "Replay lag of each replica (primary view) or of this replica, against the "
          "check's maximum.", "s",
          (Query(f"readiness_postgres_replica_replay_lag_seconds{sel()}",
                 "{{check}} {{application_name}}"),
           Query(f"readiness_postgres_replay_lag_seconds{sel()}", "{{check}} replica"),
           Query(f"readiness_postgres_replay_lag_target_seconds{sel()}", "{{check}} target")),
          "timeseries", 12, 8),
    Panel("readiness-platform", "PostgreSQL settings off baseline",
          "Server settings checked against their baseline that do not meet it.", "none",
          (Query(f"readiness_postgres_setting_ok{sel()} == 0"),), "table", 12, 8,
          hidden_columns=("Value",)),
    Panel("readiness-platform", "PostgreSQL client connections using TLS",
          "Share of client connections using TLS, against the check's minimum.",
          "percentunit",
          (Query(f"readiness_postgres_tls_connections_share{sel()}", "{{check}} share"),
           Query(f"readiness_postgres_tls_connections_share_target{sel()}",
                 "{{check}} target")), "timeseries", 12, 8, GREEN_ONLY, (), 0, 1),
    Panel("readiness-platform", "Redis persistence",
          "Per Redis check: RDB and AOF enabled, last background save and last AOF write "
          "succeeded (1 yes, 0 no): 0 is red.", "none",
          (Query(f"max by (check) (readiness_redis_rdb_enabled{sel()})", "{{check}} RDB"),
           Query(f"max by (check) (readiness_redis_aof_enabled{sel()})", "{{check}} AOF"),
           Query(f"max by (check) (readiness_redis_rdb_last_bgsave_ok{sel()})",
                 "{{check}} last save ok"),
           Query(f"max by (check) (readiness_redis_aof_last_write_ok{sel()})",
                 "{{check}} AOF write ok")),
          "stat", 12, 5, ONE_GOOD, (("1", "yes", "green"), ("0", "no", "red"))),
    Panel("readiness-platform", "Redis last save age against maximum",
          "Age of the newest RDB snapshot and the check's maximum.", "s",
          (Query(f"time() - readiness_redis_rdb_last_save_timestamp_seconds{sel()}",
                 "{{check}} age"),
           Query(f"readiness_redis_rdb_last_save_age_target_seconds{sel()}",
                 "{{check}} max age")), "timeseries", 12, 5),
    Panel("readiness-platform", "Redis keys without TTL",
          "Share of sampled keys without an expiry, against the check's maximum.",
          "percentunit",
          (Query(f"readiness_redis_ttl_without_ttl_ratio{sel()}", "{{check}} sampled"),
           Query(f"readiness_redis_ttl_without_ttl_target_ratio{sel()}", "{{check}} target")),
          "timeseries", 12, 8, GREEN_ONLY, (), 0, 1),
    Panel("readiness-platform", "RabbitMQ reachability, alarms and backlog",
          "Per broker check: 1 when the management API answered; resource alarms in "
          "effect per node; queues whose ready messages exceed the target, per vhost.",
          "none",
          (Query(f"readiness_broker_up{sel()}", "{{check}} up"),
           Query(f"readiness_broker_node_alarm{sel()} == 1", "{{node}} {{resource}} alarm"),
           Query(f"readiness_broker_queues_over_backlog{sel()}", "{{vhost}} over backlog")),
          "timeseries", 12, 8),
    Panel("readiness-platform", "Kubernetes workload coverage per check",
          "Per Kubernetes check (PDB, HPA, limits, network policy ...): share of "
          "evaluated objects that comply (the 20 lowest).", "percentunit",
          (Query(f"bottomk({TOP}, min by (check) (1 - readiness_kubernetes_objects_failing"
                 f"{sel()} / (readiness_kubernetes_objects_evaluated{sel()} > 0)))",
                 "{{check}}"),),
          "bargauge", 12, 10, PASS_RATIO, (), 0, 1),
    Panel("readiness-platform", "Non-compliant workloads",
          "Workloads a Kubernetes check found non-compliant, by check.", "none",
          (Query(f"max without (instance, pod) "
                 f"(readiness_kubernetes_workload_compliant{sel()}) == 0"),), "table", 12, 10,
          hidden_columns=("Value",), runbook="ReadinessPdbMissing"),
    Panel("readiness-platform", "PDB allowed disruptions",
          "Disruptions each workload's PodDisruptionBudget allows at its desired "
          "replicas; 0 blocks node drains (the 20 lowest workloads).", "none",
          (Query(f"bottomk({TOP}, min by (namespace, workload) "
                 f"(readiness_kubernetes_pdb_allowed_disruptions{sel()}))",
                 "{{namespace}}/{{workload}}"),), "bargauge", 12, 8, ONE_GOOD),
    Panel("readiness-platform", "HPA minimum replicas",
          "minReplicas of the HorizontalPodAutoscaler of each workload (the 20 lowest).",
          "none",
          (Query(f"bottomk({TOP}, min by (namespace, workload) "
                 f"(readiness_kubernetes_hpa_min_replicas{sel()}))",
                 "{{namespace}}/{{workload}}"),), "bargauge", 12, 8),
)


# --------------------------------------------------------------------------- building


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": [
            {"color": colour, "value": value} for value, colour in panel.steps]},
        "color": {"mode": "thresholds" if panel.type in ("stat", "bargauge") else
                  "palette-classic"},
    }
    if panel.minimum is not None:
        defaults["min"] = panel.minimum
    if panel.maximum is not None:
        defaults["max"] = panel.maximum
    if panel.mappings:
        defaults["mappings"] = [{"type": "value", "options": {
            value: {"text": text, "color": colour, "index": index}}}
            for index, (value, text, colour) in enumerate(panel.mappings)]
    overrides: list[dict[str, Any]] = []
    if panel.type == "table" and panel.runbook:
        overrides.append({"matcher": {"id": "byName", "options": "check"}, "properties": [
            {"id": "links", "value": [
                {"title": "Board row (latest message)", "targetBlank": True,
                 "url": "${board_url}/check/${__value.raw}"},
                {"title": f"Runbook: {panel.runbook}", "targetBlank": True,
                 "url": "${runbook_base}#" + panel.runbook.lower()},
            ]}]})
    return {"defaults": defaults, "overrides": overrides}


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.type == "stat":
        return {"reduceOptions": reduce, "colorMode": "background", "graphMode": "none",
                "justifyMode": "auto", "textMode": "auto", "orientation": "auto"}
    if panel.type == "bargauge":
        return {"reduceOptions": reduce, "displayMode": "gradient", "orientation": "horizontal",
                "showUnfilled": True}
    if panel.type == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def _targets(panel: Panel) -> list[dict[str, Any]]:
    targets = []
    table = panel.type == "table"
    for index, query in enumerate(panel.queries):
        target: dict[str, Any] = {
            "refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": query.expr,
            "legendFormat": query.legend or "__auto", "range": not table, "instant": table,
        }
        if table:
            target["format"] = "table"
        targets.append(target)
    return targets


def _transformations(panel: Panel) -> list[dict[str, Any]]:
    if panel.type != "table":
        return []
    hidden = ("Time", "__name__", "job", *panel.hidden_columns)
    transformations: list[dict[str, Any]] = []
    if len(panel.queries) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": {name: True for name in hidden}, "indexByName": {},
        "renameByName": {}}})
    return transformations


def _layout(panels: Iterable[Panel]) -> list[dict[str, int]]:
    """Left-to-right, top-to-bottom grid positions (24 columns)."""
    positions = []
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"x": x, "y": y, "w": panel.width, "h": panel.height})
        x += panel.width
        row_height = max(row_height, panel.height)
    return positions


def _variables(selector: str, board_url: str, runbook_base: str) -> dict[str, Any]:
    def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": f"{name}-query"},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "regex": "", "sort": 1, "hide": 0,
        }

    return {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "options": [], "refresh": 1, "regex": "",
         "hide": 0},
        query_variable("job", "Job",
                       f"label_values(readiness_exporter_build_info{{{selector}}}, job)"),
        query_variable("instance", "Instance",
                       "label_values(readiness_exporter_build_info{"
                       + (f"{selector}, " if selector else "") + 'job=~"$job"}, instance)'),
        _textbox("board_url", "Board URL", board_url),
        _textbox("runbook_base", "Runbooks", runbook_base),
    ]}


def _textbox(name: str, label: str, value: str) -> dict[str, Any]:
    """A text variable the table links use (set by `readiness-exporter mixin`)."""
    return {"name": name, "label": label, "type": "textbox", "query": value,
            "current": {"selected": False, "text": value, "value": value},
            "options": [{"selected": True, "text": value, "value": value}], "hide": 2}


def _with_selector(expr: str, selector: str) -> str:
    """`expr` with the user's label matchers in front of every `job=~"$job"`."""
    return expr.replace('job=~"$job"', f'{selector}, job=~"$job"') if selector else expr


def build_dashboard(meta: Dashboard, panels: list[Panel], selector: str = "",
                    board_url: str = "", runbook_base: str = "") -> dict[str, Any]:
    """The Grafana JSON model of one dashboard."""
    json_panels = []
    for number, (panel, grid) in enumerate(zip(panels, _layout(panels), strict=True), 1):
        item: dict[str, Any] = {
            "id": number, "type": panel.type, "title": panel.title,
            "description": panel.description, "datasource": DATASOURCE, "gridPos": grid,
            "fieldConfig": _field_config(panel), "options": _options(panel),
            "targets": [{**t, "expr": _with_selector(t["expr"], selector)}
                        for t in _targets(panel)],
        }
        if "%s" in runbook_base:  # a pattern: the link is fixed here, not by the variable
            for override in item["fieldConfig"]["overrides"]:
                for link in override["properties"][0]["value"]:
                    if link["url"].startswith("${runbook_base}#"):
                        link["url"] = runbook_base.replace("%s", link["url"].split("#", 1)[1])
        transformations = _transformations(panel)
        if transformations:
            item["transformations"] = transformations
        json_panels.append(item)
    links = [{"title": other.title, "type": "link", "url": f"/d/{other.uid}",
              "includeVars": True, "keepTime": True, "icon": "dashboard",
              "targetBlank": False, "tooltip": other.description, "asDropdown": False,
              "tags": []} for other in DASHBOARDS if other.uid != meta.uid]
    return {
        "uid": meta.uid, "title": meta.title, "description": meta.description,
        "tags": list(meta.tags), "schemaVersion": SCHEMA_VERSION, "version": 1,
        "editable": True, "graphTooltip": 1, "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
        "annotations": {"list": []}, "links": links,
        "templating": _variables(selector, board_url, runbook_base),
        "panels": json_panels,
    }


def build(selector: str = "", board_url: str = "",
          runbook_url: str = "") -> dict[str, dict[str, Any]]:
    """Every dashboard by uid, built from `PANELS`, for a label selector (`job="x"`),
    the board's base URL and the runbook page URL (links append `#<alert>`)."""
    selector = selector.strip().strip("{}").strip().rstrip(",").strip()
    known = {meta.uid for meta in DASHBOARDS}
    stray = sorted({p.dashboard for p in PANELS} - known)
    if stray:
        raise ValueError(f"panels name unknown dashboards: {stray}")
    return {meta.uid: build_dashboard(meta, [p for p in PANELS if p.dashboard == meta.uid],
                                      selector, board_url, runbook_url)
            for meta in DASHBOARDS}


def render(dashboard: dict[str, Any]) -> str:
    """The file text of one dashboard (stable formatting)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


