"""Issue 11's Kubernetes verdicts, each against the stand-in API server through the real
client: nothing in scope is `error/config` (never "all 0 comply"), a PDB is judged
against every pod it covers, and 4.4.2 reads the EncryptionConfiguration itself."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import trustme

from exporter.model import Outcome, Reason, Status
from exporter.probes.kubernetes.connection import KubernetesConnection
from exporter.probes.kubernetes.probe import evaluate
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import KubernetesCheck
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

TOKEN = "tok-K8S-VERDICTS-do-not-leak-4410"
KEY = base64.b64encode(b"k8s-verdicts-AES-KEY-do-not-leak").decode()
FIXTURES = Path(__file__).parent / "k8s_fixtures"
NOW = 1.8e9


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(token=TOKEN)
    server.load_fixtures()
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def cluster(api: FakeApiServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    path = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}", TOKEN)
    c = Cluster(KubernetesConnection(kind="kubernetes", kubeconfig=path, context="test",
                                     secrets="data"))
    yield c
    await c.close()


def check(assertion: str, **kw: Any) -> KubernetesCheck:
    return KubernetesCheck.model_validate({"id": kw.pop("id", "4.9.9"), "section": "4.9",
                                           "title": "t", "kind": "kubernetes",
                                           "assert": assertion, **kw})


def gauge(outcome: Outcome, family: str, **labels: str) -> float | None:
    for m in outcome.measurements:
        if m.family == family and all(m.labels.get(k) == v for k, v in labels.items()):
            return m.value
    return None


# ------------------------------------------------------------------ nothing in scope

SCOPED = ["resource_limits", "hpa", "pdb_coverage", "anti_affinity", "deployments_available",
          "network_policies", "resource_quotas", "pod_security", "mtls_strict",
          "sidecar_injection", "traffic_policies", "secrets_present", "tls_secrets",
          "helm_rollback"]


def tls_secret() -> dict[str, Any]:
    ca = trustme.CA()
    pem = ca.issue_cert("web.qbitel.svc").cert_chain_pems[0].bytes()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "web-tls", "namespace": "qbitel"},
            "data": {"tls.crt": base64.b64encode(pem).decode()}}


@pytest.mark.parametrize("assertion", SCOPED)
async def test_misspelled_namespace_is_config_error(api: FakeApiServer, cluster: Cluster,
                                                    assertion: str) -> None:
    """`namespaces: [qbitl]` judged nothing: before, the workload assertions passed with
    "all 0 workloads comply"; now every assertion names the namespace to change."""
    outcome = await evaluate(check(assertion, namespaces=["qbitl"]), cluster, NOW)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome.message
    assert "nothing in scope" in outcome.message
    assert "qbitl" in outcome.message and "`namespaces`" in outcome.message
    assert "comply" not in outcome.message
    if assertion == "tls_secrets":  # the fixtures hold no TLS Secret: add one
        api.add([tls_secret()])
    right = await evaluate(check(assertion, namespaces=["qbitel"]), cluster, NOW)
    assert right.status is not Status.ERROR, right.message


@pytest.mark.parametrize("assertion", ["resource_limits", "hpa", "pdb_coverage",
                                       "anti_affinity", "deployments_available"])
async def test_absent_namespace_is_named(cluster: Cluster, assertion: str) -> None:
    outcome = await evaluate(check(assertion, namespaces=["qbitl"]), cluster, NOW)
    assert "namespace qbitl does not exist" in outcome.message


async def test_selector_matching_nothing_is_config_error(cluster: Cluster) -> None:
    wrong = await evaluate(check("resource_limits", label_selector="app=api-sever"), cluster,
                           NOW)
    assert (wrong.status, wrong.reason) == (Status.ERROR, Reason.CONFIG), wrong.message
    assert "`label_selector: app=api-sever`" in wrong.message
    right = await evaluate(check("resource_limits", label_selector="app=api-server"),
                           cluster, NOW)
    assert right.status is Status.PASS, right.message
    assert "all 1 workloads comply" in right.message


async def test_workload_names_matching_nothing_is_config_error(cluster: Cluster) -> None:
    wrong = await evaluate(check("hpa", namespaces=["qbitel"], workloads=["wroker"]),
                           cluster, NOW)
    assert (wrong.status, wrong.reason) == (Status.ERROR, Reason.CONFIG)
    assert "`workloads: wroker` matched none" in wrong.message
    right = await evaluate(check("hpa", namespaces=["qbitel"], workloads=["worker"]),
                           cluster, NOW)
    assert right.status is Status.FAIL and "qbitel/worker" in right.message


async def test_component_selector_matching_nothing_is_config_error(cluster: Cluster) -> None:
    component = {"name": "AI Engine", "cpu_request": "2", "cpu_limit": "4",
                 "memory_request": "4Gi", "memory_limit": "8Gi"}
    wrong = await evaluate(check("resource_baseline", namespaces=["qbitel"], components=[
        {**component, "selector": "app.kubernetes.io/component=ai-engin"}]), cluster, NOW)
    assert (wrong.status, wrong.reason) == (Status.ERROR, Reason.CONFIG), wrong.message
    assert "components[0].selector" in wrong.message
    right = await evaluate(check("resource_baseline", namespaces=["qbitel"], components=[
        {**component, "selector": "app.kubernetes.io/component=ai-engine"}]), cluster, NOW)
    assert right.status is Status.PASS, right.message


async def test_injection_without_running_pods_is_not_a_pass(api: FakeApiServer,
                                                             cluster: Cluster) -> None:
    """A labelled namespace with no Running pod: "all 0 running pods carry istio-proxy"
    claimed what nobody checked."""
    api.add([{"apiVersion": "v1", "kind": "Namespace",
              "metadata": {"name": "quiet", "labels": {"istio-injection": "enabled"}}}])
    outcome = await evaluate(check("sidecar_injection", namespaces=["quiet"]), cluster, NOW)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome.message
    assert "no Running pod in namespaces quiet" in outcome.message
    both = await evaluate(check("sidecar_injection", namespaces=["quiet", "qbitel"]),
                          cluster, NOW)
    assert both.status is Status.FAIL  # qbitel's pods are judged as before


async def test_no_replicated_workload_passes_saying_so(cluster: Cluster) -> None:
    """`legacy` has one single-replica Deployment: in scope, nothing to protect."""
    outcome = await evaluate(check("pdb_coverage", namespaces=["legacy"]), cluster, NOW)
    assert outcome.status is Status.PASS
    assert "none of the 1 workloads in scope runs >= 2 replicas" in outcome.message


# ------------------------------------------------------------------ PDB over several workloads


def shop(api: FakeApiServer, pdb_spec: dict[str, Any]) -> None:
    """Namespace `shop`: Deployments cart (3) and checkout (2), one PDB on team=shop."""
    base = json.loads((FIXTURES / "deployments.json").read_text())["items"][0]
    objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "shop"}}]
    for name, replicas in (("cart", 3), ("checkout", 2)):
        obj = copy.deepcopy(base)
        labels = {"app": name, "team": "shop"}
        obj.update(apiVersion="apps/v1", kind="Deployment")
        obj["metadata"] = {"name": name, "namespace": "shop", "labels": {"app": name},
                           "generation": 1}
        obj["spec"]["replicas"] = replicas
        obj["spec"]["selector"] = {"matchLabels": {"app": name}}
        obj["spec"]["template"]["metadata"] = {"labels": labels}
        objects.append(obj)
    objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "shop", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"team": "shop"}}, **pdb_spec}})
    api.add(objects)


async def test_pdb_over_two_deployments_counts_all_its_pods(api: FakeApiServer,
                                                            cluster: Cluster) -> None:
    """3 + 2 pods under minAvailable 3 allow 2 disruptions. Judged per Deployment (the
    old rule) the PDB allowed 3-3 = 0 and 2-3 < 0: "blocks drains", a false fail."""
    shop(api, {"minAvailable": 3})
    outcome = await evaluate(check("pdb_coverage", namespaces=["shop"]), cluster, NOW)
    assert outcome.status is Status.PASS, outcome.message
    family = "readiness_kubernetes_pdb_allowed_disruptions"
    assert gauge(outcome, family, workload="cart") == 2
    assert gauge(outcome, family, workload="checkout") == 2


async def test_pdb_over_two_deployments_percentage(api: FakeApiServer,
                                                   cluster: Cluster) -> None:
    """minAvailable 80% of 5 pods = 4: one disruption (per Deployment, 80% of 3 rounds up
    to 3 and allowed none)."""
    shop(api, {"minAvailable": "80%"})
    outcome = await evaluate(check("pdb_coverage", namespaces=["shop"]), cluster, NOW)
    assert outcome.status is Status.PASS, outcome.message
    assert gauge(outcome, "readiness_kubernetes_pdb_allowed_disruptions", workload="cart") == 1


async def test_pdb_over_two_deployments_that_blocks_drains(api: FakeApiServer,
                                                           cluster: Cluster) -> None:
    shop(api, {"minAvailable": 5})
    outcome = await evaluate(check("pdb_coverage", namespaces=["shop"]), cluster, NOW)
    assert outcome.status is Status.FAIL
    assert "PDB shop minAvailable 5 of 5 pods of cart, checkout blocks drains" in \
        outcome.message


async def test_pdb_counts_pods_of_workloads_outside_the_checks_selector(
        api: FakeApiServer, cluster: Cluster) -> None:
    """The check judges only cart, but checkout's pods are still under the PDB."""
    shop(api, {"minAvailable": 3})
    outcome = await evaluate(check("pdb_coverage", namespaces=["shop"],
                                   label_selector="app=cart"), cluster, NOW)
    assert outcome.status is Status.PASS, outcome.message
    assert gauge(outcome, "readiness_kubernetes_pdb_allowed_disruptions", workload="cart") == 2
    assert gauge(outcome, "readiness_kubernetes_pdb_allowed_disruptions",
                 workload="checkout") is None


