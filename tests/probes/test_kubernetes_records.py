"""Objects are trimmed at decode time (records.py): a LIST page or a WATCH event is decoded
straight into records that hold only what the assertions read, and read like the JSON."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from exporter.model import ProbeError, Reason
from exporter.probes.kubernetes import resources as r
from exporter.probes.kubernetes.common import Workload
from exporter.probes.kubernetes.exemptions import ANNOTATION
from exporter.probes.kubernetes.records import Meta, Record
from exporter.probes.kubernetes.snapshot import decode_page
from tests.probes.k8s_apiserver import FIXTURES


def fixture(name: str, index: int = 0) -> dict[str, Any]:
    items: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.json").read_text())["items"]
    return copy.deepcopy(items[index])


def page(*items: dict[str, Any], token: str | None = None) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": "42"}
    if token:
        meta["continue"] = token
    return json.dumps({"kind": "List", "metadata": meta, "items": list(items)}).encode()


def heavy_pod() -> dict[str, Any]:
    """A pod with what a real one carries and no assertion reads."""
    pod = fixture("pods")
    pod["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:x": {}}}]
    pod["metadata"]["annotations"] = {"istio.io/status": "x" * 2000,
                                      "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    pod["spec"]["containers"][0]["env"] = [{"name": "DB_PASSWORD", "value": "hunter2-SECRET"}]
    pod["spec"]["containers"][0]["command"] = ["serve", "--port=8000"]
    pod["spec"]["volumes"] = [{"name": "token", "projected": {"sources": []}}]
    return pod


def test_a_page_keeps_only_the_fields_assertions_read() -> None:
    decoded = decode_page(r.PODS, page(heavy_pod(), token="next"))
    assert decoded["continue"] == "next" and decoded["resourceVersion"] == "42"
    (pod,) = decoded["items"]
    assert set(pod.keys()) == {"metadata", "spec", "status"}
    meta = pod["metadata"]
    assert set(meta.keys()) == {"name", "namespace", "labels"}  # no uid, managedFields...
    assert "annotations" not in meta  # none of the kept ones: nothing kept
    first = pod["spec"]["containers"][0]
    assert dict(first.items()) == {"name": "ai-engine", "command": ["serve", "--port=8000"]}
    assert first.get("env") is None and first.get("image") is None
    assert pod["status"] == {"phase": "Running"}
    assert "hunter2-SECRET" not in repr(decoded)  # never decoded, so never kept


def test_a_kept_annotation_survives_and_the_others_do_not() -> None:
    pod = heavy_pod()
    pod["metadata"]["annotations"]["sidecar.istio.io/inject"] = "false"
    pod["metadata"]["annotations"][ANNOTATION] = "4.3.3 until 2099-01-01: reason"
    (decoded,) = decode_page(r.PODS, page(pod))["items"]
    assert decoded["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false",
                                                   ANNOTATION: "4.3.3 until 2099-01-01: reason"}


def test_workload_record_reads_like_the_deployment() -> None:
    raw = fixture("deployments")
    (item,) = decode_page(r.DEPLOYMENTS, page(raw))["items"]
    workload = Workload("Deployment", item)
    assert (workload.namespace, workload.name, workload.replicas) == ("qbitel", "ai-engine", 2)
    assert workload.pod_labels == raw["spec"]["template"]["metadata"]["labels"]
    container = workload.pod_spec["containers"][0]
    assert container["resources"] == raw["spec"]["template"]["spec"]["containers"][0][
        "resources"]
    assert "ports" not in container
    assert workload.pod_spec["affinity"] == raw["spec"]["template"]["spec"]["affinity"]
    assert item["metadata"]["generation"] == 3
    assert item["status"]["observedGeneration"] == 3
    assert "conditions" not in item["status"]  # not read by the rollout assertion


def test_replicas_of_a_page_share_equal_parts() -> None:
    a, b = fixture("pods"), fixture("pods")
    b["metadata"]["name"] += "-twin"
    first, second = decode_page(r.PODS, page(a, b))["items"]
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert first["metadata"]["labels"] is second["metadata"]["labels"]
    assert first["spec"] is second["spec"] and first["status"] is second["status"]
    b["status"]["phase"] = "Pending"  # the near miss: equal but for one field
    first, second = decode_page(r.PODS, page(a, b))["items"]
    assert first["status"] is not second["status"]
    assert second["status"]["phase"] == "Pending"


def test_other_kinds_keep_their_read_fields_and_drop_metadata_noise() -> None:
    raw = fixture("rolebindings")
    raw["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    (item,) = decode_page(r.ROLE_BINDINGS, page(raw))["items"]
    assert item["subjects"] == raw["subjects"] and item["roleRef"] == raw["roleRef"]
    assert item["metadata"].get("managedFields") is None
    assert item.get("kind") is None  # the list's kind is known: not kept per object


def test_a_record_reads_like_a_mapping() -> None:
    meta = Meta(name="api", namespace="shop", labels={"app": "api"})
    assert meta.get("name") == "api" and meta["namespace"] == "shop"
    assert meta.get("generation") is None and meta.get("generation", 7) == 7
    with pytest.raises(KeyError):
        meta["generation"]
    with pytest.raises(KeyError):
        meta["uid"]  # not a field at all
    assert "labels" in meta and "annotations" not in meta and "get" not in meta
    assert meta.get("get") is None  # method names are not fields
    assert meta == {"name": "api", "namespace": "shop", "labels": {"app": "api"}}
    assert meta != {"name": "api", "namespace": "shop"}
    assert sorted(meta) == ["labels", "name", "namespace"] and len(meta) == 3
    assert meta.pop("labels") == {"app": "api"} and "labels" not in meta
    assert meta.pop("labels", "gone") == "gone"
    assert isinstance(meta, Record)


@pytest.mark.parametrize("body", [
    b'{"kind": "Status", "metadata": {}}',  # no items: not a Kubernetes list
    b'{"metadata": {}, "items": {"a": 1}}',  # items is not a list
    b'{"metadata": {}, "items": [{"metadata": {"name": 3}}]}',  # a name that is no string
])
def test_an_answer_that_is_not_a_list_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProbeError) as caught:
        decode_page(r.PODS, body)
    assert caught.value.reason is Reason.PROTOCOL


def test_a_decoded_mapping_converts_to_the_same_record() -> None:
    """The watch path (one event) and the page path give equal records."""
    raw = heavy_pod()
    (from_page,) = decode_page(r.PODS, page(raw))["items"]
    from_event = r.slim_pod(raw)
    assert from_event == from_page and from_event["spec"] is not from_page["spec"]


def test_equal_json_of_different_parts_is_not_shared() -> None:
    """An empty spec and an empty status encode alike; each keeps its own record type."""
    pod = fixture("pods")
    pod["spec"], pod["status"] = {}, {}
    (item,) = decode_page(r.PODS, page(pod))["items"]
    assert item["spec"] is not item["status"]
    assert type(item["spec"]).__name__ == "PodSpec"
    assert type(item["status"]).__name__ == "PodStatus"
