"""`retention` (2.4.3) against a real PostgreSQL with the real pg_cron extension (Debian's
postgresql-15-cron) and a real application purge-run table."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.postgres import retention
from exporter.probes.postgres.connection import PostgresConnection
from tests.probes.test_postgres_preset_verdicts import preset_checks
from tests.support.servers import PgCluster, pg_bin, pg_cluster

# the extension of the server version pg_cluster starts (pg_bin picks the newest)
CRON_LIB = Path(pg_bin("pg_ctl")).resolve().parent.parent / "lib" / "pg_cron.so"
needs_pg_cron = pytest.mark.skipif(
    not CRON_LIB.exists(),
    reason="pg_cron is not installed: apt-get install postgresql-15-cron")

PURGE = ("SELECT max(finished_at) FROM purge_runs WHERE job = 'audit-purge' "
         "AND status = 'ok'")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    settings = {"shared_preload_libraries": "'pg_cron'", "cron.database_name": "'postgres'"}
    with pg_cluster(settings) as server:
        server.psql(
            "CREATE EXTENSION pg_cron;"
            "CREATE TABLE audit_logs (created_at timestamptz NOT NULL);"
            "CREATE TABLE sessions (started timestamptz NOT NULL);"
            "CREATE TABLE purge_runs (job text, status text, finished_at timestamptz);"
            "CREATE ROLE reader LOGIN BYPASSRLS IN ROLE pg_monitor;"  # sees every cron.job row
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;"
            "GRANT USAGE ON SCHEMA cron TO reader;"
            "GRANT SELECT ON cron.job, cron.job_run_details TO reader;")
        yield server


@pytest.fixture
async def ctx(cluster: PgCluster, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    conn = PostgresConnection.model_validate({"kind": "postgres", "port": cluster.port,
                                              "user": "reader"})
    context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def check(mechanism: dict[str, Any], **fields: Any) -> retention.RetentionCheck:
    base = {"id": "2.4.3", "section": "2.4", "title": "retention", "kind": "retention",
            "connection": "db", "mechanism": mechanism,
            "tables": [{"table": "audit_logs", "window": "365d"},
                       {"table": "public.sessions", "column": "started", "window": "30d"}]}
    return retention.RetentionCheck.model_validate({**base, **fields})


CRON = {"type": "pg_cron", "command_like": "%DELETE FROM audit_logs%", "period": "2d"}


def rows(cluster: PgCluster, audit_days: int, session_days: int) -> None:
    cluster.psql("TRUNCATE audit_logs, sessions;"
                 f"INSERT INTO audit_logs VALUES (now() - interval '{audit_days} days');"
                 f"INSERT INTO sessions VALUES (now() - interval '{session_days} days')")


def cron_run(cluster: PgCluster, hours_ago: int, status: str = "succeeded") -> None:
    """Record a run of the job as pg_cron's scheduler does (its own table)."""
    cluster.psql(
        "INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, "
        "status, return_message, start_time, end_time) SELECT jobid, 1, 'postgres', "
        f"'postgres', command, '{status}', 'DELETE 3', now() - interval '{hours_ago} hours',"
        f" now() - interval '{hours_ago} hours' + interval '2 seconds' FROM cron.job "
        "WHERE jobname = 'audit-retention'")


def value(outcome: Outcome, family: str, table: str | None = None) -> float:
    return next(m.value for m in outcome.measurements if m.family == family
                and (table is None or m.labels.get("table") == table))


