"""The watch cache (informer.py): collections read by a running `serve` (from their first
LIST) or read again in a later cycle are kept current by WATCH; steady-state cycles make
no LIST; changes, resumes, bookmarks and 410 Gone.

Cycles are driven by hand (`snapshot_ttl: 0`, so every evaluation is a new cycle); waits
are bounded polls for the stand-in's events, never timed assertions."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.kubernetes.connection import KubernetesConnection, cluster_of
from exporter.probes.kubernetes.probe import KIND, evaluate
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import KubernetesCheck
from tests.probes.k8s_apiserver import FIXTURES, FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

TOKEN = "tok-WATCH-do-not-leak-3141"
NOW = 1.8e9


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(token=TOKEN, bookmark_interval=0.2)
    server.load_fixtures()
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def cluster(api: FakeApiServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  TOKEN)
    c = Cluster(KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig, context="test",
                                     snapshot_ttl=0, page_size=2))
    yield c
    await c.close()


def check(assertion: str, **kw: Any) -> KubernetesCheck:
    return KubernetesCheck.model_validate({"id": kw.pop("id", "7.3"), "section": "7",
                                           "title": "t", "kind": "kubernetes",
                                           "assert": assertion, **kw})


AVAILABLE = check("deployments_available", namespaces=["qbitel"],
                  workloads=["qbitel/ai-engine", "qbitel/worker"])


def deployment(name: str, namespace: str = "qbitel") -> dict[str, Any]:
    items = json.loads((FIXTURES / "deployments.json").read_text())["items"]
    found = next(i for i in items if i["metadata"]["name"] == name and
                 i["metadata"]["namespace"] == namespace)
    return copy.deepcopy(found)


def scaled_down(name: str) -> dict[str, Any]:
    obj = deployment(name)
    obj["status"]["availableReplicas"] = 0
    obj["status"]["readyReplicas"] = 0
    return obj


async def until(predicate: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    """Poll `predicate` every 50 ms, failing after `limit` seconds (a bound, not a claim)."""
    for _ in range(int(limit / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def steady(api: FakeApiServer, cluster: Cluster,
                 spec: KubernetesCheck = AVAILABLE) -> Outcome:
    """Two cycles: the first LISTs, the second hands the collections to WATCH; returns
    once every watch stream is open at the stand-in."""
    await evaluate(spec, cluster, NOW)
    outcome = await evaluate(spec, cluster, NOW)
    await until(lambda: _true(api.open_watches() == len(cluster.watched())))
    return outcome


async def test_steady_state_cycles_make_no_list(api: FakeApiServer, cluster: Cluster) -> None:
    spec = check("pdb_coverage")  # deployments, statefulsets and PDBs, cluster-wide
    first = await evaluate(spec, cluster, NOW)
    lists_first = len(api.list_requests())
    await steady(api, cluster, spec)
    assert len(cluster.watched()) == 3
    lists_before = len(api.list_requests())
    watches_before = len(api.watch_requests())
    outcomes = [await evaluate(spec, cluster, NOW) for _ in range(5)]
    assert len(api.list_requests()) == lists_before  # no LIST in steady state
    assert len(api.watch_requests()) == watches_before == 3  # one watch per collection
    assert lists_first > 0
    assert {o.status for o in outcomes} == {first.status}
    assert [o.message for o in outcomes] == [first.message] * 5


async def test_change_seen_through_the_watch(api: FakeApiServer, cluster: Cluster) -> None:
    assert (await steady(api, cluster)).status is Status.PASS
    lists = len(api.list_requests())
    api.put(scaled_down("ai-engine"))

    async def failing() -> bool:
        return (await evaluate(AVAILABLE, cluster, NOW)).status is Status.FAIL
    await until(failing)
    outcome = await evaluate(AVAILABLE, cluster, NOW)
    assert "qbitel/ai-engine" in outcome.message and "worker" not in outcome.message
    api.put(deployment("ai-engine"))  # recovered

    async def passing() -> bool:
        return (await evaluate(AVAILABLE, cluster, NOW)).status is Status.PASS
    await until(passing)
    api.delete("Deployment", "qbitel", "worker")

    async def deleted() -> bool:
        return (await evaluate(AVAILABLE, cluster, NOW)).status is not Status.PASS
    await until(deleted)
    assert len(api.list_requests()) == lists  # every change came through the watch


async def test_watch_resumes_from_the_last_resource_version(api: FakeApiServer,
                                                            cluster: Cluster) -> None:
    await steady(api, cluster)
    (watched,) = cluster.watched()
    api.put(deployment("worker"))  # a change, so the version moves on
    await until(lambda: _true(watched.events >= 1))
    seen = watched.resource_version
    lists = len(api.list_requests())
    api.break_watches()
    api.put(scaled_down("ai-engine"))  # made while no stream is open: replayed on resume

    async def resumed() -> bool:
        return len(api.watch_requests()) == 2
    await until(resumed)
    assert api.watch_requests()[-1].query["resourceVersion"] == seen
    assert api.watch_requests()[-1].query["allowWatchBookmarks"] == "true"

    async def failing() -> bool:
        return (await evaluate(AVAILABLE, cluster, NOW)).status is Status.FAIL
    await until(failing)
    assert len(api.list_requests()) == lists  # resumed, not re-listed


async def test_gone_relists_then_watches_again(api: FakeApiServer, cluster: Cluster) -> None:
    await steady(api, cluster)
    (watched,) = cluster.watched()
    lists = len(api.list_requests())
    api.expire_watches = 1  # the history the watch would resume from is gone
    api.break_watches()
    api.put(scaled_down("ai-engine"))

    async def relisted() -> bool:
        return watched.lists == 2 and len(api.watch_requests()) >= 3
    await until(relisted)
    assert len(api.list_requests()) > lists  # 410 Gone: listed again
    outcome = await evaluate(AVAILABLE, cluster, NOW)
    assert outcome.status is Status.FAIL and "qbitel/ai-engine" in outcome.message
    relisted_at = int(api.watch_requests()[-1].query["resourceVersion"])
    assert relisted_at > int(api.watch_requests()[0].query["resourceVersion"])


async def test_bookmarks_advance_the_resume_version(api: FakeApiServer,
                                                     cluster: Cluster) -> None:
    await steady(api, cluster)
    (watched,) = cluster.watched()
    before = watched.resource_version
    api.put({**deployment("istiod", "istio-system")})  # another namespace: not this watch
    await until(lambda: _true(watched.bookmarks > 0 and watched.resource_version != before))
    assert watched.events == watched.bookmarks  # nothing but bookmarks arrived
    assert int(watched.resource_version or 0) > int(before or 0)
    api.break_watches()
    await until(lambda: _true(len(api.watch_requests()) == 2))
    # resumed from the version a bookmark brought, not from the LIST's older one
    assert int(api.watch_requests()[-1].query["resourceVersion"]) > int(before or 0)


async def test_watch_forbidden_falls_back_to_a_list_per_cycle(
        api: FakeApiServer, cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    api.forbidden_watch.add("deployments")
    await evaluate(AVAILABLE, cluster, NOW)
    await evaluate(AVAILABLE, cluster, NOW)
    await until(lambda: _true(cluster.watched() == []))
    assert "WATCH refused" in caplog.text
    lists = len(api.list_requests())
    api.put(scaled_down("ai-engine"))
    outcome = await evaluate(AVAILABLE, cluster, NOW)
    assert outcome.status is Status.FAIL  # read by LIST, so seen at once
    assert len(api.list_requests()) > lists


async def test_a_refused_list_is_not_retried_in_the_background(api: FakeApiServer,
                                                                cluster: Cluster) -> None:
    await evaluate(AVAILABLE, cluster, NOW)  # listed and kept
    api.forbidden.add(("deployments", "qbitel"))  # RBAC changed: LIST now refused
    outcomes = [await evaluate(AVAILABLE, cluster, NOW) for _ in range(3)]
    await asyncio.sleep(0.5)  # a background retry loop would list again meanwhile
    assert all(o.status is Status.ERROR and o.reason is Reason.AUTH for o in outcomes)
    assert "list deployments.apps in namespace qbitel" in outcomes[0].message
    assert cluster.watched() == []
    refused = [r for r in api.list_requests() if r.status == 403]
    assert len(refused) == 3  # one per cycle, as without the watch cache


async def test_metadata_only_collections_are_watched_as_partial_metadata(
        api: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  TOKEN)
    cluster = Cluster(KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                           context="test", snapshot_ttl=0,
                                           secrets="metadata"))
    rollback = check("helm_rollback", id="8.1", namespaces=["qbitel"], releases=["qbitel"])
    try:
        before = await steady(api, cluster, rollback)
        (watched,) = cluster.watched()
        before_count = len(watched.objects)
        watch = api.watch_requests()[-1]
        assert "as=PartialObjectMetadata" in watch.accept
        assert watch.query["labelSelector"] == "owner=helm"
        secrets = json.loads((FIXTURES / "secrets.json").read_text())["items"]
        helm = [s for s in secrets if (s["metadata"].get("labels") or {}).get("name") ==
                "qbitel" and s["metadata"]["namespace"] == "qbitel"]
        for secret in helm:
            api.delete("Secret", "qbitel", secret["metadata"]["name"])
        await until(lambda: _true(len(watched.objects) == before_count - len(helm)))
        after = await evaluate(rollback, cluster, NOW)
    finally:
        await cluster.close()
    assert helm and before.status is Status.PASS, before.message
    assert after.status is not Status.PASS
    assert all("data" not in obj for obj in watched.objects.values())


async def test_one_shot_check_never_watches(api: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  TOKEN)
    cluster = Cluster(KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                           context="test"))  # the default snapshot_ttl
    specs = [check(a) for a in ("resource_limits", "hpa", "pdb_coverage", "anti_affinity",
                                "network_policies", "sidecar_injection")]
    try:
        outcomes = await asyncio.gather(*(evaluate(s, cluster, NOW) for s in specs))
    finally:
        await cluster.close()
    assert all(o.status is not Status.ERROR for o in outcomes)
    assert api.watch_requests() == []
    assert cluster.watched() == []
    lists = [(r.path, r.query.get("continue")) for r in api.list_requests()]
    assert len(lists) == len(set(lists))  # each page of each collection listed once


async def test_outage_is_an_error_not_a_stale_pass(api: FakeApiServer,
                                                   cluster: Cluster) -> None:
    assert (await steady(api, cluster)).status is Status.PASS
    port = api.port
    await api.stop()

    async def errored() -> bool:
        outcome = await evaluate(AVAILABLE, cluster, NOW)
        return outcome.status is Status.ERROR and outcome.reason is Reason.CONNECT
    await until(errored)
    await api.start(port)

    async def recovered() -> bool:
        return (await evaluate(AVAILABLE, cluster, NOW)).status is Status.PASS
    await until(recovered, limit=30)


async def test_the_runtime_owns_the_watches(api: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  TOKEN)
    connection = KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                      context="test", snapshot_ttl=0)
    ctx = RuntimeContext({"kubernetes": connection}, state_dir=tmp_path / "s")
    other = RuntimeContext({"kubernetes": connection}, state_dir=tmp_path / "o")
    try:
        for _ in range(3):
            assert (await KIND.run(AVAILABLE, ctx)).status is Status.PASS
        cluster = await cluster_of(ctx, "kubernetes")
        assert len(cluster.watched()) == 1
        assert (await cluster_of(other, "kubernetes")).watched() == []  # per runtime
        tasks = [w._task for w in cluster.watched()]
    finally:
        await ctx.aclose()
        await other.aclose()
    assert all(t is None or t.done() for t in tasks)  # stopped with the runtime
    assert cluster.watched() == []


async def _true(value: bool) -> bool:
    return value


def serve_config(kubeconfig: Path, state_dir: Path) -> Any:
    from exporter import config

    return config.build({
        "settings": {"first_round_spread": 0.1, "jitter": 0, "state_dir": str(state_dir)},
        "connections": {"kubernetes": {"kind": "kubernetes", "kubeconfig": str(kubeconfig),
                                       "context": "test", "page_size": 2}},
        "checks": [{"id": "7.3", "section": "7", "title": "t", "kind": "kubernetes",
                    "assert": "deployments_available", "namespaces": ["qbitel"],
                    "workloads": ["qbitel/ai-engine", "qbitel/worker"],
                    "interval": 3600}],
    }, "test", {})


async def test_a_running_serve_watches_from_its_first_list(api: FakeApiServer,
                                                          tmp_path: Path) -> None:
    """In `serve` the first cycle's LIST is the first sync: the WATCH starts from that
    LIST's resourceVersion, so the second cycle makes no LIST, and a change made between
    the LIST and the WATCH's start is still seen (the watch replays it)."""
    from exporter.daemon import Runtime

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  TOKEN)
    runtime = Runtime(serve_config(kubeconfig, tmp_path / "state"), None)
    assert runtime.ctx.repeats  # the daemon's runtime says its checks run again
    spec = runtime.config.checks[0]
    first = await KIND.run(spec, runtime.ctx)
    try:
        assert first.status is Status.PASS
        lists = api.list_requests()
        assert lists and {r.path for r in lists} == {"/apis/apps/v1/namespaces/qbitel/"
                                                      "deployments"}
        cluster = await cluster_of(runtime.ctx, "kubernetes")
        assert len(cluster.watched()) == 1
        api.put(scaled_down("ai-engine"))  # before or after the watch opened: either way

        async def failing() -> bool:
            return (await KIND.run(spec, runtime.ctx)).status is Status.FAIL
        await until(failing)
        await until(lambda: _true(api.open_watches() == 1))
        watches = api.watch_requests()
        assert len(watches) == 1
        assert cluster.watched()[0].lists == 1  # the first sync; no LIST since
        assert len(api.list_requests()) == len(lists)
        assert watches[0].query.get("resourceVersion")  # resumed from the LIST, not "now"
        for _ in range(3):
            assert (await KIND.run(spec, runtime.ctx)).status is Status.FAIL
        assert len(api.list_requests()) == len(lists)
    finally:
        await runtime.ctx.aclose()


async def test_a_one_shot_runtime_lists_once_and_does_not_watch(api: FakeApiServer,
                                                                tmp_path: Path) -> None:
    """`check`'s runtime (repeats False) reads each collection once, with no WATCH, even
    with the snapshot expired after every read."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  TOKEN)
    connection = KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                      context="test", page_size=2)
    ctx = RuntimeContext({"kubernetes": connection}, state_dir=tmp_path / "s")
    assert not ctx.repeats
    try:
        assert (await KIND.run(AVAILABLE, ctx)).status is Status.PASS
        assert (await cluster_of(ctx, "kubernetes")).watched() == []
    finally:
        await ctx.aclose()
    assert api.watch_requests() == []
    assert api.list_requests()
