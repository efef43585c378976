"""`restore_drill` run mode with `lease:`: two replicas (two RuntimeContexts) share one
fake Kubernetes API server holding a real coordination.k8s.io/v1 Lease object; drills
restore a real pg_dump into a real throw-away PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.context import RuntimeContext
from exporter.model import Outcome, Status
from exporter.probes.backup import drill, lease
from exporter.probes.backup.drill import KIND, RestoreDrillCheck
from exporter.probes.kubernetes.connection import KubernetesConnection, cluster_of
from tests.probes.backup.support import pg_connection, pg_dump
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import PgCluster, free_port, pg_cluster

TOKEN = "lease-token-never-shown-5d2a9f"
NAMESPACE = "readiness"
LEASE = "readiness-restore-drill-db-failure"


@dataclass
class Env:
    server: PgCluster
    dump: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One PostgreSQL: the source of a small custom-format dump and the drill server."""
    with pg_cluster() as server:
        server.psql("CREATE DATABASE appdb")
        server.psql("CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 500) g",
                    "appdb")
        root = tmp_path_factory.mktemp("lease-dumps")
        yield Env(server, pg_dump(server, "appdb", root / "db.dump", "c"))


@dataclass
class Replicas:
    api: FakeApiServer
    a: RuntimeContext
    b: RuntimeContext
    backups: Path


@pytest.fixture
async def replicas(env: Env, tmp_path: Path) -> AsyncIterator[Replicas]:
    api = FakeApiServer(token=TOKEN)
    url = await api.start(free_port())
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, TOKEN)
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "db.dump").write_bytes(env.dump.read_bytes())

    def replica(name: str) -> RuntimeContext:
        return RuntimeContext({
            "drill": pg_connection(env.server),
            "k8s": KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                        context="test"),
        }, state_dir=tmp_path / name)

    a, b = replica("a"), replica("b")
    yield Replicas(api, a, b, backups)
    await drill.cancel_all()
    await a.aclose()
    await b.aclose()
    await api.stop()


def spec(backups: Path, **lease_fields: Any) -> RestoreDrillCheck:
    return RestoreDrillCheck.model_validate({
        "id": "10.3.1", "section": "10.3", "title": "t", "kind": "restore_drill",
        "mode": "run", "scenario": "db_failure", "connection": "drill",
        "source": {"type": "directory", "path": str(backups)},
        "verify": {"tables": ["customers"], "min_rows": {"customers": 500}},
        "lease": {"connection": "k8s", "namespace": NAMESPACE, **lease_fields}})


