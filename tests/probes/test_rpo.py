"""`rpo` kind against a real PostgreSQL that archives WAL and a real synchronous
receiver (pg_receivewal --synchronous), plus backup directories and drill records."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.context import RuntimeContext
from exporter.model import Status
from exporter.probes.backup.records import DrillRecord, DrillStore
from exporter.probes.backup.rpo import KIND, RpoCheck
from tests.probes.backup.support import pg_connection, set_mtime
from tests.probes.test_backup import backup_fragment
from tests.support.servers import PgCluster, pg_bin, pg_cluster


@pytest.fixture(scope="module")
def archiving() -> Iterator[PgCluster]:
    """A cluster with archive_mode on whose archive_command copies WAL to a directory."""
    archive = Path(tempfile.mkdtemp(prefix="readiness-wal-"))  # reachable by postgres
    archive.chmod(0o777)
    settings = {"archive_mode": "on", "wal_level": "replica",
                "archive_command": f"'cp %p {archive}/%f'"}
    with pg_cluster(settings) as cluster:
        cluster.psql("CREATE TABLE t AS SELECT 1 AS x; SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while cluster.psql("SELECT archived_count FROM pg_stat_archiver").strip() == "0":
            assert time.monotonic() < deadline, "WAL was not archived"
            time.sleep(0.1)
        yield cluster
    shutil.rmtree(archive, ignore_errors=True)


@pytest.fixture
async def pg_ctx(archiving: PgCluster, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    context = RuntimeContext({"primary": pg_connection(archiving)}, state_dir=tmp_path / "s")
    yield context
    await context.aclose()


def spec(**fields: Any) -> RpoCheck:
    return RpoCheck.model_validate({"id": "10.2-x", "item": "10.2", "section": "10.2",
                                    "title": "t", "kind": "rpo", "scenario": "database-failure",
                                    **fields})


def backup_dir(tmp_path: Path, age_s: float) -> dict[str, Any]:
    folder = tmp_path / "db"
    folder.mkdir(exist_ok=True)
    target = folder / f"db-{age_s}.dump"
    target.write_bytes(b"PGDMP" + b"\0" * 100)
    set_mtime(target, time.time() - age_s)
    return {"type": "backup", "name": "db-backups",
            "source": {"type": "directory", "path": str(folder)}}


def values(outcome: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(m.family, tuple(sorted(m.labels.items()))): m.value for m in outcome.measurements}


async def test_backup_recovery_point_within_and_beyond_target(tmp_path: Path,
                                                              ctx: RuntimeContext) -> None:
    check = spec(rpo_target="6h", sources=[backup_dir(tmp_path, 2 * 3600)])
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    got = values(outcome)
    scenario = (("scenario", "database-failure"),)
    assert got[("readiness_rpo_target_seconds", scenario)] == 6 * 3600
    assert abs(got[("readiness_rpo_seconds", scenario)] - 7200) < 5
    assert abs(got[("readiness_recovery_point_timestamp_seconds", scenario)]
               - (time.time() - 7200)) < 5
    tight = spec(rpo_target="1h", sources=[backup_dir(tmp_path, 2 * 3600)])
    outcome = await KIND.run(tight, ctx)
    assert outcome.status is Status.FAIL and "RPO 1h00m" in outcome.message


async def test_backup_in_progress_does_not_break_the_rpo(tmp_path: Path,
                                                         ctx: RuntimeContext) -> None:
    # every 6 h a backup starts; 6h20m after the last one completed, the next is running
    (tmp_path / "a").mkdir()
    running = [backup_dir(tmp_path / "a", 6 * 3600 + 20 * 60)]
    old_rule = await KIND.run(spec(rpo_target="6h", sources=running), ctx)
    assert old_rule.status is Status.FAIL  # red during every backup run
    allowed = await KIND.run(spec(rpo_target="6h", expected_duration="1h", sources=running),
                             ctx)
    assert allowed.status is Status.PASS, allowed.message
    (tmp_path / "b").mkdir()
    missed = [backup_dir(tmp_path / "b", 7 * 3600 + 10 * 60)]
    late = await KIND.run(spec(rpo_target="6h", expected_duration="1h", sources=missed), ctx)
    assert late.status is Status.FAIL
    assert "(RPO 6h00m + 1h00m expected backup duration)" in late.message


async def test_wal_archive_gives_a_newer_point_than_backups(tmp_path: Path,
                                                            pg_ctx: RuntimeContext) -> None:
    sources = [backup_dir(tmp_path, 10 * 3600), {"type": "wal_archive", "name": "wal"}]
    outcome = await KIND.run(spec(rpo_target="6h", connection="primary", sources=sources),
                             pg_ctx)
    assert outcome.status is Status.PASS, outcome.message
    got = values(outcome)
    wal = got[("readiness_recovery_point_source_timestamp_seconds",
               (("scenario", "database-failure"), ("source", "wal")))]
    assert time.time() - wal < 600
    assert got[("readiness_recovery_point_timestamp_seconds",
                (("scenario", "database-failure"),))] == wal
    only_backups = spec(rpo_target="6h", sources=sources[:1])
    outcome = await KIND.run(only_backups, pg_ctx)
    assert outcome.status is Status.FAIL


async def test_failing_archiver_is_reported(archiving: PgCluster,
                                            pg_ctx: RuntimeContext) -> None:
    archiving.psql("ALTER SYSTEM SET archive_command = 'false'")
    archiving.psql("SELECT pg_reload_conf()")
    try:
        archiving.psql("INSERT INTO t VALUES (2); SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while archiving.psql("SELECT failed_count FROM pg_stat_archiver").strip() == "0":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        check = spec(rpo_target="6h", connection="primary", sources=[{"type": "wal_archive"}])
        outcome = await KIND.run(check, pg_ctx)
        assert "WAL archiving is failing" in outcome.message
    finally:
        archiving.psql("ALTER SYSTEM RESET archive_command")
        archiving.psql("SELECT pg_reload_conf()")


async def test_rpo_zero_needs_a_streaming_synchronous_standby(
        archiving: PgCluster, pg_ctx: RuntimeContext, tmp_path: Path) -> None:
    check = spec(scenario="application-failure", rpo_target=0, connection="primary",
                 sources=[{"type": "sync_replication"}])
    outcome = await KIND.run(check, pg_ctx)
    assert outcome.status is Status.FAIL
    assert "0 synchronous standby(s) streaming" in outcome.message
    receiver_dir = tmp_path / "receiver"
    receiver_dir.mkdir()
    archiving.psql("ALTER SYSTEM SET synchronous_standby_names = 'pg_receivewal'")
    archiving.psql("SELECT pg_reload_conf()")
    receiver = subprocess.Popen(
        [pg_bin("pg_receivewal"), "-h", "127.0.0.1", "-p", str(archiving.port), "-U",
         "postgres", "-D", str(receiver_dir), "--synchronous", "-n"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while archiving.psql("SELECT count(*) FROM pg_stat_replication "
                             "WHERE sync_state = 'sync'").strip() != "1":
            assert time.monotonic() < deadline, "receiver never became synchronous"
            time.sleep(0.1)
        outcome = await KIND.run(check, pg_ctx)
        assert outcome.status is Status.PASS, outcome.message
        got = values(outcome)
        assert got[("readiness_rpo_seconds", (("scenario", "application-failure"),))] == 0
    finally:
        receiver.terminate()
        receiver.wait(10)
        archiving.psql("ALTER SYSTEM RESET synchronous_standby_names")
        archiving.psql("SELECT pg_reload_conf()")


async def test_preset_application_failure_is_enforced(archiving: PgCluster,
                                                      pg_ctx: RuntimeContext,
                                                      tmp_path: Path) -> None:
    """The preset's 10.2 application failure (RPO 0, RTO 5 min) runs and fails on a
    primary without a synchronous standby (it used to ship disabled: never judged)."""
    preset = next(c for c in backup_fragment().checks if c.id == "10.2-application-failure")
    assert preset.enabled
    records = tmp_path / "drills.jsonl"
    now = time.time()
    records.write_text(json.dumps({"scenario": "application-failure", "started": now - 400,
                                   "finished": now - 280, "success": True}) + "\n")
    check = preset.model_copy(update={"connection": "primary", "drill_records": records,
                                      "keyring": None})  # signing: test_signed_drills.py
    outcome = await KIND.run(check, pg_ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "0 synchronous standby(s) streaming (need 1)" in outcome.message


async def test_measured_rto_from_drill_records(tmp_path: Path, ctx: RuntimeContext) -> None:
    records = tmp_path / "drills.jsonl"
    now = time.time()
    records.write_text("\n".join([
        json.dumps({"scenario": "database-failure", "started": now - 4000,
                    "finished": now - 4000 + 1500, "success": True}),
        json.dumps({"scenario": "database-failure", "started": "2026-01-01T00:00:00Z",
                    "finished": "2026-01-01T00:10:00Z", "success": True}),
        "not json",
        json.dumps({"scenario": "other", "started": now, "finished": now, "success": True}),
    ]) + "\n")
    check = spec(rpo_target="6h", rto_target="30m", drill_records=str(records),
                 sources=[backup_dir(tmp_path, 60)])
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    got = values(outcome)
    scenario = (("scenario", "database-failure"),)
    assert got[("readiness_restore_drill_duration_seconds", scenario)] == 1500
    assert got[("readiness_rto_target_seconds", scenario)] == 1800
    slow = spec(rpo_target="6h", rto_target="20m", drill_records=str(records),
                sources=[backup_dir(tmp_path, 60)])
    outcome = await KIND.run(slow, ctx)
    assert outcome.status is Status.FAIL and "measured RTO 25m00s exceeds" in outcome.message


async def test_rto_from_an_old_drill_needs_max_drill_age(tmp_path: Path,
                                                         ctx: RuntimeContext) -> None:
    records = tmp_path / "drills.jsonl"
    now = time.time()
    records.write_text(json.dumps({"scenario": "database-failure", "started": now - 40 * 86400,
                                   "finished": now - 40 * 86400 + 900, "success": True})
                       + "\n")
    sources = [backup_dir(tmp_path, 60)]
    no_limit = spec(rpo_target="6h", rto_target="30m", drill_records=str(records),
                    sources=sources)
    assert (await KIND.run(no_limit, ctx)).status is Status.PASS  # the old rule
    limited = spec(rpo_target="6h", rto_target="30m", drill_records=str(records),
                   sources=sources, max_drill_age="30d")
    stale = await KIND.run(limited, ctx)
    assert stale.status is Status.FAIL
    assert "the drill that measured the RTO is 39d" in stale.message
    assert "(max_drill_age 30d" in stale.message
    with records.open("a") as handle:
        handle.write(json.dumps({"scenario": "database-failure", "started": now - 86400,
                                 "finished": now - 86400 + 1200, "success": True}) + "\n")
    fresh = await KIND.run(limited, ctx)
    assert fresh.status is Status.PASS, fresh.message
    assert "measured RTO 20m00s" in fresh.message


async def test_rto_from_the_exporters_own_drill_store(tmp_path: Path,
                                                      ctx: RuntimeContext) -> None:
    check = spec(rpo_target="6h", rto_target="30m", sources=[backup_dir(tmp_path, 60)])
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.FAIL and "no successful drill" in outcome.message
    DrillStore(ctx.state_dir).append(DrillRecord("database-failure", time.time() - 100,
                                                 time.time() - 40, True))
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message


async def test_unreachable_database_is_an_error(tmp_path: Path, archiving: PgCluster) -> None:
    conn = pg_connection(archiving).model_copy(update={"port": 1})
    context = RuntimeContext({"primary": conn}, state_dir=tmp_path)
    try:
        outcome = await KIND.run(spec(rpo_target="6h", connection="primary",
                                      sources=[{"type": "wal_archive"}]), context)
    except OSError:
        pytest.fail("connection errors must become an outcome")
    finally:
        await context.aclose()
    assert outcome.status is Status.ERROR and outcome.reason is not None
    assert outcome.reason.value == "connect"
