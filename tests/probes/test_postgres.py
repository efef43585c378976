"""`postgres` probe and the shared `postgres` connection, against real throw-away clusters.

Version, unit-aware settings, connections, TLS share (with a TLS-enabled cluster made
with trustme), least privilege (pg_monitor), auth failures, and recovery after the
server stops mid-run. Replication and archiving live in their own test files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
from pydantic import ValidationError

from exporter import config, registry
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.postgres import probe
from exporter.probes.postgres.connection import PostgresConnection
from exporter.transport.postgres import database
from tests.support.servers import PgCluster, free_port, pg_cluster, pg_tls_cluster

PASSWORD = "Pw-4b7c1e9f-not-in-output"


@pytest.fixture(scope="module")
def plain() -> Iterator[PgCluster]:
    with pg_cluster({"work_mem": "'4MB'", "checkpoint_timeout": "'5min'"},
                    hba_extra=["host all app 127.0.0.1/32 scram-sha-256"]) as cluster:
        cluster.psql(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")
        cluster.psql("CREATE ROLE monitor LOGIN IN ROLE pg_monitor")
        cluster.psql("CREATE ROLE nobody LOGIN")
        yield cluster


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[PgCluster, Path]]:
    with pg_tls_cluster() as (cluster, ca_file):
        yield cluster, ca_file


@pytest.fixture
async def make_ctx(tmp_path: Path) -> AsyncIterator[Callable[..., RuntimeContext]]:
    made: list[RuntimeContext] = []

    def factory(**connections: PostgresConnection) -> RuntimeContext:
        context = RuntimeContext(connections, state_dir=tmp_path / "state")
        made.append(context)
        return context

    yield factory
    for context in made:
        await context.aclose()


def pg_conn(port: int, **fields: Any) -> PostgresConnection:
    return PostgresConnection.model_validate({"kind": "postgres", "port": port, **fields})


def pg_check(**fields: Any) -> probe.PostgresCheck:
    base = {"id": "pg", "section": "3.1", "title": "postgres", "kind": "postgres",
            "connection": "db"}
    return probe.PostgresCheck.model_validate({**base, **fields})


def value(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in outcome.measurements
             if m.family == family and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, outcome.measurements)
    return found[0]


def assert_no_secret(outcome: Outcome, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert secret not in outcome.message
    for m in outcome.measurements:
        assert all(secret not in v for v in m.labels.values())
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.__dict__)


# --------------------------------------------------------------------------- version


async def test_version_minimum_pass_and_fail(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port))
    ok = await probe.run(pg_check(min_version_num=150000), ctx)
    assert ok.status is Status.PASS, ok.message
    assert 150000 <= value(ok, "readiness_postgres_server_version_num") < 160000
    high = await probe.run(pg_check(min_version_num=990000), ctx)
    assert high.status is Status.FAIL
    assert "below 990000" in high.message
    assert value(high, "readiness_postgres_server_version_num_minimum") == 990000


# --------------------------------------------------------------------------- settings


async def test_settings_unit_aware_match(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port))
    spec = pg_check(settings={"shared_buffers": "16MB", "work_mem": "4096kB",
                              "max_connections": 50, "checkpoint_timeout": "300s",
                              "fsync": False, "wal_level": "replica",
                              "maintenance_work_mem": ">= 32MB"})
    outcome = await probe.run(spec, ctx)
    assert outcome.status is Status.PASS, outcome.message
    # shared_buffers is held in 8kB pages, work_mem in kB: exported in bytes
    assert value(outcome, "readiness_postgres_setting_value",
                 setting="shared_buffers", unit="bytes") == 16 * 1024**2
    assert value(outcome, "readiness_postgres_setting_value",
                 setting="work_mem", unit="bytes") == 4 * 1024**2
    assert value(outcome, "readiness_postgres_setting_value",
                 setting="checkpoint_timeout", unit="seconds") == 300
    assert value(outcome, "readiness_postgres_setting_value",
                 setting="max_connections", unit="") == 50
    assert value(outcome, "readiness_postgres_setting_ok", setting="fsync") == 1


async def test_settings_production_baseline_fails_with_units(plain: PgCluster,
                                                              make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port))
    spec = pg_check(settings={"max_connections": 200, "shared_buffers": "4GB",
                              "effective_cache_size": "12GB", "work_mem": "64MB",
                              "maintenance_work_mem": "1GB"})
    outcome = await probe.run(spec, ctx)
    assert outcome.status is Status.FAIL
    assert "shared_buffers=16MB (want 4GB)" in outcome.message
    assert "max_connections=50 (want 200)" in outcome.message
    assert value(outcome, "readiness_postgres_setting_expected_value",
                 setting="shared_buffers", unit="bytes") == 4 * 1024**3
    assert value(outcome, "readiness_postgres_setting_expected_value",
                 setting="work_mem", unit="bytes") == 64 * 1024**2
    assert value(outcome, "readiness_postgres_setting_ok", setting="work_mem") == 0


async def test_settings_wrong_unit_or_name_is_config_error(plain: PgCluster,
                                                           make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port))
    bad_unit = await probe.run(pg_check(settings={"shared_buffers": "5min"}), ctx)
    assert (bad_unit.status, bad_unit.reason) == (Status.ERROR, Reason.CONFIG)
    unknown = await probe.run(pg_check(settings={"no_such_setting": "1"}), ctx)
    assert (unknown.status, unknown.reason) == (Status.ERROR, Reason.CONFIG)
    assert "no_such_setting" in unknown.message


def test_settings_expectation_is_validated_at_load() -> None:
    with pytest.raises(ValidationError, match="settings"):
        pg_check(settings={"work_mem": ">="})


# --------------------------------------------------------------------------- connections


async def test_connections_against_max_connections(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port))
    spec = pg_check(max_connections_used=0.2)  # 10 of 50
    before = await probe.run(spec, ctx)
    assert before.status is Status.PASS, before.message
    used_before = value(before, "readiness_postgres_connections_in_use")
    extra = [await asyncpg.connect(host="127.0.0.1", port=plain.port, user="postgres")
             for _ in range(10)]
    try:
        busy = await probe.run(spec, ctx)
        assert busy.status is Status.FAIL
        assert value(busy, "readiness_postgres_connections_in_use") >= used_before + 10
        assert value(busy, "readiness_postgres_connections_max") == 50
        assert value(busy, "readiness_postgres_connections_used_ratio_target") == 0.2
    finally:
        for con in extra:
            await con.close()


# --------------------------------------------------------------------------- TLS


async def test_tls_share_fails_without_tls(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, tls="disable"))
    outcome = await probe.run(pg_check(tls={"min_share": 1.0}), ctx)
    assert outcome.status is Status.FAIL
    assert value(outcome, "readiness_postgres_tls_connections_share") == 0
    assert value(outcome, "readiness_postgres_client_connections", ssl="false") >= 1


async def test_tls_verify_full_and_share(tls_cluster: tuple[PgCluster, Path],
                                         make_ctx: Any) -> None:
    cluster, ca = tls_cluster
    ctx = make_ctx(db=pg_conn(cluster.port, tls={"ca_file": str(ca)}))
    outcome = await probe.run(pg_check(tls={"min_share": 1.0}), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_postgres_tls_connections_share") == 1.0
    # a plaintext client lowers the share below 1
    other = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres",
                                  ssl="disable")
    try:
        mixed = await probe.run(pg_check(tls={"min_share": 1.0}), ctx)
        assert mixed.status is Status.FAIL
        assert value(mixed, "readiness_postgres_client_connections", ssl="false") == 1
    finally:
        await other.close()


async def test_tls_wrong_ca_is_tls_error(tls_cluster: tuple[PgCluster, Path],
                                         make_ctx: Any, tmp_path: Path) -> None:
    cluster, _ = tls_cluster
    other_ca = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    ctx = make_ctx(db=pg_conn(cluster.port, tls={"ca_file": str(other_ca)}))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.TLS), outcome.message


async def test_tls_required_on_server_without_tls(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, tls={"insecure_skip_verify": True}))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.TLS), outcome.message


# --------------------------------------------------------------------------- privilege


async def test_least_privilege_pg_monitor(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, user="monitor"))
    spec = pg_check(min_version_num=150000, settings={"max_connections": 50},
                    max_connections_used=0.9, tls={"min_share": 0.0},
                    replication={"role": "primary", "min_replicas": 0}, archiving={})
    outcome = await probe.run(spec, ctx)
    # archive_mode is off on this cluster: the only problem, and the .ready count is read
    assert outcome.status is Status.FAIL
    assert outcome.message == "archive_mode is off"
    assert value(outcome, "readiness_postgres_archive_ready_files") == 0
    assert value(outcome, "readiness_postgres_archive_mode_info", mode="off") == 1


async def test_without_pg_monitor_backlog_is_noted(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, user="nobody"))
    outcome = await probe.run(pg_check(archiving={}), ctx)
    assert outcome.status is Status.FAIL  # archive_mode off
    assert not [m for m in outcome.measurements
                if m.family == "readiness_postgres_archive_ready_files"]


# --------------------------------------------------------------------------- errors


async def test_wrong_password_is_auth_error_without_secret(
        plain: PgCluster, make_ctx: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wrong-" + PASSWORD
    monkeypatch.setenv("PGTEST_PASSWORD", wrong)
    ctx = make_ctx(db=pg_conn(plain.port, user="app", password="${PGTEST_PASSWORD}"))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH)
    assert_no_secret(outcome, caplog, wrong)
    assert_no_secret(outcome, caplog, PASSWORD)
    assert wrong not in repr(ctx._specs)


async def test_right_password_via_password_env(plain: PgCluster, make_ctx: Any,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PGTEST_PASSWORD", PASSWORD)
    ctx = make_ctx(db=pg_conn(plain.port, user="app", password_env="PGTEST_PASSWORD"))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert_no_secret(outcome, caplog, PASSWORD)


async def test_missing_password_env_is_auth_error(plain: PgCluster, make_ctx: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGTEST_UNSET", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    ctx = make_ctx(db=pg_conn(plain.port, user="app", password_env="PGTEST_UNSET"))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome.message


async def test_unresolvable_password_reference_is_config_error(
        plain: PgCluster, make_ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGTEST_LATER", "x")
    conn = pg_conn(plain.port, user="app", password="${PGTEST_LATER}")
    monkeypatch.delenv("PGTEST_LATER")
    outcome = await probe.run(pg_check(min_version_num=150000), make_ctx(db=conn))
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "PGTEST_LATER" in outcome.message


async def test_nothing_listening_is_connect_error(make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(free_port(), connect_timeout=2))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONNECT)


async def test_unknown_database_is_config_error(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, database="nope"))
    outcome = await probe.run(pg_check(min_version_num=150000), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)


async def test_no_section_configured_is_config_error(plain: PgCluster, make_ctx: Any) -> None:
    outcome = await probe.run(pg_check(), make_ctx(db=pg_conn(plain.port)))
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)


async def test_server_stops_mid_run_and_recovers_without_restart(make_ctx: Any) -> None:
    with pg_cluster() as cluster:
        ctx = make_ctx(db=pg_conn(cluster.port, connect_timeout=2))
        spec = pg_check(min_version_num=150000)
        first = await probe.run(spec, ctx)
        assert first.status is Status.PASS, first.message
        client = await database(ctx, "db")
        cluster.stop()
        down = await probe.run(spec, ctx)
        assert (down.status, down.reason) == (Status.ERROR, Reason.CONNECT), down.message
        cluster.start()
        back = await probe.run(spec, ctx)
        assert back.status is Status.PASS, back.message
        assert await database(ctx, "db") is client  # same pool: recovered, not rebuilt
        # a restart between runs (stale pooled connection) does not even show an error
        cluster.restart()
        again = await probe.run(spec, ctx)
        assert again.status is Status.PASS, again.message


async def test_server_stops_during_a_query(make_ctx: Any) -> None:
    from exporter.probes.postgres import sql

    with pg_cluster() as cluster:
        ctx = make_ctx(db=pg_conn(cluster.port, connect_timeout=2))
        slow = sql.SqlCheck.model_validate(
            {"id": "s", "section": "2.4", "title": "t", "kind": "sql", "connection": "db",
             "query": "SELECT count(*) FROM pg_sleep(20)", "threshold": 1,
             "statement_timeout": 30})
        task = asyncio.create_task(sql.run(slow, ctx))
        for _ in range(100):  # wait until the query is running on the server
            await asyncio.sleep(0.05)
            if "pg_sleep" in cluster.psql("SELECT string_agg(query, ' ') FROM "
                                          "pg_stat_activity WHERE state = 'active'"):
                break
        await asyncio.to_thread(cluster.stop)
        down = await asyncio.wait_for(task, 30)
        assert (down.status, down.reason) == (Status.ERROR, Reason.CONNECT), down.message
        await asyncio.to_thread(cluster.start)
        quick = slow.model_copy(update={"query": "SELECT 1"})
        back = await sql.run(quick, ctx)
        assert back.status is Status.PASS, back.message


# --------------------------------------------------------------------------- config


def test_connection_spec_validation() -> None:
    with pytest.raises(ValidationError, match="sslrootcert"):
        pg_conn(5432, sslmode="verify-full")
    with pytest.raises(ValidationError, match="min_size"):
        pg_conn(5432, min_size=5, max_size=2)
    with pytest.raises(ValidationError, match="inline value"):
        pg_conn(5432, password="hunter2")
    with pytest.raises(ValidationError, match="not both"):
        pg_conn(5432, password="${X}", password_env="X")


def test_config_checks_connection_name_and_kind() -> None:
    check: dict[str, Any] = {"id": "a", "section": "3.1", "title": "t", "kind": "postgres",
                             "connection": "missing", "min_version_num": 150000}
    data: dict[str, Any] = {"connections": {"db": {"kind": "postgres", "host": "127.0.0.1"}},
                            "checks": [check]}
    with pytest.raises(config.ConfigError, match="no connection named 'missing'"):
        config.build(data, "test", environ={})
    check["connection"] = "db"
    built = config.build(data, "test", environ={})
    assert isinstance(built.connections["db"], PostgresConnection)
    assert registry.connection_kind("postgres").spec is PostgresConnection


async def test_pool_is_bounded_and_named(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, max_size=2, application_name="readiness-test"))
    pool = (await database(ctx, "db")).pool
    assert isinstance(pool, asyncpg.Pool)
    assert pool.get_max_size() == 2
    assert await pool.fetchval("SELECT current_setting('application_name')") == "readiness-test"


async def test_runs_reuse_pooled_connections(plain: PgCluster, make_ctx: Any) -> None:
    ctx = make_ctx(db=pg_conn(plain.port, application_name="reuse-test", max_size=2))
    spec = pg_check(min_version_num=150000, max_connections_used=0.99)
    for _ in range(20):
        assert (await probe.run(spec, ctx)).status is Status.PASS
    sessions = plain.psql("SELECT count(*) FROM pg_stat_activity "
                          "WHERE application_name = 'reuse-test'")
    assert int(sessions.strip()) == 1  # one connection served every run


def test_every_metric_is_documented() -> None:
    from exporter.probes.postgres import alembic, ciphertext, sql

    doc = (Path(__file__).parents[2] / "docs" / "probes" / "postgres.md").read_text("utf-8")
    for kind in (probe.KIND, sql.KIND, alembic.KIND, ciphertext.KIND):
        for family in kind.metrics:
            assert f"| `{family.name}` |" in doc, family.name
