"""`postgres` replication section: a real primary with a streaming replica (pg_basebackup)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.context import RuntimeContext
from exporter.model import Outcome, Status
from exporter.probes.postgres import probe
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, free_port, pg_bin, pg_cluster


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def make_replica(primary: PgCluster, name: str) -> PgCluster:
    """A streaming replica of `primary` made with pg_basebackup, started on a free port."""
    root = Path(tempfile.mkdtemp(prefix="readiness-pgrep-"))
    os.chmod(root, 0o777)
    datadir = root / "data"
    subprocess.run(
        _as_postgres([pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                      "-U", "postgres", "-D", str(datadir), "-X", "stream", "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )
    port = free_port()
    conninfo = f"host=127.0.0.1 port={primary.port} user=postgres application_name={name}"
    with open(datadir / "postgresql.conf", "a", encoding="utf-8") as handle:
        handle.write(f"port = {port}\nunix_socket_directories = '{root}'\n"
                     f"primary_conninfo = '{conninfo}'\nwal_receiver_status_interval = 1s\n"
                     "wal_retrieve_retry_interval = 200ms\n")
    (datadir / "standby.signal").touch()
    if os.geteuid() == 0:
        subprocess.run(["chown", "postgres", str(datadir / "standby.signal")], check=True)
    replica = PgCluster(port=port, datadir=datadir, root=root)
    replica.start()
    return replica


def wait_streaming(primary: PgCluster, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        if int(seen.strip()) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError("replica did not start streaming")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[PgCluster, PgCluster]]:
    with pg_cluster() as primary:
        replica = make_replica(primary, "replica1")
        try:
            wait_streaming(primary, 1)
            yield primary, replica
        finally:
            replica.stop("immediate")
            shutil.rmtree(replica.root, ignore_errors=True)


@pytest.fixture
async def make_ctx(tmp_path: Path) -> AsyncIterator[Callable[..., RuntimeContext]]:
    made: list[RuntimeContext] = []

    def factory(port: int) -> RuntimeContext:
        conn = PostgresConnection.model_validate({"kind": "postgres", "port": port,
                                                  "connect_timeout": 2})
        context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
        made.append(context)
        return context

    yield factory
    for context in made:
        await context.aclose()


def check(**replication: Any) -> probe.PostgresCheck:
    return probe.PostgresCheck.model_validate(
        {"id": "3.1.3", "section": "3.1", "title": "replicas", "kind": "postgres",
         "connection": "db", "replication": replication})


def values(outcome: Outcome, family: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(m.labels), m.value) for m in outcome.measurements if m.family == family]


async def test_primary_counts_streaming_replica_and_lag(pair: tuple[PgCluster, PgCluster],
                                                        make_ctx: Any) -> None:
    primary, _ = pair
    ctx = make_ctx(primary.port)
    outcome = await probe.run(check(min_replicas=1, max_replay_lag=30), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert values(outcome, "readiness_postgres_replicas_streaming") == [({}, 1.0)]
    assert values(outcome, "readiness_postgres_in_recovery") == [({}, 0.0)]
    lags = values(outcome, "readiness_postgres_replica_replay_lag_seconds")
    assert [labels for labels, _ in lags] == [{"application_name": "replica1"}]
    assert 0 <= lags[0][1] < 30


async def test_primary_with_too_few_replicas_fails(pair: tuple[PgCluster, PgCluster],
                                                   make_ctx: Any) -> None:
    primary, _ = pair
    outcome = await probe.run(check(min_replicas=2), make_ctx(primary.port))
    assert outcome.status is Status.FAIL
    assert "1 streaming replicas, need 2" in outcome.message
    assert values(outcome, "readiness_postgres_replicas_min") == [({}, 2.0)]


async def test_replica_reports_streaming_and_replay(pair: tuple[PgCluster, PgCluster],
                                                    make_ctx: Any) -> None:
    primary, replica = pair
    primary.psql("CREATE TABLE IF NOT EXISTS beat (t timestamptz); "
                 "INSERT INTO beat VALUES (now())")
    ctx = make_ctx(replica.port)
    outcome = await probe.run(check(max_replay_lag=60), ctx)
    for _ in range(50):  # the insert reaches the replica asynchronously
        if values(outcome, "readiness_postgres_last_replay_timestamp_seconds"):
            break
        await asyncio.sleep(0.1)
        outcome = await probe.run(check(max_replay_lag=60), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert values(outcome, "readiness_postgres_in_recovery") == [({}, 1.0)]
    assert values(outcome, "readiness_postgres_wal_receiver_streaming") == [({}, 1.0)]
    replayed = values(outcome, "readiness_postgres_last_replay_timestamp_seconds")
    assert replayed and abs(replayed[0][1] - time.time()) < 120
    assert values(outcome, "readiness_postgres_replay_lag_seconds")[0][1] < 60


async def test_expected_role_mismatch_fails(pair: tuple[PgCluster, PgCluster],
                                            make_ctx: Any) -> None:
    _, replica = pair
    outcome = await probe.run(check(role="primary"), make_ctx(replica.port))
    assert outcome.status is Status.FAIL
    assert "server is a replica, expected primary" in outcome.message


async def test_broken_stream_is_a_failure_then_recovers(pair: tuple[PgCluster, PgCluster],
                                                        make_ctx: Any) -> None:
    primary, replica = pair
    ctx = make_ctx(replica.port)
    primary.stop()
    try:
        outcome = await probe.run(check(max_replay_lag=3600), ctx)
        for _ in range(50):  # the WAL receiver notices the lost primary
            if outcome.status is Status.FAIL:
                break
            await asyncio.sleep(0.1)
            outcome = await probe.run(check(max_replay_lag=3600), ctx)
        assert outcome.status is Status.FAIL, outcome.message
        assert "not streaming" in outcome.message
        assert values(outcome, "readiness_postgres_wal_receiver_streaming") == [({}, 0.0)]
    finally:
        primary.start()
    wait_streaming(primary, 1)
    for _ in range(50):
        outcome = await probe.run(check(max_replay_lag=3600), ctx)
        if outcome.status is Status.PASS:
            break
        await asyncio.sleep(0.1)
    assert outcome.status is Status.PASS, outcome.message
