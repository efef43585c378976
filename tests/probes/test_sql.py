"""`sql` probe: one read-only query, one number, a comparison, on a real cluster."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.postgres import sql
from exporter.probes.postgres.connection import PostgresConnection
from exporter.transport.postgres import database
from tests.support.servers import PgCluster, pg_cluster

# the preset's query for 2.1.2, against a table shaped like the application's
HASH_QUERY = next(c.query for c in (check for doc in config._preset_documents(
    "qbitel-production") if doc[0].endswith("/30-postgres.yaml")
    for check in config.build(config._parse_yaml(doc[1], doc[0]), doc[0], environ={}).checks)
    if c.id == "2.1.2" and isinstance(c, sql.SqlCheck))


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as server:
        server.psql(
            "CREATE TABLE audit_log (id serial, created_at timestamptz NOT NULL);"
            "INSERT INTO audit_log (created_at) VALUES (now() - interval '10 minutes'),"
            " (now() - interval '40 days');"
            "CREATE TABLE users (name text, role text, mfa_enabled boolean);"
            "INSERT INTO users VALUES ('a', 'admin', true), ('b', 'admin', false),"
            " ('c', 'user', false);"
            "CREATE TABLE api_keys (key_hash text);"
            "INSERT INTO api_keys VALUES"
            " ('$2b$12$abcdefghijklmnopqrstuuJ0Lr1ZsC3H1sJ6iHjUS1mgX4wGf7x5e'),"
            " ('$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG'),"
            " ('sha256$Qm9Xk2salt$9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08');"
            "CREATE ROLE reader LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;"
        )
        yield server


@pytest.fixture
async def ctx(cluster: PgCluster, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    conn = PostgresConnection.model_validate({"kind": "postgres", "port": cluster.port,
                                              "user": "reader"})
    context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def check(query: str, **fields: Any) -> sql.SqlCheck:
    base = {"id": "q", "section": "2.4", "title": "sql", "kind": "sql", "connection": "db",
            "query": query, "threshold": 0}
    return sql.SqlCheck.model_validate({**base, **fields})


def value(outcome: Outcome) -> float:
    return next(m.value for m in outcome.measurements if m.family == "readiness_sql_value")


async def test_count_equal_zero(ctx: RuntimeContext) -> None:
    ok = await sql.run(check("SELECT count(*) FROM users WHERE role = 'nobody'"), ctx)
    assert ok.status is Status.PASS, ok.message
    admins = await sql.run(
        check("SELECT count(*) FROM users WHERE role = 'admin' AND NOT mfa_enabled"), ctx)
    assert admins.status is Status.FAIL
    assert value(admins) == 1
    assert admins.message == "value 1, expected == 0"


async def test_interval_in_seconds_with_operator(ctx: RuntimeContext) -> None:
    spec = check("SELECT now() - max(created_at) FROM audit_log", op="<=", threshold=3600,
                 unit="seconds")
    outcome = await sql.run(spec, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert 590 <= value(outcome) <= 3600
    labels = [dict(m.labels) for m in outcome.measurements]
    assert {"op": "<=", "unit": "seconds"} in labels
    retention = await sql.run(check("SELECT extract(epoch FROM now() - min(created_at))"
                                    " FROM audit_log", op="<=", threshold=30 * 86400), ctx)
    assert retention.status is Status.FAIL  # a 40-day-old record, 30-day retention


async def test_timestamp_is_epoch_and_boolean_is_one(ctx: RuntimeContext) -> None:
    ts = await sql.run(check("SELECT max(created_at) FROM audit_log", op=">", threshold=0), ctx)
    assert ts.status is Status.PASS
    assert value(ts) > 1.7e9
    flag = await sql.run(check("SELECT bool_and(mfa_enabled) FROM users WHERE role = 'admin'",
                               threshold=1), ctx)
    assert flag.status is Status.FAIL
    assert value(flag) == 0


async def test_api_key_hash_formats(ctx: RuntimeContext, cluster: PgCluster) -> None:
    good = await sql.run(check(HASH_QUERY), ctx)
    assert good.status is Status.PASS, good.message
    cluster.psql("INSERT INTO api_keys VALUES ('sk_live_plaintext_key_12345')")
    try:
        bad = await sql.run(check(HASH_QUERY), ctx)
        assert bad.status is Status.FAIL
        assert value(bad) == 1
    finally:
        cluster.psql("DELETE FROM api_keys WHERE key_hash LIKE 'sk_live%'")


async def test_null_needs_null_value(ctx: RuntimeContext) -> None:
    query = "SELECT max(created_at) FROM audit_log WHERE false"
    null = await sql.run(check(query), ctx)
    assert (null.status, null.reason) == (Status.ERROR, Reason.CONFIG)
    replaced = await sql.run(check(query, null_value=0), ctx)
    assert replaced.status is Status.PASS


async def test_shape_and_type_errors(ctx: RuntimeContext) -> None:
    rows = await sql.run(check("SELECT 1 UNION ALL SELECT 2"), ctx)
    assert (rows.status, rows.reason) == (Status.ERROR, Reason.CONFIG)
    assert "2 rows" in rows.message
    cols = await sql.run(check("SELECT 1, 2"), ctx)
    assert (cols.status, cols.reason) == (Status.ERROR, Reason.CONFIG)
    text = await sql.run(check("SELECT 'x'"), ctx)
    assert (text.status, text.reason) == (Status.ERROR, Reason.CONFIG)
    missing = await sql.run(check("SELECT count(*) FROM no_such_table"), ctx)
    assert (missing.status, missing.reason) == (Status.ERROR, Reason.CONFIG)
    assert "no_such_table" in missing.message


async def test_writes_are_refused(ctx: RuntimeContext, cluster: PgCluster) -> None:
    cluster.psql("GRANT INSERT ON users TO reader")
    outcome = await sql.run(
        check("INSERT INTO users VALUES ('x', 'admin', false) RETURNING 1"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "read-only" in outcome.message
    assert cluster.psql("SELECT count(*) FROM users WHERE name = 'x'").strip() == "0"


async def test_statement_timeout_then_connection_still_usable(
        ctx: RuntimeContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slow = await sql.run(check("SELECT count(*) FROM pg_sleep(3)", statement_timeout=0.2), ctx)
    assert (slow.status, slow.reason) == (Status.ERROR, Reason.TIMEOUT), slow.message
    after = await sql.run(check("SELECT 0"), ctx)
    assert after.status is Status.PASS  # the timeout was local to its transaction
    pool = (await database(ctx, "db")).pool
    assert await pool.fetchval("SHOW statement_timeout") == "0"


def test_spec_validation() -> None:
    with pytest.raises(ValidationError, match="op"):
        check("SELECT 1", op="~")
    with pytest.raises(ValidationError, match="threshold"):
        sql.SqlCheck.model_validate({"id": "q", "section": "2.4", "title": "t", "kind": "sql",
                                     "connection": "db", "query": "SELECT 1"})