# ------------------------------------------------------------------ 4.4.2 EncryptionConfiguration


def encryption_config(*entries: tuple[list[str], list[dict[str, Any]]]) -> str:
    return json.dumps({"apiVersion": "apiserver.config.k8s.io/v1",
                       "kind": "EncryptionConfiguration",
                       "resources": [{"resources": r, "providers": p} for r, p in entries]})


AESCBC = {"aescbc": {"keys": [{"name": "key1", "secret": KEY}]}}
IDENTITY: dict[str, Any] = {"identity": {}}
KMS_V2 = {"kms": {"apiVersion": "v2", "name": "vault", "endpoint": "unix:///kms.sock"}}

CONFIGS = {
    "identity-first": (encryption_config((["secrets"], [IDENTITY, AESCBC])), Status.FAIL),
    "aescbc-first": (encryption_config((["secrets"], [AESCBC, IDENTITY])), Status.PASS),
    "kms-v2-first": (encryption_config((["secrets", "configmaps"], [KMS_V2])), Status.PASS),
    "kms-v1-default": (encryption_config((["secrets"], [
        {"kms": {"name": "legacy", "endpoint": "unix:///kms.sock"}}])), Status.PASS),
    "secretbox": (encryption_config((["secrets"], [
        {"secretbox": {"keys": [{"name": "k", "secret": KEY}]}}])), Status.PASS),
    "only-configmaps": (encryption_config((["configmaps"], [AESCBC])), Status.FAIL),
    "wildcard-aesgcm": (encryption_config((["*.*"], [
        {"aesgcm": {"keys": [{"name": "k", "secret": KEY}]}}])), Status.PASS),
    "secrets-entry-before-wildcard": (encryption_config(
        (["secrets"], [IDENTITY]), (["*.*"], [AESCBC])), Status.FAIL),
}