async def run_as(host: str, check: RestoreDrillCheck, ctx: RuntimeContext,
                 monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """One check run on a replica whose pod name is `host`."""
    monkeypatch.setenv("HOSTNAME", host)
    return await KIND.run(check, ctx)


async def until(check: RestoreDrillCheck, ctx: RuntimeContext,
                done: Callable[[Outcome], bool], timeout: float) -> tuple[Outcome, list[Outcome]]:
    """Run the check every 0.25 s until `done(outcome)`; all outcomes before it too."""
    seen: list[Outcome] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = await KIND.run(check, ctx)
        if done(outcome):
            return outcome, seen
        seen.append(outcome)
        await asyncio.sleep(0.25)
    raise AssertionError(f"not reached in {timeout}s: {[o.message for o in seen[-3:]]}")


def holder(api: FakeApiServer) -> str | None:
    found: str | None = api.leases[(NAMESPACE, LEASE)]["spec"].get("holderIdentity")
    return found


def assert_no_secret(outcomes: list[Outcome], caplog: pytest.LogCaptureFixture) -> None:
    for outcome in outcomes:
        assert TOKEN not in outcome.message
        assert all(TOKEN not in str(m.labels) for m in outcome.measurements)
    assert all(TOKEN not in r.getMessage() and TOKEN not in str(r.__dict__)
               for r in caplog.records)


async def test_only_the_holder_drills_and_a_clean_stop_hands_over(
        replicas: Replicas, env: Env, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    check = spec(replicas.backups, duration="10s")
    first_a = await run_as("replica-a", check, replicas.a, monkeypatch)
    first_b = await run_as("replica-b", check, replicas.b, monkeypatch)
    assert first_a.status is Status.FAIL and "drill running" in first_a.message
    assert first_b.status is Status.SKIPPED
    assert first_b.message == f"drill runs on replica-a (lease {NAMESPACE}/{LEASE})"
    assert holder(replicas.api) == "replica-a"
    assert replicas.api.leases[(NAMESPACE, LEASE)]["spec"]["leaseDurationSeconds"] == 10
    task = drill.running_drill(replicas.a.state_dir, "db_failure")
    assert task is not None
    assert drill.running_drill(replicas.b.state_dir, "db_failure") is None
    record = await task
    assert record.success, record.detail
    after_a = await KIND.run(check, replicas.a)
    after_b = await KIND.run(check, replicas.b)
    assert after_a.status is Status.PASS, after_a.message
    assert after_b.status is Status.SKIPPED and "replica-a" in after_b.message
    assert drill.running_drill(replicas.b.state_dir, "db_failure") is None
    assert not (replicas.b.state_dir / "restore-drills.jsonl").exists()

    # A stops cleanly: the lease is released at once, B takes it long before 10 s.
    elector_a = lease.current(str(replicas.a.state_dir), "db_failure")
    assert elector_a is not None
    stopped = time.monotonic()
    await elector_a.stop()
    assert holder(replicas.api) is None
    taken, waiting = await until(check, replicas.b,
                                 lambda o: o.status is not Status.SKIPPED, timeout=6)
    assert time.monotonic() - stopped < 6
    assert holder(replicas.api) == "replica-b"
    task_b = drill.running_drill(replicas.b.state_dir, "db_failure")
    assert task_b is not None, taken.message
    assert (await task_b).success
    final_b = await KIND.run(check, replicas.b)
    assert final_b.status is Status.PASS, final_b.message
    leftovers = env.server.psql("SELECT count(*) FROM pg_database WHERE datname LIKE "
                                "'readiness_drill_%'")
    assert leftovers.strip() == "0"
    assert_no_secret([first_a, first_b, after_a, after_b, taken, final_b, *waiting], caplog)


async def test_a_crashed_holder_is_replaced_after_the_lease_expires(
        replicas: Replicas, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    check = spec(replicas.backups, duration="3s", name=LEASE)
    await run_as("replica-a", check, replicas.a, monkeypatch)
    task = drill.running_drill(replicas.a.state_dir, "db_failure")
    assert task is not None
    assert (await task).success
    before = await run_as("replica-b", check, replicas.b, monkeypatch)
    assert before.status is Status.SKIPPED and "replica-a" in before.message
    # A renews: for longer than the lease duration B still sees A as the holder.
    renewed = replicas.api.leases[(NAMESPACE, LEASE)]["metadata"]["resourceVersion"]
    for _ in range(8):
        await asyncio.sleep(0.5)
        outcome = await KIND.run(check, replicas.b)
        assert outcome.message == f"drill runs on replica-a (lease {NAMESPACE}/{LEASE})"
    assert replicas.api.leases[(NAMESPACE, LEASE)]["metadata"]["resourceVersion"] != renewed

    # A dies without releasing: B keeps reporting A until 3 s without renewals pass.
    elector_a = lease.current(str(replicas.a.state_dir), "db_failure")
    assert elector_a is not None
    crashed = time.monotonic()
    await elector_a.stop(release=False)
    taken, waiting = await until(check, replicas.b,
                                 lambda o: o.status is not Status.SKIPPED, timeout=10)
    elapsed = time.monotonic() - crashed
    assert 2.0 <= elapsed <= 8, elapsed
    assert waiting and all("drill runs on replica-a" in o.message for o in waiting)
    assert holder(replicas.api) == "replica-b"
    task_b = drill.running_drill(replicas.b.state_dir, "db_failure")
    assert task_b is not None, taken.message
    assert (await task_b).success
    assert_no_secret([before, taken, *waiting], caplog)


async def test_racing_replicas_elect_exactly_one(
        replicas: Replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    # a released lease (no holder) that both replicas try to take at the same moment
    replicas.api.leases[(NAMESPACE, LEASE)] = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NAMESPACE, "resourceVersion": "7"},
        "spec": {"leaseDurationSeconds": 1}}
    check = spec(replicas.backups, duration="30s")
    for ctx in (replicas.a, replicas.b):  # open the clients first: both start together
        await (await cluster_of(ctx, "k8s")).client()
    monkeypatch.setenv("HOSTNAME", "replica-a")
    async def run_a() -> Outcome:
        return await KIND.run(check, replicas.a)

    first = asyncio.create_task(run_a())
    await asyncio.sleep(0)
    monkeypatch.setenv("HOSTNAME", "replica-b")
    outcomes = await asyncio.gather(first, KIND.run(check, replicas.b))
    leaders = [o for o in outcomes if o.status is not Status.SKIPPED]
    assert len(leaders) == 1, [o.message for o in outcomes]
    winner = "replica-a" if outcomes[0] is leaders[0] else "replica-b"
    assert holder(replicas.api) == winner
    loser = next(o for o in outcomes if o.status is Status.SKIPPED)
    # the loser's write was refused (409); it names the holder once it has read it again
    assert loser.message in (f"waiting for lease {NAMESPACE}/{LEASE}",
                             f"drill runs on {winner} (lease {NAMESPACE}/{LEASE})")
    loser_ctx = replicas.b if winner == "replica-a" else replicas.a
    named, _ = await until(check, loser_ctx, lambda o: winner in o.message, timeout=5)
    assert named.status is Status.SKIPPED
    tasks = [drill.running_drill(c.state_dir, "db_failure") for c in (replicas.a, replicas.b)]
    assert sum(t is not None for t in tasks) == 1


async def test_fake_lease_endpoint_refuses_a_stale_resource_version(
        replicas: Replicas) -> None:
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio.client.exceptions import ApiException

    from exporter.probes.kubernetes.connection import api_client

    coordination = k8s.CoordinationV1Api(await api_client(await replicas.a.connection("k8s")))
    body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="x"),
                       spec=k8s.V1LeaseSpec(holder_identity="one"))
    await coordination.create_namespaced_lease(NAMESPACE, body)
    with pytest.raises(ApiException) as exists:
        await coordination.create_namespaced_lease(NAMESPACE, body)
    assert exists.value.status == 409
    stale = await coordination.read_namespaced_lease("x", NAMESPACE)
    fresh = await coordination.read_namespaced_lease("x", NAMESPACE)
    fresh.spec.holder_identity = "two"
    await coordination.replace_namespaced_lease("x", NAMESPACE, fresh)
    stale.spec.holder_identity = "three"
    with pytest.raises(ApiException) as conflict:
        await coordination.replace_namespaced_lease("x", NAMESPACE, stale)
    assert conflict.value.status == 409
    assert (await coordination.read_namespaced_lease("x", NAMESPACE)).spec.holder_identity \
        == "two"


