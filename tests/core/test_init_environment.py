"""From `init` to a board for a real small environment (issue 12, "done when").

PostgreSQL (the machine's), a Redis with a password, an HTTPS application (trustme CA),
a backup directory, a Prometheus, and the Kubernetes API stand-in holding the
application's Deployment, Service, Ingress and Secret plus a monitoring-stack Prometheus
Service. `init` discovers what it can; the user adds at most a few lines; the preset's
checks for these targets then all run against them, none left on a placeholder.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from aiohttp import web

from exporter import cli
from exporter.discovery import discover
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.probes.promstack import prometheus, prometheus_config
from tests.support.servers import free_port, redis_server

T = TypeVar("T")
EXE = Path(sys.executable).parent / "readiness-exporter"
TOKEN = "discovery-test-token"
PLACEHOLDERS = ("example.internal", "postgres:5432", "redis:6379", "prometheus:9090",
                "/var/backups/qbitel")
TARGET_CHECKS = {
    "app_url": ["6.2-health", "6.2-healthz", "6.2-readyz", "6.2-metrics", "7.4-health",
                "2.2.2", "2.2.3", "2.2.4", "5.2.4"],
    "tls": ["1.2.4-endpoint", "2.2.1", "2.3.4"],
    "database": ["3.1.1", "3.1.2-connections", "9.2", "2.3.1-tls"],
    "redis": ["3.2.1", "3.2.2", "3.2.3"],
    "backup": ["3.1.4", "10.1.1", "2.3.3", "10.2-database-failure"],
    "prometheus": ["5.1.1"],
    "kubernetes": ["4.1.1", "4.1.2", "7.3"],
}


class Background:
    """An event loop in a thread, for the servers the exporter talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def start_app(port: int, ca: trustme.CA) -> web.AppRunner:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text="# TYPE qbitel_up gauge\nqbitel_up 1\n",
                            content_type="text/plain")

    app = web.Application()
    for path, handler in (("/health", health), ("/healthz", ok), ("/readyz", ok),
                          ("/metrics", metrics), ("/api/v1/copilot/", ok)):
        app.router.add_get(path, handler)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx).start()
    return runner


def cluster_objects(prometheus_port: int) -> list[dict[str, Any]]:
    part_of = {"app.kubernetes.io/part-of": "qbitel", "app.kubernetes.io/name": "api"}
    meta = {"namespace": "qbitel", "labels": part_of}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "qbitel"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "qbitel-api", **meta},
         "spec": {"replicas": 1, "selector": {"matchLabels": part_of},
                  "template": {"metadata": {"labels": part_of}, "spec": {
                      "containers": [{"name": "api", "image": "qbitel/api:2.1.0", "env": [
                          {"name": "DATABASE_HOST", "value": "127.0.0.1"},
                          {"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {
                              "name": "qbitel-db", "key": "password"}}}]}],
                      "volumes": [{"name": "tls", "secret": {"secretName": "qbitel-tls"}}]}}},
         "status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1,
                    "updatedReplicas": 1, "observedGeneration": 1},
         },
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "qbitel-api", **meta},
         "spec": {"ports": [{"port": 8443}], "selector": part_of}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "qbitel", **meta},
         "spec": {"tls": [{"hosts": ["localhost"], "secretName": "qbitel-tls"}],
                  "rules": [{"host": "localhost"}]}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "qbitel-tls", **meta}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "prometheus-operated", "namespace": "monitoring",
                      "labels": {"app.kubernetes.io/name": "prometheus"}},
         "spec": {"type": "LoadBalancer", "ports": [{"port": prometheus_port}]},
         "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}},
    ]


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    backups = tmp_path / "conf" / "backups"
    backups.mkdir(parents=True)
    (backups / "db-2026.sql.gz").write_bytes(b"\x1f\x8b" + os.urandom(4096))
    background = Background()
    app_port = free_port()
    with prometheus(prometheus_config()) as prom, \
            redis_server(password="redis-test-password-1") as redis:
        api = FakeApiServer(version={"major": "1", "minor": "30", "gitVersion": "v1.30.0"},
                            token=TOKEN)
        api.add(cluster_objects(prom.port))
        runner = background.run(start_app(app_port, ca))
        api_url = background.run(api.start(free_port()))
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_url, TOKEN)
        # the checklist's own variables (section 6.1), and the company CA
        for name, value in {
            "DATABASE_HOST": "127.0.0.1", "DATABASE_PORT": "5432", "DATABASE_NAME": "postgres",
            "DATABASE_USER": "postgres", "DATABASE_PASSWORD": "trust-auth-ignores-it",
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port),
            "REDIS_PASSWORD": "redis-test-password-1", "SSL_CERT_FILE": str(ca_file),
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "QBITEL_URL", "QBITEL_TLS_HOST",
                     "PROMETHEUS_URL"):
            monkeypatch.delenv(name, raising=False)
        try:
            yield {"kubeconfig": kubeconfig, "app_port": app_port, "prom": prom,
                   "dir": tmp_path / "conf", "api": api}
        finally:
            background.run(runner.cleanup())
            background.run(api.stop())
            background.close()