MALFORMED = {
    "not-yaml": "resources: [\n  - providers: {",
    "wrong-kind": json.dumps({"apiVersion": "v1", "kind": "ConfigMap"}),
    "no-resources": json.dumps({"apiVersion": "apiserver.config.k8s.io/v1",
                                "kind": "EncryptionConfiguration"}),
    "aescbc-without-keys": encryption_config((["secrets"], [{"aescbc": {"keys": []}}])),
    "unknown-provider": encryption_config((["secrets"], [{"rot13": {}}])),
    "kms-without-endpoint": encryption_config((["secrets"], [{"kms": {"name": "x"}}])),
}


def secret_free(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    for text in [outcome.message, *(r.getMessage() for r in caplog.records)]:
        assert KEY not in text and TOKEN not in text


@pytest.mark.parametrize("name", CONFIGS)
async def test_encryption_config_file(cluster: Cluster, tmp_path: Path, name: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    text, status = CONFIGS[name]
    path = tmp_path / "enc.yaml"
    path.write_text(text)
    outcome = await evaluate(check("etcd_encryption", encryption_config_file=str(path)),
                             cluster, NOW)
    assert outcome.status is status, outcome.message
    assert str(path) in outcome.message
    provider = gauge_labels(outcome, "readiness_kubernetes_secrets_encryption_provider_info")
    assert provider == [{"provider": "identity"}] if status is Status.FAIL else \
        provider[0]["provider"] in ("aescbc", "aesgcm", "secretbox", "kms")
    secret_free(outcome, caplog)


def gauge_labels(outcome: Outcome, family: str) -> list[dict[str, str]]:
    return [dict(m.labels) for m in outcome.measurements if m.family == family]


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_encryption_config_is_config_error(
        cluster: Cluster, tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "enc.yaml"
    path.write_text(text)
    outcome = await evaluate(check("etcd_encryption", encryption_config_file=str(path)),
                             cluster, NOW)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome.message
    assert str(path) in outcome.message
    secret_free(outcome, caplog)


async def test_unreadable_configured_file_is_config_error(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    outcome = await evaluate(check("etcd_encryption",
                                   encryption_config_file=str(tmp_path / "missing.yaml")),
                             cluster, NOW)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "encryption_config_file" in outcome.message


def apiserver_pod(command: list[str]) -> dict[str, Any]:
    pods = json.loads((FIXTURES / "pods.json").read_text())["items"]
    pod = copy.deepcopy(next(p for p in pods if p["metadata"]["name"].startswith(
        "kube-apiserver")))
    pod.update(apiVersion="v1", kind="Pod")
    pod["spec"]["containers"][0]["command"] = ["kube-apiserver", *command]
    return pod


@pytest.mark.parametrize(("first", "status"), [(IDENTITY, Status.FAIL),
                                               (AESCBC, Status.PASS)])
async def test_apiserver_flag_file_is_read(api: FakeApiServer, cluster: Cluster,
                                           tmp_path: Path, first: dict[str, Any],
                                           status: Status,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The old rule passed on the flag alone; identity first in the file it names is
    plain text in etcd."""
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "enc.yaml"
    path.write_text(encryption_config((["secrets"], [first, IDENTITY if first is AESCBC
                                                     else AESCBC])))
    api.put(apiserver_pod([f"--encryption-provider-config={path}"]))
    outcome = await evaluate(check("etcd_encryption"), cluster, NOW)
    assert outcome.status is status, outcome.message
    assert str(path) in outcome.message or status is Status.PASS
    assert gauge_labels(outcome, "readiness_kubernetes_secrets_encryption_provider_info") \
        == [{"provider": next(iter(first))}]
    secret_free(outcome, caplog)


async def test_apiserver_flag_as_two_words(api: FakeApiServer, cluster: Cluster,
                                           tmp_path: Path) -> None:
    path = tmp_path / "enc.yaml"
    path.write_text(encryption_config((["secrets"], [KMS_V2])))
    api.put(apiserver_pod(["--encryption-provider-config", str(path)]))
    outcome = await evaluate(check("etcd_encryption"), cluster, NOW)
    assert outcome.status is Status.PASS and "kms v2 (vault)" in outcome.message


async def test_apiserver_without_the_flag_fails(api: FakeApiServer, cluster: Cluster) -> None:
    """`--encryption-provider-config-automatic-reload` is another flag (the old prefix
    match took it for the config)."""
    api.put(apiserver_pod(["--encryption-provider-config-automatic-reload=true"]))
    outcome = await evaluate(check("etcd_encryption"), cluster, NOW)
    assert outcome.status is Status.FAIL
    assert "no --encryption-provider-config" in outcome.message


async def test_apiserver_file_not_visible_is_skipped_for_the_attestation(
        api: FakeApiServer, cluster: Cluster, tmp_path: Path) -> None:
    api.put(apiserver_pod([f"--encryption-provider-config={tmp_path / 'elsewhere.yaml'}"]))
    outcome = await evaluate(check("etcd_encryption"), cluster, NOW)
    assert outcome.status is Status.SKIPPED
    assert "not visible" in outcome.message and "attested alternative" in outcome.message


@pytest.mark.parametrize(("first", "status"), [(IDENTITY, Status.FAIL),
                                               (AESCBC, Status.PASS)])
async def test_encryption_config_from_a_configmap(api: FakeApiServer, cluster: Cluster,
                                                  first: dict[str, Any],
                                                  status: Status) -> None:
    api.add([{"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "encryption", "namespace": "kube-system"},
              "data": {"config.yaml": encryption_config((["secrets"], [first]))}}])
    outcome = await evaluate(check("etcd_encryption",
                                   encryption_config_configmap="kube-system/encryption"),
                             cluster, NOW)
    assert outcome.status is status, outcome.message
    assert "ConfigMap kube-system/encryption key config.yaml" in outcome.message
    assert KEY not in outcome.message
    absent = await evaluate(check("etcd_encryption",
                                  encryption_config_configmap="kube-system/nope"),
                            cluster, NOW)
    assert (absent.status, absent.reason) == (Status.ERROR, Reason.CONFIG)
    assert "kube-system/nope" in absent.message


def test_configmap_reference_must_be_namespace_slash_name() -> None:
    with pytest.raises(pydantic.ValidationError, match="encryption_config_configmap"):
        check("etcd_encryption", encryption_config_configmap="encryption")
