"""`postgres` archiving section: one cluster archiving to a directory, one whose
archive_command fails (PITR readiness, 3.1.5)."""

from __future__ import annotations

import asyncio
import os
import shutil
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
from tests.support.servers import PgCluster, pg_cluster


def switch_wal(cluster: PgCluster, rounds: int = 1) -> None:
    for _ in range(rounds):
        cluster.psql("CREATE TABLE IF NOT EXISTS filler (x int); INSERT INTO filler VALUES (1);"
                     " SELECT pg_switch_wal()")


def wait_archiver(cluster: PgCluster, column: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(cluster.psql(f"SELECT {column} FROM pg_stat_archiver").strip()) > 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"pg_stat_archiver.{column} stayed 0")


@pytest.fixture(scope="module")
def archiving() -> Iterator[tuple[PgCluster, Path]]:
    target = Path(tempfile.mkdtemp(prefix="readiness-wal-"))
    os.chmod(target, 0o777)
    settings = {"archive_mode": "on", "archive_command": f"'cp %p {target}/%f'"}
    try:
        with pg_cluster(settings) as cluster:
            cluster.psql("CREATE ROLE monitor LOGIN IN ROLE pg_monitor")
            switch_wal(cluster)
            wait_archiver(cluster, "archived_count")
            yield cluster, target
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="module")
def failing() -> Iterator[PgCluster]:
    with pg_cluster({"archive_mode": "on", "archive_command": "'false'"}) as cluster:
        cluster.psql("CREATE ROLE monitor LOGIN IN ROLE pg_monitor")
        switch_wal(cluster, rounds=2)
        wait_archiver(cluster, "failed_count")
        yield cluster


@pytest.fixture
async def make_ctx(tmp_path: Path) -> AsyncIterator[Callable[..., RuntimeContext]]:
    made: list[RuntimeContext] = []

    def factory(port: int, user: str = "monitor") -> RuntimeContext:
        conn = PostgresConnection.model_validate({"kind": "postgres", "port": port,
                                                  "user": user})
        context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
        made.append(context)
        return context

    yield factory
    for context in made:
        await context.aclose()


def check(**archiving: Any) -> probe.PostgresCheck:
    return probe.PostgresCheck.model_validate(
        {"id": "3.1.5-archiving", "item": "3.1.5", "section": "3.1", "title": "archiving",
         "kind": "postgres", "connection": "db", "archiving": archiving})


def one(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in outcome.measurements
             if m.family == family and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, outcome.measurements)
    return found[0]


def has(outcome: Outcome, family: str) -> bool:
    return any(m.family == family for m in outcome.measurements)


async def test_healthy_archiving_passes(archiving: tuple[PgCluster, Path],
                                        make_ctx: Any) -> None:
    cluster, target = archiving
    outcome = await probe.run(check(max_ready_files=5, max_archive_age="1h"),
                              make_ctx(cluster.port))
    assert outcome.status is Status.PASS, outcome.message
    assert one(outcome, "readiness_postgres_archive_mode_info", mode="on") == 1
    assert one(outcome, "readiness_postgres_wal_level_info", level="replica") == 1
    assert one(outcome, "readiness_postgres_archive_archived_total") >= 1
    archived_at = one(outcome, "readiness_postgres_archive_last_archived_timestamp_seconds")
    assert abs(archived_at - time.time()) < 300
    assert not has(outcome, "readiness_postgres_archive_last_failed_timestamp_seconds")
    assert any(target.iterdir())  # the WAL really is in the archive directory


async def test_stale_archive_fails_on_age(archiving: tuple[PgCluster, Path],
                                          make_ctx: Any) -> None:
    cluster, _ = archiving
    await asyncio.sleep(1.1)
    outcome = await probe.run(check(max_archive_age="1s"), make_ctx(cluster.port))
    assert outcome.status is Status.FAIL
    assert "last WAL archived" in outcome.message


async def test_failing_archive_command_fails_with_backlog(failing: PgCluster,
                                                          make_ctx: Any) -> None:
    outcome = await probe.run(check(max_ready_files=100), make_ctx(failing.port))
    assert outcome.status is Status.FAIL
    assert "failure newer than last success" in outcome.message
    assert one(outcome, "readiness_postgres_archive_failed_total") >= 1
    assert one(outcome, "readiness_postgres_archive_archived_total") == 0
    failed_at = one(outcome, "readiness_postgres_archive_last_failed_timestamp_seconds")
    assert abs(failed_at - time.time()) < 300
    assert not has(outcome, "readiness_postgres_archive_last_archived_timestamp_seconds")
    assert one(outcome, "readiness_postgres_archive_ready_files") >= 1


async def test_backlog_threshold(failing: PgCluster, make_ctx: Any) -> None:
    outcome = await probe.run(check(max_ready_files=0), make_ctx(failing.port))
    assert outcome.status is Status.FAIL
    assert "WAL files waiting to be archived" in outcome.message
