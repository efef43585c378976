"""`kind: kubernetes` against the fake API server, through the real kubernetes-asyncio
client and a kubeconfig: every assertion on the fixture cluster, request counts,
pagination, shared in-flight LISTs, 403/500/slow answers and secret hygiene."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.kubernetes.connection import KubernetesConnection
from exporter.probes.kubernetes.probe import KIND, evaluate
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import KubernetesCheck
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

TOKEN = "tok-K8S-BEARER-do-not-leak-7731"
SECRET_VALUES = (TOKEN, "s3cr3t-value-do-not-leak", "HELM-RELEASE-PAYLOAD-MARKER")


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(token=TOKEN)
    server.load_fixtures()
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
def kubeconfig(api: FakeApiServer, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}", TOKEN)


def conn(kubeconfig: Path, **kw: Any) -> KubernetesConnection:
    return KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig, context="test", **kw)


@pytest.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[Cluster]:
    c = Cluster(conn(kubeconfig, page_size=3))
    yield c
    await c.close()


def check(assertion: str, **kw: Any) -> KubernetesCheck:
    return KubernetesCheck.model_validate({"id": kw.pop("id", "4.9.9"), "section": "4.9",
                                           "title": "t", "kind": "kubernetes",
                                           "assert": assertion, **kw})


def assert_clean(outcome: Outcome, caplog: pytest.LogCaptureFixture | None = None) -> None:
    texts = [outcome.message]
    texts += [json.dumps(dict(m.labels)) for m in outcome.measurements]
    if caplog is not None:
        texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        for secret in SECRET_VALUES:
            assert secret not in text


def gauge(outcome: Outcome, family: str, **labels: str) -> float | None:
    for m in outcome.measurements:
        if m.family == family and all(m.labels.get(k) == v for k, v in labels.items()):
            return m.value
    return None


NS2 = ["qbitel", "qbitel-service-mesh"]

# (assert, options, status, names that must appear, names that must not appear)
CASES: list[tuple[str, dict[str, Any], Status, list[str], list[str]]] = [
    ("server_version", {}, Status.PASS, ["v1.29.3"], []),
    ("server_version", {"min_version": "1.30"}, Status.FAIL, ["older than 1.30"], []),
    ("namespaces_exist", {"required_namespaces": NS2}, Status.PASS, [], []),
    ("namespaces_exist", {"required_namespaces": ["qbitel", "qbitel-ml"]}, Status.FAIL,
     ["qbitel-ml (absent)"], []),
    ("resource_quotas", {"namespaces": NS2}, Status.PASS, [], []),
    ("resource_quotas", {}, Status.FAIL, ["legacy", "default", "istio-system"],
     ["kube-system"]),
    ("resource_quotas", {"namespaces": NS2, "quota_resources": ["limits.memory"]},
     Status.FAIL, ["qbitel-service-mesh (no hard limits.memory)"], ["qbitel,"]),
    ("network_policies", {"namespaces": ["qbitel"]}, Status.PASS, [], []),
    # a workload no NetworkPolicy selects, in a namespace without default-deny
    ("network_policies", {"namespaces": NS2}, Status.FAIL,
     ["qbitel-service-mesh (no default-deny ingress)", "qbitel-service-mesh/telemetry"],
     ["gateway"]),
    # matchExpressions (tier In [backend, data]) select ai-engine, worker and postgres
    ("network_policies", {"namespaces": ["qbitel"], "require_allow_rules": True},
     Status.FAIL, ["1 of 6", "qbitel/log-agent"], ["ai-engine", "postgres", "worker"]),
    ("pod_security", {"namespaces": NS2}, Status.PASS, [], []),
    # a listed namespace that does not exist is a violation of its own, not skipped
    ("pod_security", {"namespaces": [*NS2, "gone"]}, Status.FAIL,
     ["gone (namespace absent)", "1 of 3"], ["qbitel (", "qbitel-service-mesh ("]),
    ("resource_quotas", {"namespaces": ["qbitel", "gone"]}, Status.FAIL,
     ["gone (namespace absent)"], ["qbitel ("]),
    ("pod_security", {"namespaces": [*NS2, "legacy"]}, Status.FAIL,
     ["legacy (enforce=privileged)"], []),
    ("resource_limits", {"namespaces": ["qbitel"]}, Status.FAIL,
     ["qbitel/log-agent (agent: no limits.cpu, limits.memory)"], ["ai-engine"]),
    # HPA minReplicas 1 fails; the StatefulSet's honoured exemption is counted
    ("hpa", {"namespaces": ["qbitel"], "id": "4.2.2"}, Status.FAIL,
     ["qbitel/worker (HPA worker minReplicas 1 < 2)", "1 exempted"], ["postgres"]),
    # PDB blocking drains fails; StatefulSet PDB (matchExpressions) and api-server pass
    ("pdb_coverage", {"namespaces": ["qbitel"]}, Status.FAIL,
     ["1 of 4", "qbitel/worker (PDB worker maxUnavailable 0 of 2 blocks drains)"],
     ["postgres", "api-server", "ai-engine"]),
    ("pdb_coverage", {"namespaces": ["qbitel-service-mesh"]}, Status.PASS, [], []),
    # expired exemption is not honoured
    ("anti_affinity", {"namespaces": ["qbitel"], "id": "4.2.4"}, Status.FAIL,
     ["qbitel/worker", "1 with an expired exemption"], ["postgres", "api-server"]),
    ("deployments_available", {"namespaces": ["qbitel"]}, Status.FAIL,
     ["qbitel/api-server (2/3 available)"], ["worker"]),
    ("deployments_available", {"namespaces": ["qbitel"], "workloads": ["ai-engine", "nope"]},
     Status.FAIL, ["nope (absent)"], ["api-server"]),
    ("istio_installed", {}, Status.PASS, ["istio-system/istiod"], []),
    # PERMISSIVE override under a STRICT mesh-wide policy; port-level DISABLE
    ("mtls_strict", {"namespaces": NS2}, Status.FAIL,
     ["PeerAuthentication qbitel/worker-permissive (PERMISSIVE)",
      "qbitel-service-mesh/namespace-default (port 9090 DISABLE)"], []),
    ("mtls_strict", {"namespaces": ["default"]}, Status.PASS, ["mesh-wide"], []),
    ("sidecar_injection", {"namespaces": ["qbitel"]}, Status.FAIL,
     ["pod qbitel/worker-7c6d5b-b2 (injection disabled by annotation)", "1 of 10"],
     ["postgres", "log-agent"]),
    ("traffic_policies", {"namespaces": ["qbitel"]}, Status.FAIL, ["1 of 3", "qbitel/worker"],
     ["ai-engine", "api-server"]),
    ("secrets_present", {"namespaces": ["qbitel"]}, Status.FAIL,
     ["ExternalSecret qbitel/jwt-secret (not Ready)"], ["db-credentials"]),
    # the flag alone is no longer a pass: the file it names is not readable here
    ("etcd_encryption", {}, Status.SKIPPED,
     ["/etc/kubernetes/enc/enc.yaml", "not visible", "4.4.2-attested"], []),
    ("secrets_rbac", {"namespaces": NS2}, Status.FAIL,
     ["ClusterRoleBinding all-authenticated-secrets -> Group:system:authenticated",
      "RoleBinding qbitel/default-sa-secrets -> ServiceAccount:default"],
     ["api-secrets", "basic-user", "default-config"]),
    ("resource_baseline", {"namespaces": ["qbitel"], "components": [
        {"name": "AI Engine", "selector": "app.kubernetes.io/component=ai-engine",
         "cpu_request": "2", "cpu_limit": "4", "memory_request": "4Gi",
         "memory_limit": "8Gi"},
        {"name": "API Server", "selector": "app.kubernetes.io/component=api-server",
         "cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi",
         "memory_limit": "4Gi"},
        {"name": "Worker", "selector": "app.kubernetes.io/component=worker",
         "cpu_request": "2", "cpu_limit": "4", "memory_request": "4Gi",
         "memory_limit": "8Gi"}]},
     Status.FAIL, ["1 of 3", "qbitel/worker (Worker: worker requests.memory 4G != 4Gi)"],
     ["api-server", "ai-engine"]),
]


@pytest.mark.parametrize(("assertion", "options", "status", "present", "absent"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_assertions_on_fixture_cluster(
        kubeconfig: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, assertion: str,
        options: dict[str, Any], status: Status, present: list[str], absent: list[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = RuntimeContext({"kubernetes": conn(kubeconfig)}, state_dir=tmp_path / "s")
    try:
        outcome = await KIND.run(check(assertion, **options), ctx)
    finally:
        await ctx.aclose()
    assert outcome.status is status, outcome.message
    for text in present:
        assert text in outcome.message
    for text in absent:
        assert text not in outcome.message
    declared = {f.name for f in KIND.metrics}
    assert {m.family for m in outcome.measurements} <= declared
    assert_clean(outcome, caplog)


async def test_per_workload_gauges_and_exemption_counts(cluster: Cluster) -> None:
    outcome = await evaluate(check("hpa", namespaces=["qbitel"], id="4.2.2"), cluster, 1.8e9)
    family = "readiness_kubernetes_workload_compliant"
    assert gauge(outcome, family, namespace="qbitel", workload="worker", kind="Deployment") == 0
    assert gauge(outcome, family, namespace="qbitel", workload="ai-engine",
                 kind="Deployment") == 1
    # exempted StatefulSet counts as compliant, and is counted as exempted
    assert gauge(outcome, family, workload="postgres", kind="StatefulSet") == 1
    assert gauge(outcome, "readiness_kubernetes_exemptions", state="honoured") == 1
    assert gauge(outcome, "readiness_kubernetes_hpa_min_replicas", workload="worker") == 1
    assert gauge(outcome, "readiness_kubernetes_objects_failing") == 1
    pdb = await evaluate(check("pdb_coverage", namespaces=["qbitel"]), cluster, 1.8e9)
    assert gauge(pdb, "readiness_kubernetes_pdb_allowed_disruptions", workload="worker") == 0
    assert gauge(pdb, "readiness_kubernetes_pdb_allowed_disruptions",
                 workload="postgres", kind="StatefulSet") == 1


async def test_exemption_expiry_is_relative_to_now(cluster: Cluster) -> None:
    # in 2023 the worker's exemption (expires 2024-01-01) was still valid
    before = dt.datetime(2023, 6, 1, tzinfo=dt.UTC).timestamp()
    outcome = await evaluate(check("anti_affinity", namespaces=["qbitel"], id="4.2.4"),
                             cluster, before)
    assert outcome.status is Status.PASS, outcome.message
    assert "1 exempted" in outcome.message
    after = await evaluate(check("anti_affinity", namespaces=["qbitel"], id="4.2.4"),
                           cluster, dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp())
    assert after.status is Status.FAIL
    # an exemption names check ids: another id is not exempted at all
    other = await evaluate(check("anti_affinity", namespaces=["qbitel"], id="x.1"),
                           cluster, before)
    assert other.status is Status.FAIL and "exemption" not in other.message


async def test_one_list_per_kind_shared_by_every_check(api: FakeApiServer,
                                                       kubeconfig: Path) -> None:
    cluster = Cluster(conn(kubeconfig, page_size=2))
    try:
        specs = [check(a, **o) for a, o, *_ in CASES if "namespaces" not in o
                 and "workloads" not in o]
        await asyncio.gather(*(evaluate(s, cluster, 1.8e9) for s in specs))
        await asyncio.gather(*(evaluate(s, cluster, 1.8e9) for s in specs))
    finally:
        await cluster.close()
    lists = [r for r in api.requests if "limit" in r.query]
    by_path: dict[str, int] = {}
    for r in lists:
        by_path[r.path] = by_path.get(r.path, 0) + 1
    # each collection read once per cycle, one request per page of 2 items
    for path, count in by_path.items():
        plural = path.rsplit("/", 1)[1]
        total = sum(len(v) for k, v in api._store.items() if k[1] == plural
                    and (path.startswith("/api/") == (k[0] == "v1")))
        if "namespaces/kube-system/pods" in path:
            total = 1
        assert count == max(1, -(-total // 2)), (path, count, total)
    assert api.count("/version") == 1
    assert sum(by_path.values()) == len(lists)


async def test_requests_do_not_grow_with_workloads(api: FakeApiServer,
                                                   kubeconfig: Path) -> None:
    async def requests_for(extra: int) -> int:
        if extra:
            base = json.loads((Path(__file__).parent / "k8s_fixtures" /
                               "deployments.json").read_text())["items"][0]
            clones = []
            for i in range(extra):
                clone = json.loads(json.dumps(base))
                clone["metadata"]["name"] = f"clone-{i}"
                clones.append(clone)
            api.add(clones)
        cluster = Cluster(conn(kubeconfig, page_size=1000))
        before = len(api.requests)
        try:
            for a in ("resource_limits", "hpa", "pdb_coverage", "anti_affinity",
                      "network_policies", "deployments_available"):
                await evaluate(check(a), cluster, 1.8e9)
        finally:
            await cluster.close()
        return len(api.requests) - before

    assert await requests_for(0) == await requests_for(900)


async def test_pagination_follows_continue_tokens(api: FakeApiServer, kubeconfig: Path) -> None:
    cluster = Cluster(conn(kubeconfig, page_size=1))
    try:
        outcome = await evaluate(check("deployments_available"), cluster, 1.8e9)
    finally:
        await cluster.close()
    pages = [r for r in api.requests if r.path == "/apis/apps/v1/deployments"]
    assert len(pages) == 7  # seven deployments outside kube-system, one per page
    assert "continue" not in pages[0].query
    assert all("continue" in r.query and r.query["limit"] == "1" for r in pages[1:])
    assert "qbitel/api-server" in outcome.message
    assert "legacy/legacy-app" in outcome.message or outcome.status is Status.FAIL


async def test_expired_continue_token_restarts_the_list_once(api: FakeApiServer,
                                                             kubeconfig: Path) -> None:
    api.expire_continue = 1
    cluster = Cluster(conn(kubeconfig, page_size=3))
    try:
        listed = await evaluate(check("deployments_available"), cluster, 1.8e9)
        api.expire_continue = 5
        cluster.invalidate()
        broken = await evaluate(check("deployments_available"), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert listed.status is Status.FAIL and "qbitel/api-server" in listed.message
    assert [r.status for r in api.requests if r.path == "/apis/apps/v1/deployments"][:5] == \
        [200, 410, 200, 200, 200]
    assert broken.reason is Reason.PROTOCOL and "continue token" in broken.message


async def test_concurrent_checks_await_the_same_inflight_list(api: FakeApiServer,
                                                              kubeconfig: Path) -> None:
    api.slow["deployments"] = 0.3
    cluster = Cluster(conn(kubeconfig))
    try:
        outcomes = await asyncio.gather(*(evaluate(check(a), cluster, 1.8e9) for a in
                                          ("hpa", "pdb_coverage", "anti_affinity",
                                           "resource_limits")))
    finally:
        await cluster.close()
    assert all(o.status is Status.FAIL for o in outcomes)
    assert api.count("/apis/apps/v1/deployments") == 1


async def test_snapshot_expires_after_ttl(api: FakeApiServer, kubeconfig: Path) -> None:
    cluster = Cluster(conn(kubeconfig, snapshot_ttl=0, watch=False))  # LIST every cycle
    try:
        for _ in range(3):
            await evaluate(check("hpa"), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert api.count("/apis/autoscaling/v2/horizontalpodautoscalers") == 3
    assert api.watch_requests() == []


async def test_403_on_cluster_wide_list_names_the_permission(api: FakeApiServer,
                                                             kubeconfig: Path) -> None:
    api.forbidden.add(("deployments", None))
    cluster = Cluster(conn(kubeconfig))
    try:
        outcome = await evaluate(check("hpa"), cluster, 1.8e9)
        assert outcome.status is Status.ERROR and outcome.reason is Reason.AUTH
        assert "list deployments.apps cluster-wide" in outcome.message
        # namespace-scoped: lists per namespace, never cluster-wide, so it works
        before = api.count("/apis/apps/v1/deployments")
        scoped = await evaluate(check("hpa", namespaces=["qbitel"]), cluster, 1.8e9)
        assert scoped.status is Status.FAIL and "qbitel/worker" in scoped.message
        assert api.count("/apis/apps/v1/deployments") == before
        assert api.count("/apis/apps/v1/namespaces/qbitel/deployments") == 1
        api.forbidden.add(("statefulsets", "qbitel"))
        cluster.invalidate()
        denied = await evaluate(check("pdb_coverage", namespaces=["qbitel"]), cluster, 1.8e9)
        assert denied.reason is Reason.AUTH
        assert "list statefulsets.apps in namespace qbitel" in denied.message
    finally:
        await cluster.close()


async def test_namespace_scoped_rbac_without_namespace_reads(api: FakeApiServer,
                                                             kubeconfig: Path) -> None:
    api.forbidden |= {("namespaces", None), ("deployments", None), ("statefulsets", None),
                      ("daemonsets", None), ("networkpolicies", None), ("resourcequotas", None)}
    cluster = Cluster(conn(kubeconfig))
    try:
        exists = await evaluate(check("namespaces_exist", required_namespaces=["qbitel", "x"]),
                                cluster, 1.8e9)
        api.forbidden_get.add("namespaces")
        cluster.invalidate()
        quotas = await evaluate(check("resource_quotas", namespaces=["qbitel"]), cluster, 1.8e9)
        policies = await evaluate(check("network_policies", namespaces=["qbitel"]), cluster,
                                  1.8e9)
        labels = await evaluate(check("pod_security", namespaces=["qbitel"]), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert exists.status is Status.FAIL and "x (absent)" in exists.message
    assert "qbitel (" not in exists.message
    assert quotas.status is Status.PASS, quotas.message
    assert policies.status is Status.PASS, policies.message
    # PSS needs the namespace's labels: the missing permission is named
    assert labels.reason is Reason.AUTH and "get namespaces/qbitel" in labels.message
    cluster_wide = [r for r in api.requests if r.status == 200 and r.path in (
        "/apis/apps/v1/deployments", "/api/v1/resourcequotas")]
    assert cluster_wide == []


async def test_500_is_protocol_and_slow_is_timeout(api: FakeApiServer, kubeconfig: Path) -> None:
    api.fail_500.add("poddisruptionbudgets")
    api.slow["horizontalpodautoscalers"] = 3.0
    cluster = Cluster(conn(kubeconfig, request_timeout=0.3))
    try:
        broken = await evaluate(check("pdb_coverage"), cluster, 1.8e9)
        slow = await evaluate(check("hpa"), cluster, 1.8e9)
        # failures are not cached: the next cycle asks again
        api.fail_500.clear()
        again = await evaluate(check("pdb_coverage"), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert broken.status is Status.ERROR and broken.reason is Reason.PROTOCOL
    assert "HTTP 500" in broken.message
    assert slow.status is Status.ERROR and slow.reason is Reason.TIMEOUT
    assert "horizontalpodautoscalers.autoscaling" in slow.message
    assert again.status is Status.FAIL


async def test_connection_errors_are_bounded(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dead = write_kubeconfig(tmp_path / "dead", f"http://127.0.0.1:{free_port()}", TOKEN)
    cluster = Cluster(conn(dead))
    refused = await evaluate(check("server_version"), cluster, 1.8e9)
    await cluster.close()
    assert refused.reason is Reason.CONNECT
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    incluster = Cluster(KubernetesConnection(kind="kubernetes"))
    outside = await evaluate(check("server_version"), incluster, 1.8e9)
    assert outside.reason is Reason.CONFIG and "in-cluster" in outside.message
    missing = Cluster(conn(tmp_path / "nope"))
    assert (await evaluate(check("server_version"), missing, 1.8e9)).reason is Reason.CONFIG
    for o in (refused, outside):
        assert_clean(o, caplog)


async def test_https_with_the_kubeconfig_ca(tmp_path: Path) -> None:
    ca, rogue = trustme.CA(), trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = FakeApiServer(token=TOKEN)
    server.load_fixtures()
    url = await server.start(free_port(), server_ctx)
    try:
        trusted = write_kubeconfig(tmp_path / "ok", url, TOKEN, ca_pem=ca.cert_pem.bytes())
        wrong = write_kubeconfig(tmp_path / "bad", url, TOKEN, ca_pem=rogue.cert_pem.bytes())
        good, bad = Cluster(conn(trusted)), Cluster(conn(wrong))
        try:
            ok = await evaluate(check("server_version"), good, 1.8e9)
            refused = await evaluate(check("server_version"), bad, 1.8e9)
        finally:
            await good.close()
            await bad.close()
    finally:
        await server.stop()
    assert url.startswith("https://")
    assert ok.status is Status.PASS, ok.message
    assert refused.status is Status.ERROR and refused.reason is Reason.TLS


async def test_wrong_credentials_are_auth_and_never_leak(
        api: FakeApiServer, kubeconfig: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cluster = Cluster(KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                           context="other"))
    try:
        outcome = await evaluate(check("server_version"), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert outcome.reason is Reason.AUTH and "401" in outcome.message
    assert "wrong-token" not in outcome.message
    assert_clean(outcome, caplog)


async def test_secrets_reading_is_opt_in_and_metadata_only(
        api: FakeApiServer, kubeconfig: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    closed = Cluster(conn(kubeconfig))
    refused = await evaluate(check("helm_rollback"), closed, 1.8e9)
    required = await evaluate(check("secrets_present", required_secrets=["qbitel/app-secrets"],
                                    external_secrets=False), closed, 1.8e9)
    await closed.close()
    assert refused.reason is Reason.CONFIG and "secrets: metadata" in refused.message
    assert required.reason is Reason.CONFIG
    assert api.count("secrets") == 0

    cluster = Cluster(conn(kubeconfig, secrets="metadata"))
    try:
        helm = await evaluate(check("helm_rollback"), cluster, 1.8e9)
        only = await evaluate(check("helm_rollback", releases=["qbitel"]), cluster, 1.8e9)
        missing = await evaluate(check("helm_rollback", releases=["nope"]), cluster, 1.8e9)
        present = await evaluate(check("secrets_present", external_secrets=False,
                                       required_secrets=["qbitel/app-secrets",
                                                         "qbitel/absent"]), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert helm.status is Status.FAIL and "qbitel/monitoring" in helm.message
    assert "qbitel/qbitel" not in helm.message
    assert only.status is Status.PASS
    assert gauge(only, "readiness_kubernetes_helm_release_revisions", release="qbitel") == 3
    assert missing.status is Status.FAIL and "nope (no release found)" in missing.message
    assert present.status is Status.FAIL and "qbitel/absent" in present.message
    assert "app-secrets" not in present.message
    secret_requests = [r for r in api.requests if "secrets" in r.path]
    assert secret_requests and all("as=PartialObjectMetadataList" in r.accept
                                   for r in secret_requests)
    assert all(r.query.get("labelSelector") == "owner=helm" for r in secret_requests
               if r.path.endswith("/secrets") and r.path.startswith("/api/v1/secrets"))
    for o in (helm, only, present):
        assert_clean(o, caplog)


def _tls_secret(name: str, days: int) -> dict[str, Any]:
    ca = trustme.CA()
    leaf = ca.issue_cert(f"{name}.qbitel.svc",
                         not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": "qbitel", "uid": name,
                         "resourceVersion": "7"},
            "data": {"tls.crt": base64.b64encode(chain).decode(),
                     "tls.key": base64.b64encode(key).decode()}}


async def test_tls_secrets_expiry(api: FakeApiServer, kubeconfig: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fresh, stale = _tls_secret("api-tls", 200), _tls_secret("old-tls", 10)
    api.add([fresh, stale])
    cluster = Cluster(conn(kubeconfig, secrets="data"))
    try:
        outcome = await evaluate(check("tls_secrets", namespaces=["qbitel"]), cluster,
                                 dt.datetime.now(dt.UTC).timestamp())
    finally:
        await cluster.close()
    assert outcome.status is Status.FAIL
    assert "qbitel/old-tls (expires in 10 days)" in outcome.message
    assert "api-tls" not in outcome.message
    cert = x509.load_pem_x509_certificates(base64.b64decode(fresh["data"]["tls.crt"]))[0]
    assert gauge(outcome, "readiness_kubernetes_tls_secret_expiry_timestamp_seconds",
                 secret="api-tls") == pytest.approx(cert.not_valid_after_utc.timestamp())
    key_text = base64.b64decode(stale["data"]["tls.key"]).decode()
    assert key_text.split("\n")[1] not in outcome.message
    for record in caplog.records:
        assert key_text.split("\n")[1] not in record.getMessage()
    assert api.requests[-1].query.get("fieldSelector") == "type=kubernetes.io/tls"


async def test_apiserver_not_visible_is_skipped(api: FakeApiServer, kubeconfig: Path) -> None:
    api.remove("Pod", "kube-system", "kube-apiserver-cp-1")
    cluster = Cluster(conn(kubeconfig))
    try:
        hidden = await evaluate(check("etcd_encryption"), cluster, 1.8e9)
        api.forbidden.add(("pods", "kube-system"))
        cluster.invalidate()
        denied = await evaluate(check("etcd_encryption"), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert hidden.status is Status.SKIPPED and "4.4.2-attested" in hidden.message
    assert denied.status is Status.SKIPPED and "kube-system" in denied.message


async def test_istio_missing(api: FakeApiServer, kubeconfig: Path) -> None:
    api.unserved |= {"peerauthentications", "destinationrules"}
    api.remove("Deployment", "istio-system", "istiod")
    cluster = Cluster(conn(kubeconfig))
    try:
        installed = await evaluate(check("istio_installed"), cluster, 1.8e9)
        mtls = await evaluate(check("mtls_strict", namespaces=["qbitel"]), cluster, 1.8e9)
    finally:
        await cluster.close()
    assert installed.status is Status.FAIL
    assert "security.istio.io" in installed.message and "istiod (absent)" in installed.message
    assert mtls.status is Status.FAIL and "not served" in mtls.message


async def test_label_selector_scope(cluster: Cluster) -> None:
    outcome = await evaluate(check("hpa", namespaces=["qbitel"], label_selector="tier!=backend",
                                   id="4.2.2"),
                             cluster, 1.8e9)
    assert outcome.status is Status.PASS, outcome.message  # worker (backend) out of scope


async def test_preset_loads_and_degrades_outside_a_cluster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    documents = [d for d in config._preset_documents("qbitel-production")
                 if d[0].endswith("40-kubernetes.yaml")]
    data = config._parse_yaml(documents[0][1], documents[0][0])
    for entry in data["checks"]:
        entry.pop("any_of", None)  # 4.4.2's alternative lives in 61-attestations.yaml
    cfg = config.build(data, "t", environ={})
    ids = {c.id for c in cfg.checks}
    assert {"4.1.1", "4.4.2", "7.3", "8.1", "9.1", "1.2.4-k8s-secrets"} <= ids
    assert {c.id for c in cfg.checks if not c.enabled} == {"8.1", "1.2.4-k8s-secrets"}
    ctx = RuntimeContext(cfg.connections, state_dir=tmp_path / "s")
    try:
        outcomes = [await KIND.run(c, ctx) for c in cfg.checks
                    if c.enabled and isinstance(c, KubernetesCheck)]
    finally:
        await ctx.aclose()
    assert all(o.status is Status.ERROR and o.reason is Reason.CONFIG for o in outcomes)
    assert "set kubeconfig" in outcomes[0].message


async def test_preset_against_the_fixture_cluster(kubeconfig: Path, tmp_path: Path) -> None:
    documents = [d for d in config._preset_documents("qbitel-production")
                 if d[0].endswith("40-kubernetes.yaml")]
    data = config._parse_yaml(documents[0][1], documents[0][0])
    data["connections"]["kubernetes"].update(kubeconfig=str(kubeconfig), context="test",
                                             secrets="data")
    for entry in data["checks"]:
        entry.pop("any_of", None)  # 4.4.2's alternative lives in 61-attestations.yaml
    cfg = config.build(data, "t", environ={})
    ctx = RuntimeContext(cfg.connections, state_dir=tmp_path / "s")
    try:
        results = {c.id: await KIND.run(c, ctx) for c in cfg.checks
                   if isinstance(c, KubernetesCheck)}
    finally:
        await ctx.aclose()
    assert results["4.1.1"].status is Status.PASS
    assert results["4.1.2"].status is Status.PASS
    # the apiserver's --encryption-provider-config file is not readable here: the
    # attested alternative applies (skipped, never a pass on the flag alone)
    assert results["4.4.2"].status is Status.SKIPPED
    assert results["8.1"].status is Status.PASS  # release qbitel has superseded revisions
    assert results["9.1"].status is Status.FAIL and "qbitel/worker" in results["9.1"].message
    # the fixture cluster has no kubernetes.io/tls Secret: nothing to judge, not a pass
    tls = results.pop("1.2.4-k8s-secrets")
    assert (tls.status, tls.reason) == (Status.ERROR, Reason.CONFIG), tls.message
    assert all(o.status in (Status.PASS, Status.FAIL, Status.SKIPPED)
               for o in results.values()), {k: o.message for k, o in results.items()}
