"""Pure helpers of the kubernetes probe: selectors, quantities, exemptions, PDB maths,
spec validation and the fixtures' shape."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporter.model import ProbeError, Reason
from exporter.probes.kubernetes.assert_workloads import pdb_allowed, spreads
from exporter.probes.kubernetes.common import Workload, by_namespace
from exporter.probes.kubernetes.exemptions import ANNOTATION, ExemptionState, exemption_for
from exporter.probes.kubernetes.quantities import parse_quantity
from exporter.probes.kubernetes.selectors import SelectorError, matches, parse_selector
from exporter.probes.kubernetes.snapshot import decode_object
from exporter.probes.kubernetes.spec import KubernetesCheck

FIXTURES = Path(__file__).parent / "k8s_fixtures"
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    (None, {"app": "a"}, False),                     # missing selects nothing
    ({}, {"app": "a"}, True),                        # empty selects everything
    ({}, {}, True),
    ({"matchLabels": {"app": "a"}}, {"app": "a", "x": "y"}, True),
    ({"matchLabels": {"app": "a"}}, {"app": "b"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
     {"tier": "b"}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
     {"tier": "a"}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
    # matchLabels and matchExpressions are ANDed
    ({"matchLabels": {"app": "a"},
      "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]},
     {"app": "a", "tier": "y"}, False),
])
def test_selector_semantics(selector: dict[str, object] | None, labels: dict[str, str],
                            expected: bool) -> None:
    assert matches(selector, labels) is expected


def test_selector_rejects_bad_operators() -> None:
    with pytest.raises(SelectorError):
        matches({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, {})
    with pytest.raises(SelectorError):
        matches({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, {"a": "1"})


def test_parse_selector_string_forms() -> None:
    selector = parse_selector("app=web,tier in (a, b),!legacy,env!=dev,canary")
    assert matches(selector, {"app": "web", "tier": "b", "canary": "1"})
    assert not matches(selector, {"app": "web", "tier": "c", "canary": "1"})
    assert not matches(selector, {"app": "web", "tier": "a", "canary": "1", "legacy": "y"})
    assert not matches(selector, {"app": "web", "tier": "a", "canary": "1", "env": "dev"})
    assert not matches(selector, {"app": "web", "tier": "a"})
    assert matches(parse_selector("x notin (1)"), {})


@pytest.mark.parametrize(("text", "value"), [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("0.25", Decimal("0.25")),
    ("4Gi", Decimal(4 * 2**30)), ("4G", Decimal(4 * 10**9)), ("2048Mi", Decimal(2 * 2**30)),
    ("128974848", Decimal(128974848)), ("129e6", Decimal(129 * 10**6)),
    ("123Ki", Decimal(123 * 1024)), ("1k", Decimal(1000)), ("100u", Decimal("0.0001")),
    (2, Decimal(2)), (0.5, Decimal("0.5")),
])
def test_quantities(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["", "4GB", "Gi", "1.2.3", "4 Gi", True, None])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


def _annotated(value: object) -> dict[str, object]:
    return {"metadata": {"annotations": {ANNOTATION: json.dumps(value)}}}


def test_exemptions() -> None:
    ok = _annotated({"checks": ["4.2.3"], "reason": "batch job", "expires": "2027-01-01"})
    assert exemption_for(ok, {"4.2.3"}, NOW).state is ExemptionState.HONOURED
    assert exemption_for(ok, {"4.2.3"}, NOW).reason == "batch job"
    assert exemption_for(ok, {"4.2.2"}, NOW).state is ExemptionState.NONE
    expired = _annotated({"checks": ["4.2.3"], "reason": "x", "expires": "2026-10-31"})
    assert exemption_for(expired, {"4.2.3"}, NOW).state is ExemptionState.EXPIRED
    # a date expires at the end of that day (UTC)
    same_day = _annotated({"checks": ["4.2.3"], "reason": "x", "expires": "2026-11-01"})
    assert exemption_for(same_day, {"4.2.3"}, NOW + 3600).state is ExemptionState.HONOURED
    timed = _annotated({"checks": ["4.2.3"], "reason": "x", "expires": "2026-11-01T00:30:00Z"})
    assert exemption_for(timed, {"4.2.3"}, NOW + 3600).state is ExemptionState.EXPIRED
    no_reason = _annotated({"checks": ["4.2.3"]})
    assert exemption_for(no_reason, {"4.2.3"}, NOW).state is ExemptionState.INVALID
    forever = _annotated([{"checks": ["1.1"], "reason": "a"}, {"checks": ["4.2.3"],
                                                                "reason": "b"}])
    assert exemption_for(forever, {"4.2.3"}, NOW).reason == "b"
    garbage = {"metadata": {"annotations": {ANNOTATION: "4.2.3 please"}}}
    assert exemption_for(garbage, {"4.2.3"}, NOW).state is ExemptionState.INVALID
    assert exemption_for({}, {"4.2.3"}, NOW).state is ExemptionState.NONE


@pytest.mark.parametrize(("pdb_spec", "replicas", "allowed"), [
    ({"maxUnavailable": 0}, 3, 0),
    ({"maxUnavailable": 1}, 3, 1),
    ({"maxUnavailable": "0%"}, 3, 0),
    ({"maxUnavailable": "10%"}, 3, 1),   # rounded up
    ({"minAvailable": 3}, 3, 0),          # equal to replicas: blocks drains
    ({"minAvailable": 2}, 3, 1),
    ({"minAvailable": "100%"}, 4, 0),
    ({"minAvailable": "50%"}, 3, 1),      # ceil(1.5) = 2 needed
    ({"minAvailable": "60%"}, 2, 0),      # ceil(1.2) = 2 needed
])
def test_pdb_allowed(pdb_spec: dict[str, object], replicas: int, allowed: int) -> None:
    assert pdb_allowed({"spec": pdb_spec}, replicas)[0] == allowed


def _workload(pod_spec: Mapping[str, object]) -> Workload:
    return Workload("Deployment", {"metadata": {"name": "w", "namespace": "n"}, "spec": {
        "replicas": 2, "template": {"metadata": {"labels": {"app": "w"}}, "spec": pod_spec}}})


def test_anti_affinity_must_target_own_pods_on_a_known_key() -> None:
    keys = ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    own = {"labelSelector": {"matchLabels": {"app": "w"}}, "topologyKey": "kubernetes.io/hostname"}
    other = {**own, "labelSelector": {"matchLabels": {"app": "db"}}}
    rack = {**own, "topologyKey": "example.com/rack"}
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [own]}}
    assert spreads(_workload({"affinity": anti}), keys)
    for term in (other, rack):
        bad = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
        assert not spreads(_workload({"affinity": bad}), keys)
    spread = {"topologySpreadConstraints": [{"topologyKey": "topology.kubernetes.io/zone",
                                             "labelSelector": {"matchLabels": {"app": "w"}}}]}
    assert spreads(_workload(spread), keys)
    assert not spreads(_workload({}), keys)


def test_spec_validation_names_the_problem() -> None:
    base = {"id": "4.1.2", "section": "4.1", "title": "t", "kind": "kubernetes"}
    with pytest.raises(ValidationError, match="required_namespaces"):
        KubernetesCheck.model_validate({**base, "assert": "namespaces_exist"})
    with pytest.raises(ValidationError, match="assert"):
        KubernetesCheck.model_validate({**base, "assert": "pdb"})
    with pytest.raises(ValidationError, match="not a quantity"):
        KubernetesCheck.model_validate({**base, "assert": "resource_baseline", "components": [
            {"name": "x", "selector": "app=x", "cpu_request": "two", "cpu_limit": "2",
             "memory_request": "1Gi", "memory_limit": "1Gi"}]})
    with pytest.raises(ValidationError, match="namespace/name"):
        KubernetesCheck.model_validate({**base, "assert": "secrets_present",
                                        "required_secrets": ["just-a-name"]})
    with pytest.raises(ValidationError, match=r"unknown|extra"):
        KubernetesCheck.model_validate({**base, "assert": "hpa", "min_replica": 2})


def test_fixtures_are_kubectl_lists() -> None:
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text())
        if path.stem == "version":
            assert data["gitVersion"].startswith("v1.")
            continue
        assert data["kind"] == "List" and data["apiVersion"] == "v1"
        for item in data["items"]:
            assert {"apiVersion", "kind", "metadata"} <= set(item)
            assert item["metadata"]["name"] and item["metadata"]["uid"]


def test_core_fixtures_validate_against_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for name in ("deployments", "statefulsets", "daemonsets", "pods", "namespaces",
                 "poddisruptionbudgets", "networkpolicies", "horizontalpodautoscalers",
                 "resourcequotas", "services", "clusterroles", "clusterrolebindings",
                 "roles", "rolebindings", "secrets"):
        for item in json.loads((FIXTURES / f"{name}.json").read_text())["items"]:
            kubernetes_validate.validate(item, "1.29", strict=True)


def test_a_page_keeps_one_copy_of_equal_parts_and_only_read_annotations() -> None:
    from exporter.probes.kubernetes import resources as r
    from exporter.probes.kubernetes.snapshot import decode_page

    pods = json.loads((FIXTURES / "pods.json").read_text())["items"]
    first = pods[0]
    twin = json.loads(json.dumps(first))
    twin["metadata"]["name"] += "-twin"
    twin["metadata"]["annotations"] = {"istio.io/status": "{...1 KB of JSON...}",
                                       "sidecar.istio.io/inject": "false",
                                       ANNOTATION: "4.3.3 until 2099-01-01: reason"}
    page = json.dumps({"metadata": {"resourceVersion": "7"}, "items": [first, twin]})
    decoded = decode_page(r.PODS, page.encode())
    a, b = decoded["items"]
    assert decoded["resourceVersion"] == "7"
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert a["metadata"].get("labels") and a["metadata"]["labels"] is b["metadata"]["labels"]
    assert a["spec"] is b["spec"] and a["status"] is b["status"]
    assert b["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false",
                                            ANNOTATION: "4.3.3 until 2099-01-01: reason"}
    unshared = r.slim_pod(json.loads(json.dumps(first)))  # a watch event: no page memo
    assert unshared == a and unshared["spec"] is not a["spec"]


def test_by_namespace_groups_in_list_order() -> None:
    objs = [{"metadata": {"namespace": "a", "name": "1"}}, {"metadata": {"name": "c"}},
            {"metadata": {"namespace": "b", "name": "2"}},
            {"metadata": {"namespace": "a", "name": "3"}}]
    grouped = by_namespace(objs)
    assert {ns: [o["metadata"]["name"] for o in items] for ns, items in grouped.items()} == {
        "a": ["1", "3"], "": ["c"], "b": ["2"]}
    assert "other" not in grouped


async def test_decode_object_accepts_only_a_json_object() -> None:
    assert await decode_object(b'{"kind": "PodList"}', "list", "pods", "in namespace a") == {
        "kind": "PodList"}
    large = json.dumps({"items": ["x" * 1024] * 300}).encode()  # parsed in a thread
    assert len((await decode_object(large, "list", "pods", "cluster-wide"))["items"]) == 300
    with pytest.raises(ProbeError) as not_json:
        await decode_object(b"<html>proxy error</html>", "get", "pods", "in namespace a")
    assert not_json.value.reason is Reason.PROTOCOL
    assert not_json.value.message == "get pods in namespace a: the answer is not JSON"
    with pytest.raises(ProbeError) as not_object:
        await decode_object(b"[1, 2]", "list", "pods", "cluster-wide")
    assert not_object.value.reason is Reason.PROTOCOL
    assert not_object.value.message == "list pods cluster-wide: unexpected answer"


async def test_the_collector_is_paused_while_any_list_runs_and_resumed_after_the_last() -> None:
    """`collector_paused` is held from a LIST's first page to its last, by concurrent
    LISTs at once (and by page decodes in threads): the collector runs again only when
    the last holder leaves, and stays off if it was off before the first."""
    import gc
    import threading

    from exporter.probes.kubernetes.snapshot import collector_paused

    assert gc.isenabled()
    first, second = asyncio.Event(), asyncio.Event()

    async def listing(until: asyncio.Event) -> None:
        with collector_paused:
            await until.wait()

    one = asyncio.create_task(listing(first))
    two = asyncio.create_task(listing(second))
    await asyncio.sleep(0)
    assert not gc.isenabled()
    seen_in_thread: list[bool] = []

    def decode() -> None:  # a page decoded in a worker thread meanwhile
        with collector_paused:
            seen_in_thread.append(gc.isenabled())

    worker = threading.Thread(target=decode)
    worker.start()
    worker.join()
    assert seen_in_thread == [False] and not gc.isenabled()
    first.set()
    await one
    assert not gc.isenabled()  # the second LIST still runs
    second.set()
    await two
    assert gc.isenabled()
    gc.disable()  # off before: left off
    try:
        with collector_paused:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_a_shared_request_is_cancelled_only_when_its_last_caller_gives_up() -> None:
    """The near miss of cancelling a LIST whose check timed out: while another check
    still awaits the same request it keeps running and that check gets its answer; only
    when every caller has given up is it cancelled, and the next call starts afresh."""
    from exporter.probes.kubernetes.connection import KubernetesConnection
    from exporter.probes.kubernetes.snapshot import Cluster

    cluster = Cluster(KubernetesConnection(kind="kubernetes", snapshot_ttl=0))
    release = asyncio.Event()
    started: list[asyncio.Task[object] | None] = []

    async def make() -> str:
        started.append(asyncio.current_task())
        await release.wait()
        return "listed"

    key = ("list", "pods")
    patient = asyncio.create_task(cluster._shared(key, make))
    impatient = asyncio.create_task(cluster._shared(key, make))
    await asyncio.sleep(0.01)
    assert len(started) == 1  # one request for both callers
    impatient.cancel()
    await asyncio.sleep(0.01)
    assert started[0] is not None and not started[0].cancelled()
    release.set()
    assert await patient == "listed"  # the other caller still got its answer

    release.clear()
    lone = asyncio.create_task(cluster._shared(key, make))
    await asyncio.sleep(0.01)
    lone.cancel()
    await asyncio.sleep(0.01)
    assert started[1] is not None and started[1].cancelled()  # nobody waits: stopped
    release.set()
    assert await cluster._shared(key, make) == "listed"
    assert len(started) == 3  # asked afresh, not the cancelled request
