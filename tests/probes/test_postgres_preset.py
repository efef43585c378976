"""The qbitel-production PostgreSQL fragment: loads with an empty environment, and its
checks (the shipped SQL included) run against a real cluster shaped like the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exporter import config, registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from tests.support.servers import PgCluster, pg_cluster

PASSWORD = "Preset-pw-93af0c-not-in-output"
IDS = {"2.1.2", "2.1.3", "2.3.1-tls", "2.3.2", "2.4.1", "2.4.3", "3.1.1", "3.1.2-connections",
       "3.1.3", "3.1.5-archiving", "3.1.6", "7.1", "8.2", "9.2"}


def fragment(environ: dict[str, str]) -> config.Config:
    documents = [doc for doc in config._preset_documents("qbitel-production")
                 if doc[0].endswith("/30-postgres.yaml")]
    assert len(documents) == 1
    origin, text = documents[0]
    return config.build(config._parse_yaml(text, origin), origin, environ=environ)


def test_fragment_loads_with_empty_environment() -> None:
    built = fragment({})
    assert {c.id for c in built.checks} == IDS
    assert {c.item_id for c in built.checks} >= {"2.3.1", "3.1.2", "3.1.5"}
    disabled = {c.id: c.disabled_reason for c in built.checks if not c.enabled}
    assert set(disabled) == {"2.3.2", "3.1.3"}
    assert all(disabled.values())
    assert built.connections["app-db"].kind == "postgres"


@pytest.fixture(scope="module")
def app_cluster() -> Iterator[PgCluster]:
    with pg_cluster(hba_extra=["host all qbitel 127.0.0.1/32 scram-sha-256"]) as cluster:
        cluster.psql(f"CREATE ROLE qbitel LOGIN PASSWORD '{PASSWORD}' IN ROLE pg_monitor")
        cluster.psql("CREATE DATABASE qbitel_prod OWNER qbitel")
        cluster.psql(
            "CREATE TABLE api_keys (key_hash text);"
            "INSERT INTO api_keys VALUES ('$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG');"
            "CREATE TABLE users (role text, mfa_enabled boolean);"
            "INSERT INTO users VALUES ('admin', true), ('admin', NULL);"
            "CREATE TABLE audit_logs (created_at timestamptz);"
            "INSERT INTO audit_logs VALUES (now() - interval '5 minutes');"
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
            "INSERT INTO alembic_version VALUES ('3c4d5e6f7a8b');"
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO qbitel;",
            database="qbitel_prod")
        yield cluster


@pytest.fixture
async def preset_ctx(app_cluster: PgCluster, tmp_path: Path
                     ) -> AsyncIterator[tuple[RuntimeContext, dict[str, CheckSpec]]]:
    built = fragment({})
    conn = built.connections["app-db"].model_copy(
        update={"host": "127.0.0.1", "port": app_cluster.port})
    context = RuntimeContext({"app-db": conn}, state_dir=tmp_path / "state")
    yield context, {c.id: c for c in built.checks}
    await context.aclose()


async def run(check: CheckSpec, ctx: RuntimeContext) -> Outcome:
    return await registry.probe_kind(check.kind).run(check, ctx)


async def test_preset_checks_against_app_database(
        preset_ctx: tuple[RuntimeContext, dict[str, CheckSpec]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ctx, checks = preset_ctx
    monkeypatch.setenv("DATABASE_PASSWORD", PASSWORD)
    results = {cid: await run(checks[cid], ctx) for cid in sorted(checks)
               if checks[cid].enabled}
    expected = {
        "2.1.2": Status.PASS,           # one argon2id hash
        "2.1.3": Status.FAIL,           # one admin with mfa_enabled NULL
        "2.3.1-tls": Status.FAIL,       # the throw-away cluster has no TLS
        "2.4.1": Status.PASS,           # newest audit record 5 minutes old
        "3.1.1": Status.PASS,
        "3.1.2-connections": Status.PASS,
        "3.1.5-archiving": Status.FAIL,  # archive_mode off
        "9.2": Status.FAIL,             # test cluster is not tuned to the baseline
    }
    for cid, status in expected.items():
        assert results[cid].status is status, (cid, results[cid].message)
    # 2.4.3: this cluster has no pg_cron (cron.job): config error naming mechanism.type
    for cid in ("2.4.3", "3.1.6", "7.1", "8.2"):  # ai_engine/alembic is not here
        assert (results[cid].status, results[cid].reason) == (Status.ERROR, Reason.CONFIG)
    for outcome in results.values():
        assert PASSWORD not in outcome.message
    assert all(PASSWORD not in str(record.__dict__) for record in caplog.records)


async def test_preset_without_database_password_is_auth_error(
        preset_ctx: tuple[RuntimeContext, dict[str, CheckSpec]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, checks = preset_ctx
    monkeypatch.delenv("DATABASE_PASSWORD", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    outcome = await run(checks["3.1.1"], ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome.message
