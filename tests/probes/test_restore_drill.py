"""`restore_drill` kind: real restore drills from real pg_dump / age backups into a real
scratch server, plus drill records from JSON lines and from a PostgreSQL table."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exporter.context import RuntimeContext
from exporter.model import Outcome, Status
from exporter.probes.backup import drill, restore
from exporter.probes.backup.drill import KIND, RestoreDrillCheck
from exporter.probes.backup.records import DrillStore
from tests.probes.backup.support import age_encrypt, age_keypair, pg_connection, pg_dump
from tests.support.servers import PgCluster, pg_cluster

DRILL_PASSWORD = "drill-password-never-shown-7c1e"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    source: PgCluster
    target: PgCluster
    dumps: dict[str, Path]
    age_key: Path
    age_secret: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A production-like source with data, its dumps, and a scratch server for drills."""
    hba = ["host all drilluser 127.0.0.1/32 scram-sha-256"]
    with pg_cluster() as source, pg_cluster(hba_extra=hba) as target:
        source.psql("CREATE DATABASE appdb")
        source.psql("CREATE TABLE customers AS SELECT g AS id, md5(g::text) AS name "
                    "FROM generate_series(1, 2000) g; "
                    "CREATE TABLE orders AS SELECT g AS id, g % 2000 + 1 AS customer "
                    "FROM generate_series(1, 5000) g", "appdb")
        target.psql(f"CREATE ROLE drilluser LOGIN CREATEDB PASSWORD '{DRILL_PASSWORD}'")
        root = tmp_path_factory.mktemp("drill-dumps")
        dumps = {"custom": pg_dump(source, "appdb", root / "db.dump", "c"),
                 "plain": pg_dump(source, "appdb", root / "db.sql", "p"),
                 "directory": pg_dump(source, "appdb", root / "db.dir", "d")}
        key, recipient, secret = age_keypair(root)
        (root / "other").mkdir()
        dumps["age-custom"] = age_encrypt(dumps["custom"], recipient, root / "db.dump.age")
        dumps["age-plain"] = age_encrypt(dumps["plain"], recipient, root / "db.sql.age")
        dumps["gzip-plain"] = root / "db.sql.gz"
        dumps["gzip-plain"].write_bytes(gzip.compress(dumps["plain"].read_bytes()))
        dumps["age-gzip-plain"] = age_encrypt(dumps["gzip-plain"], recipient,
                                              root / "db.sql.gz.age")
        _other_key, other_recipient, _ = age_keypair(root / "other")
        dumps["age-other-key"] = age_encrypt(dumps["custom"], other_recipient,
                                             root / "other.dump.age")
        corrupt = dumps["custom"].read_bytes()
        dumps["corrupt"] = root / "corrupt.dump"
        dumps["corrupt"].write_bytes(corrupt[: len(corrupt) // 2])
        dumps["slow"] = root / "slow.sql"
        dumps["slow"].write_text("-- PostgreSQL database dump\nCREATE TABLE slow (x int);\n"
                                 "SELECT pg_sleep(60);\n")
        yield Env(source, target, dumps, key, secret)


@pytest.fixture
async def ctx(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[RuntimeContext]:
    monkeypatch.setenv("DRILL_DB_PASSWORD", DRILL_PASSWORD)
    context = RuntimeContext({
        "drill": pg_connection(env.target, user="drilluser", password_env="DRILL_DB_PASSWORD"),
        "prod": pg_connection(env.source, database="appdb"),
        "drill-admin": pg_connection(env.target),
    }, state_dir=tmp_path / "state")
    yield context
    await drill.cancel_all()
    await context.aclose()


def backup_dir(tmp_path: Path, dump: Path, name: str | None = None) -> dict[str, Any]:
    folder = tmp_path / "backups"
    folder.mkdir(exist_ok=True)
    target = folder / (name or dump.name)
    if dump.is_dir():
        os.symlink(dump, target)
        return {"type": "directory", "path": str(folder), "directories": True}
    target.write_bytes(dump.read_bytes())
    return {"type": "directory", "path": str(folder)}


def spec(**fields: Any) -> RestoreDrillCheck:
    base = {"id": "10.3.1", "section": "10.3", "title": "t", "kind": "restore_drill",
            "mode": "run", "connection": "drill", "rto_target": "30m",
            "verify": {"tables": ["public.customers", "orders"],
                       "min_rows": {"customers": 2000},
                       "queries": ["SELECT count(*) = 5000 FROM orders"]}}
    return RestoreDrillCheck.model_validate({**base, **fields})


async def drill_once(check: RestoreDrillCheck, ctx: RuntimeContext) -> Outcome:
    """Run the check (which starts the drill), wait for the drill, report again."""
    first = await KIND.run(check, ctx)
    task = drill.running_drill(ctx.state_dir, check.scenario)
    assert task is not None, first.message
    await task
    return await KIND.run(check, ctx)


def scratch_dbs(env: Env) -> list[str]:
    out = env.target.psql("SELECT datname FROM pg_database WHERE datname LIKE "
                          "'readiness_drill_%'")
    return out.split()


def metric(outcome: Outcome, family: str, **labels: str) -> float:
    for m in outcome.measurements:
        if m.family == family and all(m.labels.get(k) == v for k, v in labels.items()):
            return m.value
    raise KeyError(family)


def assert_no_secret(outcome: Outcome, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    texts = [outcome.message, *(str(m.labels) for m in outcome.measurements)]
    texts += [r.getMessage() + str(r.__dict__) for r in caplog.records]
    for secret in secrets:
        assert not any(secret in text for text in texts)


async def test_drill_passes_and_survives_a_restart(env: Env, ctx: RuntimeContext, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    check = spec(scenario="database-failure", source=backup_dir(tmp_path, env.dumps["custom"]))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    duration = metric(outcome, "readiness_restore_drill_duration_seconds")
    assert 0 < duration < 60
    assert metric(outcome, "readiness_rto_target_seconds", scenario="database-failure") == 1800
    assert time.time() - metric(
        outcome, "readiness_restore_drill_last_success_timestamp_seconds") < 60
    assert metric(outcome, "readiness_restore_drill_phase", phase="idle") == 1
    assert scratch_dbs(env) == []
    assert any(r.getMessage() == "restore drill phase" and getattr(r, "phase", "") == "verify"
               for r in caplog.records)
    assert_no_secret(outcome, caplog, DRILL_PASSWORD)

    # the exporter restarts: a new context over the same state_dir still reports it
    restarted = RuntimeContext({"drill": pg_connection(env.target, user="drilluser",
                                                       password_env="DRILL_DB_PASSWORD")},
                               state_dir=ctx.state_dir)
    try:
        again = await KIND.run(check, restarted)
    finally:
        await restarted.aclose()
    assert again.status is Status.PASS, again.message
    assert drill.running_drill(ctx.state_dir, "database-failure").done()  # type: ignore[union-attr]
    assert metric(again, "readiness_restore_drill_duration_seconds") == duration
    assert len(DrillStore(ctx.state_dir).read("database-failure")) == 1


async def test_directory_format_with_parallel_jobs(env: Env, ctx: RuntimeContext,
                                                   tmp_path: Path) -> None:
    check = spec(scenario="dir-format", jobs=2,
                 source=backup_dir(tmp_path, env.dumps["directory"], "db-dir"))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.PASS, outcome.message


async def test_peeking_at_a_large_stream_does_not_hang(env: Env, tmp_path: Path) -> None:
    """Reading the first bytes of a large decrypted stream stops and reaps `age`.

    (Regression: a killed stage whose unread output filled our pipe was never reaped.)
    """
    plain = tmp_path / "big.bin"
    plain.write_bytes(os.urandom(5_000_000))
    recipient = next(line.split(": ", 1)[1] for line in env.age_key.read_text().splitlines()
                     if "public key" in line)
    encrypted = age_encrypt(plain, recipient, tmp_path / "big.age")
    pipeline = restore.Pipeline([["age", "-d", "-i", str(env.age_key), str(encrypted)]],
                                dict(os.environ))
    head = await asyncio.wait_for(pipeline.peek(), timeout=20)
    assert head == plain.read_bytes()[:512]
    assert all(p.returncode is not None for p in pipeline.processes)


async def test_compressed_plain_dump_is_streamed_through_gzip(env: Env, ctx: RuntimeContext,
                                                              tmp_path: Path) -> None:
    check = spec(scenario="gzip", source=backup_dir(tmp_path, env.dumps["gzip-plain"]))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.PASS, outcome.message


async def test_backup_for_another_age_key_fails(env: Env, ctx: RuntimeContext,
                                                tmp_path: Path) -> None:
    check = spec(scenario="wrong-key", age_identity={"file": str(env.age_key)},
                 source=backup_dir(tmp_path, env.dumps["age-other-key"]))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.FAIL
    assert "age produced no output" in outcome.message and "no identity matched" in \
        outcome.message
    assert scratch_dbs(env) == []


@pytest.mark.parametrize("variant", ["age-custom", "age-plain", "age-gzip-plain"])
async def test_encrypted_backup_is_decrypted_with_age(
        env: Env, ctx: RuntimeContext, tmp_path: Path, variant: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    if variant == "age-custom":  # identity from an environment variable
        monkeypatch.setenv("AGE_IDENTITY", env.age_secret)
        identity: Any = "${AGE_IDENTITY}"
    else:  # identity file passed to age as is
        identity = {"file": str(env.age_key)}
    check = spec(scenario=f"enc-{variant}", age_identity=identity,
                 source=backup_dir(tmp_path, env.dumps[variant]))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert_no_secret(outcome, caplog, env.age_secret, DRILL_PASSWORD)
    assert not list((ctx.state_dir / "restore-drills-tmp").glob("*"))  # temp identity gone
    without_key = spec(scenario=f"nokey-{variant}", source=check.source)
    outcome = await drill_once(without_key, ctx)
    assert outcome.status is Status.FAIL and "no age_identity" in outcome.message


async def test_failed_verification_fails_and_cleans_up(env: Env, ctx: RuntimeContext,
                                                       tmp_path: Path) -> None:
    check = spec(scenario="verify-fails", source=backup_dir(tmp_path, env.dumps["custom"]),
                 verify={"tables": ["customers"], "min_rows": {"customers": 1_000_000}})
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.FAIL
    assert "customers has 2000 rows (expected at least 1000000)" in outcome.message
    assert metric(outcome, "readiness_restore_drill_last_result_success") == 0
    assert scratch_dbs(env) == []
    missing = spec(scenario="verify-missing", source=check.source,
                   verify={"tables": ["audit_log"], "queries": ["SELECT false"]})
    outcome = await drill_once(missing, ctx)
    assert outcome.status is Status.FAIL and "missing table(s) audit_log" in outcome.message


async def test_corrupt_backup_fails(env: Env, ctx: RuntimeContext, tmp_path: Path) -> None:
    check = spec(scenario="corrupt", source=backup_dir(tmp_path, env.dumps["corrupt"]))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.FAIL
    assert "pg_restore exited with status 1" in outcome.message
    assert scratch_dbs(env) == []
    [record] = DrillStore(ctx.state_dir).read("corrupt")
    assert not record.success and record.finished >= record.started


async def _wait_for_phase(state: Path, scenario: str, phase: str) -> None:
    store = DrillStore(state)
    deadline = time.monotonic() + 30
    while (store.read_marker(scenario) or {}).get("phase") != phase:
        assert time.monotonic() < deadline, f"drill never reached {phase}"
        await asyncio.sleep(0.05)


async def test_cancelled_drill_leaves_nothing_behind(env: Env, ctx: RuntimeContext,
                                                     tmp_path: Path) -> None:
    check = spec(scenario="cancelled", source=backup_dir(tmp_path, env.dumps["slow"]))
    await KIND.run(check, ctx)
    await _wait_for_phase(ctx.state_dir, "cancelled", "restore")
    running = await KIND.run(check, ctx)
    assert metric(running, "readiness_restore_drill_phase", phase="restore") == 1
    assert "drill running: restore" in running.message
    assert len(scratch_dbs(env)) == 1
    await drill.cancel_all()
    assert scratch_dbs(env) == []
    [record] = DrillStore(ctx.state_dir).read("cancelled")
    assert (record.success, record.detail) == (False, "cancelled")


async def test_drill_timeout_stops_and_fails(env: Env, ctx: RuntimeContext,
                                             tmp_path: Path) -> None:
    check = spec(scenario="timeout", drill_timeout="1s",
                 source=backup_dir(tmp_path, env.dumps["slow"]))
    outcome = await drill_once(check, ctx)
    assert outcome.status is Status.FAIL and "timed out after 1s" in outcome.message
    assert scratch_dbs(env) == []


async def test_drill_killed_half_way_is_recorded_and_cleaned_on_next_start(
        env: Env, ctx: RuntimeContext, tmp_path: Path) -> None:
    check = spec(scenario="killed", source=backup_dir(tmp_path, env.dumps["slow"]))
    connection = pg_connection(env.target, user="drilluser", password_env="DRILL_DB_PASSWORD")
    script = (
        "import asyncio, sys\nfrom pathlib import Path\n"
        "from exporter.context import RuntimeContext\n"
        "from exporter.probes.backup.drill import RestoreDrillCheck, execute_drill\n"
        "from exporter.probes.postgres.connection import PostgresConnection\n"
        "spec = RestoreDrillCheck.model_validate_json(sys.argv[1])\n"
        "conn = PostgresConnection.model_validate_json(sys.argv[2])\n"
        "async def main():\n"
        "    ctx = RuntimeContext({'drill': conn}, state_dir=Path(sys.argv[3]))\n"
        "    await execute_drill(spec, ctx)\n"
        "asyncio.run(main())\n")
    exporter = subprocess.Popen([sys.executable, "-c", script, check.model_dump_json(),
                                 connection.model_dump_json(), str(ctx.state_dir)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await _wait_for_phase(ctx.state_dir, "killed", "restore")
        assert len(scratch_dbs(env)) == 1
    finally:
        exporter.send_signal(signal.SIGKILL)
        exporter.wait(10)
    assert len(scratch_dbs(env)) == 1  # the killed exporter could not clean up
    leftover = ctx.state_dir / "restore-drills-tmp" / "age-identity-killed-x1"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_text("AGE-SECRET-KEY-LEFT-BEHIND")
    outcome = await KIND.run(check, ctx)  # the next start of the exporter
    assert not leftover.exists()
    assert scratch_dbs(env) == []
    assert outcome.status is Status.FAIL
    assert "interrupted during restore" in outcome.message
    [record] = DrillStore(ctx.state_dir).read("killed")
    assert not record.success
    assert drill.running_drill(ctx.state_dir, "killed") is None  # not due again yet


async def test_refuses_a_production_target(env: Env, ctx: RuntimeContext, tmp_path: Path) -> None:
    source = backup_dir(tmp_path, env.dumps["custom"])
    same_cluster = spec(scenario="refused", source=source,
                        production_connections=["prod", "drill-admin"])
    outcome = await KIND.run(same_cluster, ctx)
    assert outcome.status is Status.ERROR and outcome.reason is not None
    assert outcome.reason.value == "config"
    assert "same cluster as production connection drill-admin" in outcome.message
    assert drill.running_drill(ctx.state_dir, "refused") is None
    other_cluster = spec(scenario="allowed", source=source, production_connections=["prod"])
    outcome = await drill_once(other_cluster, ctx)
    assert outcome.status is Status.PASS, outcome.message
    with pytest.raises(ValueError, match="is not a table name"):
        spec(scenario="x", source=source, verify={"min_rows": {"users; DROP": 1}})
    with pytest.raises(ValueError, match="never targets production"):
        spec(scenario="x", source=source, production_connections=["drill"])


# --------------------------------------------------------------------------- record mode


def record_spec(**fields: Any) -> RestoreDrillCheck:
    return RestoreDrillCheck.model_validate({
        "id": "10.3.2", "section": "10.3", "title": "t", "kind": "restore_drill",
        "scenario": "failover", "max_age": "30d", **fields})


async def test_records_from_a_json_lines_file(tmp_path: Path) -> None:
    path = tmp_path / "drills.jsonl"
    now = time.time()
    lines = [
        {"scenario": "failover", "started": now - 5 * 86400, "finished": now - 5 * 86400 + 240,
         "success": True},
        {"scenario": "failover", "started": "2020-01-01T00:00:00Z",
         "finished": "2020-01-01T00:01:00Z", "success": True},
        {"scenario": "restore", "started": now, "finished": now, "success": False},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    context = RuntimeContext(state_dir=tmp_path / "s")
    try:
        outcome = await KIND.run(record_spec(records_file=str(path), rto_target="5m"), context)
        assert outcome.status is Status.PASS, outcome.message
        assert metric(outcome, "readiness_restore_drill_duration_seconds") == 240
        outcome = await KIND.run(record_spec(records_file=str(path), max_age="2d"), context)
        assert outcome.status is Status.FAIL and "4d23h old (max 2d0h)" in outcome.message
        outcome = await KIND.run(record_spec(records_file=str(path), rto_target="3m"), context)
        assert outcome.status is Status.FAIL and "drill took 4m00s" in outcome.message
        with path.open("a") as handle:
            handle.write(json.dumps({"scenario": "failover", "started": now - 60,
                                     "finished": now - 30, "success": False,
                                     "detail": "standby did not promote"}) + "\n")
        outcome = await KIND.run(record_spec(records_file=str(path)), context)
        assert outcome.status is Status.FAIL and "standby did not promote" in outcome.message
        missing = await KIND.run(record_spec(records_file=str(tmp_path / "none.jsonl")),
                                 context)
        assert missing.status is Status.FAIL and "does not exist" in missing.message
    finally:
        await context.aclose()


async def test_records_from_a_postgresql_table(env: Env, ctx: RuntimeContext) -> None:
    env.target.psql("CREATE TABLE IF NOT EXISTS dr_drills (scenario text, started timestamptz, "
                    "finished timestamptz, success boolean); TRUNCATE dr_drills; "
                    "INSERT INTO dr_drills VALUES ('failover', now() - interval '2 days', "
                    "now() - interval '2 days' + interval '3 minutes', true)")
    outcome = await KIND.run(record_spec(records_table="public.dr_drills",
                                         records_connection="drill-admin"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert metric(outcome, "readiness_restore_drill_duration_seconds") == 180
    outcome = await KIND.run(record_spec(records_table="no_such_table",
                                         records_connection="drill-admin"), ctx)
    assert outcome.status is Status.ERROR and "does not exist" in outcome.message