def test_discovery_reads_the_application_and_the_monitoring_stack(
        environment: dict[str, Any]) -> None:
    found = asyncio.run(discover(environment["kubeconfig"]))
    assert found.values["tls_host"] == "localhost"
    assert found.values["app_url"] == "https://localhost"
    assert found.values["prometheus_url"] == f"http://127.0.0.1:{environment['prom'].port}"
    assert found.values["database_host"] == "127.0.0.1"
    assert "qbitel/qbitel-tls (volume of deployment qbitel/qbitel-api)" in found.secrets
    assert "qbitel/qbitel-db (environment of deployment qbitel/qbitel-api)" in found.secrets
    assert found.workloads == ["deployment qbitel/qbitel-api"]


def test_init_then_a_few_lines_and_every_target_check_runs_against_the_environment(
        environment: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    folder: Path = environment["dir"]
    path = folder / "readiness.yaml"
    code = cli.main(["init", "--output", str(path), "--kubeconfig",
                     str(environment["kubeconfig"])])
    assert code == 0, capsys.readouterr()
    written = path.read_text()
    assert "tls_host: localhost  # discovered: ingress qbitel/qbitel" in written
    assert f"prometheus_url: http://127.0.0.1:{environment['prom'].port}" in written
    assert "# TODO app_url" not in written  # discovered (https://localhost)
    assert "#   qbitel/qbitel-tls (volume of deployment qbitel/qbitel-api)" in written
    # what the user writes: the app's port (the Ingress says 443) and the backups
    port = environment["app_port"]
    lines = written.splitlines()
    at = lines.index("inputs:") + 1
    lines[at:at] = [f"  app_url: https://localhost:{port}", f'  tls_port: "{port}"',
                    "  backup_db: backups"]
    text = "\n".join(line for line in lines if not line.startswith("  app_url: https://localhost  "))
    path.write_text(text + "\n")
    meaningful = [line for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    assert len(meaningful) <= 15, meaningful

    wanted = [i for ids in TARGET_CHECKS.values() for i in ids]
    only = [arg for i in wanted for arg in ("--only", i)]
    # a new process: the environment (SSL_CERT_FILE: the company CA) applies from its start
    run = subprocess.run([str(EXE), "check", "--config.file", str(path), "--output", "json",
                          *only], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ), cwd="/", check=False)
    assert run.returncode in (0, 1), run.stderr
    records = {c["id"]: c for c in json.loads(run.stdout)["checks"]}
    report = json.dumps({i: (c["status"], c.get("reason"), c["message"])
                         for i, c in records.items()}, indent=1)
    assert set(records) == set(wanted)
    for record in records.values():
        assert record.get("reason") not in ("dns", "connect"), report
        assert not any(p in record["message"] for p in PLACEHOLDERS), report
    passing = {"6.2-health", "6.2-healthz", "6.2-readyz", "6.2-metrics", "7.4-health",
               "3.1.1", "3.2.1", "3.1.4", "5.1.1", "4.1.1"}
    assert {i for i in passing if records[i]["status"] != "pass"} == set(), report