@needs_pg_cron
async def test_young_deployment_without_a_retention_job_fails(
        ctx: RuntimeContext, cluster: PgCluster) -> None:
    """Every row is 10 days old: the old rule (oldest row within 365 days) passed."""
    rows(cluster, 10, 1)
    cluster.psql("SELECT cron.unschedule(jobid) FROM cron.job")
    outcome = await retention.run(check(CRON), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "no active pg_cron job whose command is like '%DELETE FROM audit_logs%'" \
        in outcome.message
    assert value(outcome, "readiness_retention_oldest_row_age_seconds", "audit_logs") > 9 * 86400


@needs_pg_cron
async def test_pg_cron_job_that_never_ran_or_ran_long_ago_fails_then_passes(
        ctx: RuntimeContext, cluster: PgCluster) -> None:
    rows(cluster, 10, 1)
    cluster.psql("SELECT cron.unschedule(jobid) FROM cron.job;"
                 "SELECT cron.schedule('audit-retention', '0 3 * * *', "
                 "$$DELETE FROM audit_logs WHERE created_at < now() - interval '365 days'$$)")
    never = await retention.run(check(CRON), ctx)
    assert never.status is Status.FAIL
    assert "retention never ran successfully" in never.message
    cron_run(cluster, 1, status="failed")
    cron_run(cluster, 80)
    stale = await retention.run(check(CRON), ctx)
    assert stale.status is Status.FAIL
    assert "retention last ran 3d" in stale.message, stale.message  # 80 h, not the failure
    cron_run(cluster, 20)
    ok = await retention.run(check(CRON), ctx)
    assert ok.status is Status.PASS, ok.message
    assert value(ok, "readiness_retention_window_seconds", "public.sessions") == 30 * 86400


@needs_pg_cron
async def test_table_older_than_its_window_fails_even_when_the_job_runs(
        ctx: RuntimeContext, cluster: PgCluster) -> None:
    rows(cluster, 10, 45)  # sessions keep 45-day-old rows: the purge misses that table
    cluster.psql("SELECT cron.unschedule(jobid) FROM cron.job;"
                 "SELECT cron.schedule('audit-retention', '0 3 * * *', "
                 "$$DELETE FROM audit_logs WHERE created_at < now() - interval '365 days'$$)")
    cron_run(cluster, 2)
    outcome = await retention.run(check(CRON), ctx)
    assert outcome.status is Status.FAIL
    assert "public.sessions: oldest row 45d" in outcome.message


async def test_application_purge_record(ctx: RuntimeContext, cluster: PgCluster) -> None:
    rows(cluster, 10, 1)
    mechanism = {"type": "purge_record", "query": PURGE, "period": "1d"}
    cluster.psql("TRUNCATE purge_runs; INSERT INTO purge_runs VALUES "
                 "('audit-purge', 'ok', now() - interval '3 days'),"
                 "('audit-purge', 'error', now() - interval '1 hour')")
    late = await retention.run(check(mechanism), ctx)
    assert late.status is Status.FAIL and "retention last ran 3d" in late.message
    cluster.psql("INSERT INTO purge_runs VALUES ('audit-purge', 'ok', now() - "
                 "interval '2 hours')")
    ok = await retention.run(check(mechanism), ctx)
    assert ok.status is Status.PASS, ok.message
    cluster.psql("TRUNCATE purge_runs")
    never = await retention.run(check(mechanism), ctx)
    assert never.status is Status.FAIL and "never ran" in never.message


async def test_missing_pg_cron_and_table_are_config_errors(ctx: RuntimeContext,
                                                           tmp_path: Path) -> None:
    conn = PostgresConnection.model_validate({"kind": "postgres", "port": 5432,
                                              "host": "127.0.0.1", "user": "postgres"})
    plain = RuntimeContext({"db": conn}, state_dir=tmp_path / "plain")
    try:
        outcome = await retention.run(check(CRON), plain)
    finally:
        await plain.aclose()
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome.message
    assert "mechanism.type" in outcome.message
    missing = await retention.run(check(CRON, tables=[{"table": "no_such", "window": "1d"}]),
                                  ctx)
    assert (missing.status, missing.reason) == (Status.ERROR, Reason.CONFIG)


@needs_pg_cron
async def test_preset_check_judges_the_real_job(ctx: RuntimeContext, cluster: PgCluster) -> None:

    preset = preset_checks()["2.4.3"]
    assert isinstance(preset, retention.RetentionCheck)
    spec = preset.model_copy(update={"connection": "db"})
    rows(cluster, 10, 1)
    cluster.psql("SELECT cron.unschedule(jobid) FROM cron.job")
    young = await retention.run(spec, ctx)
    assert young.status is Status.FAIL, young.message  # the old rule passed: 10 d < 365 d
    cluster.psql("SELECT cron.schedule('audit-retention', '15 2 * * *', "
                 "$$DELETE FROM audit_logs WHERE created_at < now() - interval '365 days'$$)")
    cron_run(cluster, 5)
    ran = await retention.run(spec, ctx)
    assert ran.status is Status.PASS, ran.message