async def test_losing_the_lease_cancels_a_running_drill(
        replicas: Replicas, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    (replicas.backups / "db.dump").unlink()
    (replicas.backups / "slow.sql").write_text(
        "-- PostgreSQL database dump\nCREATE TABLE slow (x int);\nSELECT pg_sleep(60);\n")
    check = spec(replicas.backups, duration="3s")
    await run_as("replica-a", check, replicas.a, monkeypatch)
    task = drill.running_drill(replicas.a.state_dir, "db_failure")
    assert task is not None
    replicas.api.forbidden_lease_verbs = {"update"}  # renewals now fail
    started = time.monotonic()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), timeout=10)
    assert task.cancelled()
    assert time.monotonic() - started < 5  # renew deadline 2 s + a retry
    outcome = await KIND.run(check, replicas.a)
    assert outcome.status is Status.ERROR
    assert "missing RBAC permission to update leases.coordination.k8s.io" in outcome.message
    records = (replicas.a.state_dir / "restore-drills.jsonl").read_text()
    assert "cancelled" in records
    leftovers = env.server.psql("SELECT count(*) FROM pg_database WHERE datname LIKE "
                                "'readiness_drill_%'")
    assert leftovers.strip() == "0"


@pytest.mark.parametrize("verb", ["get", "create"])
async def test_forbidden_lease_is_an_auth_error_naming_the_permission(
        replicas: Replicas, verb: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    replicas.api.forbidden_lease_verbs = {verb}
    check = spec(replicas.backups)
    outcome = await run_as("replica-a", check, replicas.a, monkeypatch)
    assert outcome.status is Status.ERROR
    assert outcome.reason == "auth" or getattr(outcome.reason, "value", None) == "auth"
    assert f"missing RBAC permission to {verb} leases.coordination.k8s.io in namespace " \
        f"{NAMESPACE}" in outcome.message
    assert drill.running_drill(replicas.a.state_dir, "db_failure") is None
    assert replicas.api.leases == {}
    assert_no_secret([outcome], caplog)


async def test_unknown_lease_connection_is_a_config_error(
        replicas: Replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    check = spec(replicas.backups, connection="drill")
    outcome = await run_as("replica-a", check, replicas.a, monkeypatch)
    assert outcome.status is Status.ERROR and "not a kubernetes connection" in outcome.message


def test_lease_options_are_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    monkeypatch.setenv("HOSTNAME", "exporter-7d9c-x2")
    assert lease.identity() == "exporter-7d9c-x2"
    monkeypatch.delenv("HOSTNAME")
    assert lease.identity() == socket.gethostname()
    assert lease.DrillLease(connection="k", namespace="n").lease_name("A_b.c") == \
        "readiness-restore-drill-a-b.c"
    assert spec(tmp_path).lease is not None
    assert spec(tmp_path).lease.lease_name("db_failure") == LEASE  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="whole seconds"):
        spec(tmp_path, duration="4.5s")
    with pytest.raises(ValidationError, match="greater than or equal to 3"):
        spec(tmp_path, duration="1s")
    with pytest.raises(ValidationError, match="extra"):
        spec(tmp_path, renew="5s")
    with pytest.raises(ValidationError, match="lease applies to run mode only"):
        RestoreDrillCheck.model_validate({
            "id": "x", "section": "10.3", "title": "t", "kind": "restore_drill",
            "scenario": "s", "records_file": str(tmp_path / "r.jsonl"),
            "lease": {"connection": "k8s", "namespace": NAMESPACE}})
