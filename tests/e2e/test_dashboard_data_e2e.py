"""End to end: every dashboard query has data from a real exporter and Prometheus.

A real `readiness-exporter serve` (phase `preparing`, the default) runs a configuration
with one failing critical check (a `file` check on a path that does not exist yet) next
to checks of most probe families against real loopback servers (HTTPS, Redis,
PostgreSQL, RabbitMQ when it runs, a fake Kubernetes API server, backup files and drill
records). A real Prometheus scrapes it every second and loads the shipped rule files
(`for:` shortened to 1 s in a test copy); a real Alertmanager routes as
docs/alerting.md says, with a capture server standing in for PagerDuty.

The test asserts that every dashboard query returns data (or is listed below with the
reason it has none here), that every rule evaluates without error, that the failing
critical check opens a ticket and pages nobody (phase preparing), and that creating the
file makes go-live read 1. The paging scenarios are in test_alerting_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme

from dashboards import generate
from tests.e2e.stack import (
    HttpsServer,
    LoopThread,
    PagerDutyCapture,
    alertmanager_config,
    short_for_rules,
    start_exporter,
)
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.probes.promstack import (
    AlertmanagerServer,
    PrometheusServer,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
)
from tests.support.servers import free_port, pg_cluster, redis_server

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
JOB = "readiness"
ROUTING_KEY = "e2e0routing0key0000000000000000a"  # 32 characters, like a real one
FAILING = "e2e-marker"
K8S_TOKEN = "e2e-kubernetes-token"
RATE_INTERVAL = "15s"

# Dashboard queries that return nothing in this test, by (panel title, query refId),
# with the reason. Every other query must return data.
DATA_ONLY_WHEN: dict[tuple[str, str], str] = {
    ("Stale checks (age in intervals)", "A"):
        "only when a check's result is stale (readiness_check_stale); every check here "
        "runs on time",
    ("PostgreSQL replication lag", "A"):
        "only on a primary with streaming replicas; the test cluster has none",
    ("PostgreSQL replication lag", "B"):
        "only when the checked server is a replica; the test cluster is a primary",
    ("RabbitMQ reachability, alarms and backlog", "B"):
        "only while a RabbitMQ memory or disk alarm is in effect",
    ("RabbitMQ reachability, alarms and backlog", "C"):
        "exported per vhost that has queues; the shared test broker may have none (and "
        "this test does not create queues on it)",
}


@dataclass
class Stack:
    """Everything the test talks to."""

    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    capture: PagerDutyCapture
    marker: Path
    instance: str
    rabbitmq: bool


def _rabbitmq_running() -> bool:
    try:
        request = urllib.request.Request("http://127.0.0.1:15672/api/overview",
                                         headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
        with urllib.request.urlopen(request, timeout=2):
            return True
    except OSError:
        return False


def _certificates(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA and a localhost leaf; returns the server context and the CA file."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context, ca_file


def _backups(directory: Path) -> tuple[Path, Path]:
    """Two dumps (the newer one larger) and a drill record file."""
    backups = directory / "backups"
    backups.mkdir()
    now = time.time()
    for name, size, age in (("db-1.dump", 4096, 7200), ("db-2.dump", 6144, 600)):
        path = backups / name
        path.write_bytes(b"PGDMP" + b"\0" * (size - 5))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (backups / (name + ".sha256")).write_text(f"{digest}  {name}\n", encoding="utf-8")
        stamp = now - age
        os.utime(path, (stamp, stamp))
    drills = directory / "drills.jsonl"
    finished = datetime.now(UTC) - timedelta(hours=2)
    record = {"scenario": "database", "started": (finished - timedelta(minutes=3)).isoformat(),
              "finished": finished.isoformat(), "success": True}
    drills.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return backups, drills


def _config(directory: Path, *, https_port: int, ca_file: Path, redis_port: int,
            pg_port: int, kubeconfig: Path, backups: Path, drills: Path,
            rabbitmq: bool) -> dict[str, Any]:
    quick = {"interval": "1s", "timeout": "5s"}
    slow = {"interval": "3s", "timeout": "10s"}
    checks: list[dict[str, Any]] = [
        {"id": FAILING, "section": "1.2", "title": "Release marker file present",
         "severity": "critical", "kind": "file", "path": str(directory / "marker"), **quick},
        {"id": "e2e-unreachable", "section": "7.1", "title": "Health endpoint answers",
         "severity": "warning", "kind": "http",
         "url": f"http://127.0.0.1:{free_port()}/health", **quick},
        {"id": "e2e-tls-files", "section": "1.2", "title": "Certificate files valid",
         "severity": "warning", "kind": "tls_file", "paths": [str(directory / "tls.crt")],
         **slow},
        {"id": "e2e-tls-endpoint", "section": "2.2", "title": "TLS endpoint",
         "severity": "warning", "kind": "tls_endpoint", "host": "127.0.0.1",
         "port": https_port, "server_name": "localhost", "ca_file": str(ca_file),
         "versions": ["1.0", "1.1", "1.2", "1.3"], **slow},
        {"id": "e2e-hsts", "section": "2.2", "title": "HSTS served",
         "severity": "warning", "kind": "http", "url": f"https://localhost:{https_port}/",
         "tls": {"ca_file": str(ca_file)}, "hsts": {"min_max_age": 31_536_000}, **slow},
        {"id": "e2e-redis-persistence", "section": "3.2", "title": "Redis persistence",
         "severity": "warning", "kind": "redis", "connection": "cache",
         "aspect": "persistence", **slow},
        {"id": "e2e-redis-ttl", "section": "3.2", "title": "Redis TTL review",
         "severity": "warning", "kind": "redis", "connection": "cache", "aspect": "ttl",
         **slow},
        {"id": "e2e-postgres", "section": "3.1", "title": "PostgreSQL baseline",
         "severity": "warning", "kind": "postgres", "connection": "db",
         "settings": {"max_connections": ">= 200"}, "max_connections_used": 0.8,
         "tls": {"min_share": 0.0},
         "replication": {"role": "primary", "min_replicas": 0, "max_replay_lag": "30s"},
         **slow},
        {"id": "e2e-backup", "section": "10.1", "title": "Database backups",
         "severity": "warning", "kind": "backup",
         "source": {"type": "directory", "path": str(backups), "pattern": "*.dump",
                    "checksum": "sha256"},
         "max_age": "1d", **slow},
        {"id": "e2e-rpo", "section": "10.2", "title": "Database RPO",
         "severity": "warning", "kind": "rpo", "scenario": "database", "rpo_target": "1h",
         "rto_target": "1h", "drill_records": str(drills),
         "sources": [{"type": "backup", "source": {"type": "directory",
                                                   "path": str(backups),
                                                   "pattern": "*.dump"}}], **slow},
        {"id": "e2e-drill", "section": "10.3", "title": "Restore drill",
         "severity": "warning", "kind": "restore_drill", "mode": "record",
         "scenario": "database", "records_file": str(drills), "max_age": "7d",
         "rto_target": "1h", **slow},
        {"id": "4.2.3", "section": "4.2", "title": "PDB coverage",
         "severity": "warning", "kind": "kubernetes", "connection": "cluster",
         "assert": "pdb_coverage", "namespaces": ["qbitel", "qbitel-service-mesh"],
         "min_replicas": 2, **slow},
        {"id": "e2e-hpa", "section": "4.2", "title": "Autoscaling",
         "severity": "warning", "kind": "kubernetes", "connection": "cluster",
         "assert": "hpa", "namespaces": ["qbitel"], **slow},
        {"id": "e2e-limits", "section": "4.2", "title": "Resource limits",
         "severity": "warning", "kind": "kubernetes", "connection": "cluster",
         "assert": "resource_limits", "namespaces": ["qbitel"], **slow},
    ]
    if rabbitmq:
        checks.append({"id": "e2e-broker", "section": "3.3", "title": "RabbitMQ backlog",
                       "severity": "warning", "kind": "broker", "user": "guest",
                       "password_env": "E2E_RABBITMQ_PASSWORD", "aspect": "consumers",
                       **slow})
    return {
        "settings": {"first_round_spread": 0, "state_dir": str(directory / "state")},
        "connections": {
            "cache": {"kind": "redis", "host": "127.0.0.1", "port": redis_port},
            "db": {"kind": "postgres", "host": "127.0.0.1", "port": pg_port,
                   "sslmode": "disable", "min_size": 0},
            "cluster": {"kind": "kubernetes", "kubeconfig": str(kubeconfig)},
        },
        "checks": checks,
    }


def _alertmanager_config(capture_url: str) -> str:
    return alertmanager_config(capture_url, ROUTING_KEY)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e")
    context, ca_file = _certificates(directory)
    backups, drills = _backups(directory)
    rabbitmq = _rabbitmq_running()
    loop = LoopThread()
    capture = PagerDutyCapture()
    https = HttpsServer(context)
    api = FakeApiServer(token=K8S_TOKEN)
    api.load_fixtures()
    servers: list[Any] = []
    try:
        loop.run(capture.start())
        loop.run(https.start())
        api_url = loop.run(api.start(free_port()))
        kubeconfig = write_kubeconfig(directory / "kubeconfig", api_url, K8S_TOKEN)
        with redis_server(["--appendonly", "yes"]) as cache, pg_cluster() as db:
            client = redis.Redis(host="127.0.0.1", port=cache.port)
            client.set("session:1", "x", ex=3600)
            client.set("config:flags", "y")
            client.close()
            exporter = start_exporter(
                _config(directory, https_port=https.port, ca_file=ca_file,
                        redis_port=cache.port, pg_port=db.port, kubeconfig=kubeconfig,
                        backups=backups, drills=drills, rabbitmq=rabbitmq),
                directory, env={"E2E_RABBITMQ_PASSWORD": "guest"})
            servers.append(exporter)
            am = start_alertmanager(_alertmanager_config(capture.url))
            servers.append(am)
            rules = {path.name: short_for_rules(path.read_text(encoding="utf-8"), "1s")
                     for path in sorted(ALERTS.glob("*.yml"))}
            prom = start_prometheus(
                prometheus_config({JOB: [exporter.target]}, rule_files=sorted(rules),
                                  alertmanagers=[f"127.0.0.1:{am.port}"]),
                rules=rules)
            servers.append(prom)
            try:
                yield Stack(prom, am, capture, directory / "marker", exporter.target,
                            rabbitmq)
            finally:
                for server in reversed(servers):
                    server.stop()
                servers.clear()
    finally:
        for server in reversed(servers):
            server.stop()
        loop.run(api.stop())
        loop.run(https.stop())
        loop.run(capture.stop())
        loop.stop()


def _substitute(expr: str, instance: str) -> str:
    """A dashboard query as Grafana would send it with job and instance selected."""
    return (expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace('"$job"', f'"{JOB}"')
            .replace('"$instance"', '"' + re.escape(instance).replace("\\", "\\\\") + '"'))


def _check_dashboard_queries(stack: Stack) -> None:
    """Every dashboard query returns data, except those listed in DATA_ONLY_WHEN."""
    pending: dict[tuple[str, str, str], str] = {}
    for panel in generate.PANELS:
        for index, query in enumerate(panel.queries):
            ref = chr(ord("A") + index)
            key = (panel.dashboard, panel.title, ref)
            if (panel.title, ref) in DATA_ONLY_WHEN:
                stack.prometheus.query(_substitute(query.expr, stack.instance))  # valid
                continue
            pending[key] = _substitute(query.expr, stack.instance)
    if not stack.rabbitmq:
        pending = {k: v for k, v in pending.items() if "broker" not in v}
    deadline = time.monotonic() + 25
    while pending and time.monotonic() < deadline:
        for key, expr in list(pending.items()):
            if stack.prometheus.query(expr):
                del pending[key]
        if pending:
            time.sleep(0.5)
    assert not pending, "dashboard queries without data:\n" + "\n".join(
        f"{k}: {v}" for k, v in pending.items())


def test_dashboards_have_data_and_preparing_pages_nobody(stack: Stack) -> None:
    prom = stack.prometheus
    # The shipped rule groups are the ones loaded.
    assert {"readiness-exporter.rules", "readiness-exporter.alerts"} <= set(prom.rule_groups())

    # 1. The failing critical check opens a ticket (warning) in phase preparing.
    def tickets() -> list[dict[str, Any]]:
        return [a for a in stack.alertmanager.alerts(
            filter='alertname="ReadinessCriticalCheckFailing"')
            if a["labels"].get("check") == FAILING]

    stack.alertmanager.wait_until(lambda: bool(tickets()), 45,
                                  "the ticket of the failing critical check")
    (alert,) = tickets()
    assert alert["labels"]["severity"] == "warning"
    assert "Release marker file present (check e2e-marker, section 1.2 Configuration)" in \
        alert["annotations"]["summary"]
    assert prom.query("readiness:go_live == 0"), "go-live should read 0 while failing"
    # Every shipped rule evaluates without error against real data (preset check 5.1.4
    # requires healthy rules).
    groups = prom.get("/api/v1/rules")["data"]["groups"]
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"]
                 if r.get("health") != "ok"]
    assert not unhealthy, unhealthy

    # 2. Every dashboard query has data while the check fails.
    _check_dashboard_queries(stack)

    # 3. Nothing paged: phase preparing.
    time.sleep(2.5)  # more than one group interval after the tickets
    assert stack.capture.snapshot() == []

    # 4. Fixing the check makes go-live read 1 across the job.
    stack.marker.write_text("released\n", encoding="utf-8")
    prom.wait_until(lambda: bool(prom.query('readiness:go_live{job="readiness"} == 1')), 20,
                    "go-live 1")


def test_data_only_when_entries_name_real_queries() -> None:
    """The exception list cannot drift from the dashboards."""
    queries = {(p.title, chr(ord("A") + i)) for p in generate.PANELS
               for i in range(len(p.queries))}
    assert set(DATA_ONLY_WHEN) <= queries
    assert all(reason.strip() for reason in DATA_ONLY_WHEN.values())
