"""Discovery against the Kubernetes API stand-in: stack names, refused lists, no cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from exporter.discovery import DiscoveryUnavailable, discover
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

TOKEN = "discovery-unit-token"


def stack_service(name: str, labels: dict[str, str], port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "monitoring", "labels": labels},
            "spec": {"ports": [{"port": port}]}}


async def discover_with(tmp_path: Path, objects: list[dict[str, Any]],
                        forbidden: set[tuple[str, str | None]] | None = None) -> Any:
    api = FakeApiServer(version={"major": "1", "minor": "30"}, token=TOKEN)
    api.add(objects)
    api.forbidden = forbidden or set()
    url = await api.start(free_port())
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, TOKEN)
        return await discover(kubeconfig)
    finally:
        await api.stop()


def test_kube_prometheus_stack_services_by_name_and_label(tmp_path: Path) -> None:
    found = asyncio.run(discover_with(tmp_path, [
        stack_service("kps-kube-prometheus-prometheus",
                      {"app": "kube-prometheus-stack-prometheus"}, 9090),
        stack_service("kps-kube-prometheus-alertmanager",
                      {"app": "kube-prometheus-stack-alertmanager"}, 9093),
        stack_service("grafana", {"app.kubernetes.io/name": "grafana"}, 80),
    ]))
    assert found.values == {
        "prometheus_url": "http://kps-kube-prometheus-prometheus.monitoring.svc:9090",
        "alertmanager_url": "http://kps-kube-prometheus-alertmanager.monitoring.svc:9093"}
    assert found.found_in["alertmanager_url"] == (
        "service monitoring/kps-kube-prometheus-alertmanager")


def test_a_refused_list_is_named_and_discovery_goes_on(tmp_path: Path) -> None:
    found = asyncio.run(discover_with(tmp_path, [
        stack_service("prometheus-operated", {}, 9090)], forbidden={("ingresses", "*")}))
    assert found.problems == ["cannot list ingresses: HTTP 403"]
    assert found.values["prometheus_url"] == "http://prometheus-operated.monitoring.svc:9090"


def test_no_cluster_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryUnavailable, match="pass --kubeconfig or set KUBECONFIG"):
        asyncio.run(discover(None, environ={}))
    with pytest.raises(DiscoveryUnavailable, match="does not exist"):
        asyncio.run(discover(tmp_path / "missing", environ={}))
