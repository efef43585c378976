"""Objectives are exported when a probe ends in `error` (issue 13).

Each family first runs against its real server (the objective is exported beside a real
verdict), then the server is stopped and the same check runs again on the same runtime:
the outcome is `error` (connection refused) and the objective series is still there
with the configured value. Before the fix these kinds returned the error without it, so
dashboards lost their threshold lines and `value > objective` alerts went silent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.probes.backup.drill import RestoreDrillCheck
from exporter.probes.backup.probe import BackupCheck
from exporter.probes.backup.probe import run as run_backup
from exporter.probes.broker import BrokerCheck
from exporter.probes.broker import run as run_broker
from exporter.probes.http.probe import run as run_http
from exporter.probes.logs import LogsCheck
from exporter.probes.logs import run as run_logs
from exporter.probes.postgres import ciphertext, retention, sql
from exporter.probes.postgres import probe as postgres
from exporter.probes.postgres.connection import PostgresConnection
from exporter.probes.redis.probe import RedisCheck
from exporter.probes.redis.probe import run as run_redis
from exporter.probes.report import ReportCheck
from exporter.probes.report import run as run_report
from exporter.registry import probe_kind
from exporter.transport.redis import RedisConnection
from tests.probes.test_http_support import Tls, app_with, make_check, serve
from tests.support.servers import (
    PgCluster,
    RedisServer,
    free_port,
    pg_cluster,
    start_redis,
    wait_for_port,
)

PG_PASSWORD = "Pg-objectives-7f3a-never-shown"
REDIS_PASSWORD = "Rd-objectives-91c2-never-shown"
S3_SECRET = "s3-objectives-secret-0c9d-never-shown"
KEY_B64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64


def samples(outcome: Outcome, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one family: sorted label items -> value."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for m in outcome.measurements:
        if m.family == family:
            key = tuple(sorted(m.labels.items()))
            assert key not in found, f"{family}{dict(key)} exported twice"
            found[key] = m.value
    return found


def assert_objectives(outcome: Outcome, expected: dict[str, dict[tuple[tuple[str, str], ...],
                                                                   float]]) -> None:
    """Each objective family holds exactly the expected samples."""
    for family, wanted in expected.items():
        assert samples(outcome, family) == wanted, (family, outcome.status, outcome.message)


def assert_refused(outcome: Outcome) -> None:
    """The probe could not tell: error with the connect reason."""
    assert outcome.status is Status.ERROR, (outcome.status, outcome.message)
    assert outcome.reason is Reason.CONNECT, (outcome.reason, outcome.message)


def assert_secret_absent(secret: str, outcomes: list[Outcome],
                         caplog: pytest.LogCaptureFixture) -> None:
    for outcome in outcomes:
        assert secret not in repr(outcome)
    for record in caplog.records:
        assert secret not in record.getMessage()


async def run_spec(spec: CheckSpec, ctx: RuntimeContext) -> Outcome:
    """Run `spec` through its registered kind (as the scheduler does)."""
    return await probe_kind(spec.kind).run(spec, ctx)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def stoppable_pg() -> Iterator[PgCluster]:
    """A cluster of this test only (the test stops it), with a password role."""
    with pg_cluster(hba_extra=["host all app 127.0.0.1/32 scram-sha-256"]) as cluster:
        cluster.psql(
            f"CREATE ROLE app LOGIN SUPERUSER PASSWORD '{PG_PASSWORD}';"
            "CREATE TABLE purge_runs (finished_at timestamptz NOT NULL);"
            "INSERT INTO purge_runs VALUES (now());"
            "CREATE TABLE audit_logs (created_at timestamptz NOT NULL);"
            "CREATE TABLE users (email text);"
            "INSERT INTO users VALUES ('alice@example.com');"
            "CREATE TABLE drills (scenario text, started timestamptz, finished timestamptz,"
            " success boolean);"
            "INSERT INTO drills VALUES ('database-failure', now() - interval '20 minutes',"
            " now() - interval '5 minutes', true);")
        yield cluster


@pytest.fixture
async def pg_ctx(stoppable_pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[RuntimeContext]:
    monkeypatch.setenv("OBJ_DB_PASSWORD", PG_PASSWORD)
    monkeypatch.setenv("OBJ_PII_KEY", KEY_B64)
    conn = PostgresConnection.model_validate({
        "kind": "postgres", "port": stoppable_pg.port, "user": "app",
        "password_env": "OBJ_DB_PASSWORD"})
    context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def _pg_spec(model: type[CheckSpec], **fields: Any) -> CheckSpec:
    base = {"id": "obj", "section": "3.1", "title": "objective", "connection": "db"}
    return model.model_validate({**base, **fields})


PG_CASES: dict[str, tuple[CheckSpec, Status, dict[str, dict[tuple[tuple[str, str], ...],
                                                                float]]]] = {
    "postgres": (
        _pg_spec(postgres.PostgresCheck, kind="postgres", min_version_num=150000,
                 max_connections_used=0.8,
                 replication={"role": "primary", "min_replicas": 2, "max_replay_lag": "45s"},
                 tls={"min_share": 0.9}),
        Status.FAIL,  # no replica streams and no connection uses TLS
        {"readiness_postgres_server_version_num_minimum": {(): 150000.0},
         "readiness_postgres_connections_used_ratio_target": {(): 0.8},
         "readiness_postgres_replay_lag_target_seconds": {(): 45.0},
         "readiness_postgres_replicas_min": {(): 2.0},
         "readiness_postgres_tls_connections_share_target": {(): 0.9}},
    ),
    "sql": (
        _pg_spec(sql.SqlCheck, kind="sql", query="SELECT count(*) FROM audit_logs",
                 op="<=", threshold=5, unit="rows"),
        Status.PASS,
        {"readiness_sql_threshold": {(("op", "<="), ("unit", "rows")): 5.0}},
    ),
    "retention": (
        _pg_spec(retention.RetentionCheck, kind="retention",
                 mechanism={"type": "purge_record", "period": "2d",
                            "query": "SELECT max(finished_at) FROM purge_runs"},
                 tables=[{"table": "audit_logs", "window": "365d"}]),
        Status.PASS,
        {"readiness_retention_period_seconds": {(): 172800.0},
         "readiness_retention_window_seconds": {(("table", "audit_logs"),): 31536000.0}},
    ),
    "ciphertext": (
        _pg_spec(ciphertext.CiphertextCheck, kind="ciphertext", table="users",
                 column="email", key_env="OBJ_PII_KEY", min_decrypt_share=0.95,
                 max_plaintext_share=0.05),
        Status.FAIL,  # the stored e-mail address is plaintext
        {"readiness_ciphertext_decrypt_share_target": {(): 0.95},
         "readiness_ciphertext_plaintext_share_target": {(): 0.05}},
    ),
    "restore_drill": (
        RestoreDrillCheck.model_validate({
            "id": "10.3.1", "section": "10.3", "title": "drill", "kind": "restore_drill",
            "scenario": "database-failure", "records_table": "drills",
            "records_connection": "db", "max_age": "30d", "rto_target": "30m"}),
        Status.PASS,  # a 15-minute drill 5 minutes ago
        {"readiness_restore_drill_max_age_seconds": {(("scenario", "database-failure"),):
                                                     2592000.0},
         "readiness_rto_target_seconds": {(("scenario", "database-failure"),): 1800.0}},
    ),
}


@pytest.mark.parametrize("kind", sorted(PG_CASES))
async def test_postgres_family_keeps_objectives_when_the_server_is_gone(
        kind: str, stoppable_pg: PgCluster, pg_ctx: RuntimeContext,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spec, live_status, objectives = PG_CASES[kind]
    live = await run_spec(spec, pg_ctx)
    assert live.status is live_status, live.message
    assert_objectives(live, objectives)

    stoppable_pg.stop("immediate")
    gone = await run_spec(spec, pg_ctx)
    assert_refused(gone)
    assert_objectives(gone, objectives)
    assert_secret_absent(PG_PASSWORD, [live, gone], caplog)


async def test_postgres_objectives_kept_before_any_connection(tmp_path: Path) -> None:
    """Nothing listens on the port at all (the pool never opened): objectives still
    come from the configuration; the observed facts do not."""
    conn = PostgresConnection.model_validate({"kind": "postgres", "port": free_port(),
                                              "connect_timeout": 2})
    context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
    try:
        spec, _, objectives = PG_CASES["postgres"]
        outcome = await run_spec(spec, context)
    finally:
        await context.aclose()
    assert_refused(outcome)
    assert_objectives(outcome, objectives)
    assert not samples(outcome, "readiness_postgres_connections_used_ratio")
    assert not samples(outcome, "readiness_postgres_server_version_num")


async def test_sql_null_result_error_keeps_the_threshold(
        stoppable_pg: PgCluster, pg_ctx: RuntimeContext) -> None:
    """A NULL answer without null_value is error/config (no admin row found, 2.1.3):
    the threshold stays."""
    spec = _pg_spec(sql.SqlCheck, kind="sql", query="SELECT max(email) FROM users WHERE "
                    "email = 'nobody'", threshold=0, null_error="no admin account found")
    outcome = await run_spec(spec, pg_ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert outcome.message == "no admin account found"
    assert samples(outcome, "readiness_sql_threshold") == {(("op", "=="), ("unit", "")): 0.0}
    assert not samples(outcome, "readiness_sql_value")


# --------------------------------------------------------------------------- Redis


@pytest.fixture
def stoppable_redis() -> Iterator[RedisServer]:
    server = start_redis(["--save", "3600 1"], password=REDIS_PASSWORD)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_ctx(stoppable_redis: RedisServer, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RuntimeContext]:
    monkeypatch.setenv("OBJ_REDIS_PASSWORD", REDIS_PASSWORD)
    conn = RedisConnection.model_validate({
        "kind": "redis", "url": stoppable_redis.url, "password": "${OBJ_REDIS_PASSWORD}",
        "connect_timeout": 2})
    context = RuntimeContext({"cache": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def _redis_spec(**fields: Any) -> RedisCheck:
    base = {"id": "3.2.x", "section": "3.2", "title": "redis", "kind": "redis",
            "connection": "cache"}
    return RedisCheck.model_validate({**base, **fields})


REDIS_CASES = {
    "persistence": (
        _redis_spec(aspect="persistence", persistence={"require": "rdb", "max_age": "2h"}),
        {"readiness_redis_rdb_last_save_age_target_seconds": {(): 7200.0}},
    ),
    "ttl": (
        _redis_spec(aspect="ttl", ttl={"max_share_without_ttl": 0.25}),
        {"readiness_redis_ttl_without_ttl_target_ratio": {(): 0.25}},
    ),
}


@pytest.mark.parametrize("aspect", sorted(REDIS_CASES))
async def test_redis_keeps_objectives_when_the_server_is_gone(
        aspect: str, stoppable_redis: RedisServer, redis_ctx: RuntimeContext,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spec, objectives = REDIS_CASES[aspect]
    live = await run_redis(spec, redis_ctx)
    assert live.status is Status.PASS, live.message  # RDB on; no keys without TTL
    assert_objectives(live, objectives)

    stoppable_redis.stop()
    gone = await run_redis(spec, redis_ctx)
    assert_refused(gone)
    assert_objectives(gone, objectives)
    assert_secret_absent(REDIS_PASSWORD, [live, gone], caplog)


async def test_redis_objectives_kept_when_the_password_is_missing(
        stoppable_redis: RedisServer, tmp_path: Path) -> None:
    """The connection cannot even be built (its secret is unset): error/config, objective
    kept."""
    conn = RedisConnection.model_validate({
        "kind": "redis", "url": stoppable_redis.url, "password": "${OBJ_UNSET_PASSWORD}"})
    context = RuntimeContext({"cache": conn}, state_dir=tmp_path / "state")
    try:
        spec, objectives = REDIS_CASES["persistence"]
        outcome = await run_redis(spec, context)
    finally:
        await context.aclose()
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG, outcome.message
    assert_objectives(outcome, objectives)


# --------------------------------------------------------------------------- backup (S3)


class S3Store:
    """moto's S3-compatible server on a free loopback port, stoppable once by the test."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self._running = True
        wait_for_port(port)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._server.stop()


@pytest.fixture
def stoppable_s3() -> Iterator[S3Store]:
    store = S3Store()
    try:
        yield store
    finally:
        store.stop()


async def test_backup_keeps_its_max_age_when_the_store_is_gone(
        stoppable_s3: S3Store, ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OBJ_S3_KEY", "AKIAOBJECTIVES0001")
    monkeypatch.setenv("OBJ_S3_SECRET", S3_SECRET)
    client = boto3.client("s3", endpoint_url=stoppable_s3.url, region_name="us-east-1",
                          aws_access_key_id="AKIAOBJECTIVES0001", aws_secret_access_key=S3_SECRET)
    client.create_bucket(Bucket="backups")
    client.put_object(Bucket="backups", Key="db/db.dump", Body=b"PGDMP" + b"\0" * 64)
    spec = BackupCheck.model_validate({
        "id": "3.1.4", "section": "3.1", "title": "backup", "kind": "backup",
        "max_age": "6h", "expected_duration": "1h", "timeout": "20s",
        "source": {"type": "s3", "bucket": "backups", "prefix": "db/",
                   "endpoint_url": stoppable_s3.url, "access_key_id": "${OBJ_S3_KEY}",
                   "secret_access_key": "${OBJ_S3_SECRET}"}})
    objectives = {"readiness_backup_max_age_seconds": {(): 7 * 3600.0}}
    live = await run_backup(spec, ctx)
    assert live.status is Status.PASS, live.message  # just uploaded, not empty
    assert_objectives(live, objectives)

    client.close()
    stoppable_s3.stop()
    gone = await run_backup(spec, ctx)
    assert_refused(gone)
    assert_objectives(gone, objectives)
    assert not samples(gone, "readiness_backup_last_completion_timestamp_seconds")
    assert_secret_absent(S3_SECRET, [live, gone], caplog)


# --------------------------------------------------------------------------- HSTS


async def test_hsts_target_kept_when_the_endpoint_is_gone(ctx: RuntimeContext,
                                                          tmp_path: Path) -> None:
    tls = Tls(tmp_path)
    headers = {"Strict-Transport-Security": "max-age=63072000; includeSubDomains"}

    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"}, headers=headers)

    async with serve(app_with({"/": handler}), tls.server_context()) as url:
        spec = make_check(url=f"{url}/", tls={"ca_file": tls.ca_file},
                          hsts={"min_max_age": 31536000}, max_latency="5s")
        live = await run_http(spec, ctx)
    assert live.status is Status.PASS, live.message
    objectives = {"readiness_http_hsts_max_age_target_seconds": {(): 31536000.0},
                  "readiness_http_duration_target_seconds": {(): 5.0}}
    assert_objectives(live, objectives)
    assert samples(live, "readiness_http_hsts_max_age_seconds") == {(): 63072000.0}

    gone = await run_http(spec, ctx)  # the server has stopped: the port refuses
    assert_refused(gone)
    assert_objectives(gone, objectives)
    assert not samples(gone, "readiness_http_hsts_max_age_seconds")


async def test_http_targets_kept_when_the_credentials_are_missing(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bearer token's variable is unset: error/config before any request, both
    objectives kept (the latency target used to be recorded only after this point)."""
    monkeypatch.delenv("OBJ_UNSET_TOKEN", raising=False)
    spec = make_check(url=f"https://127.0.0.1:{free_port()}/", bearer_token="${OBJ_UNSET_TOKEN}",
                      hsts={"min_max_age": 63072000}, max_latency="250ms")
    outcome = await run_http(spec, ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG, outcome.message
    assert "OBJ_UNSET_TOKEN" in outcome.message
    assert_objectives(outcome, {
        "readiness_http_hsts_max_age_target_seconds": {(): 63072000.0},
        "readiness_http_duration_target_seconds": {(): 0.25}})


# --------------------------------------------------------------------------- RabbitMQ


async def test_broker_keeps_its_backlog_target_when_the_api_is_gone(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's RabbitMQ management API first, then a refused port."""
    monkeypatch.setenv("OBJ_BROKER_PASSWORD", "guest")

    def spec(url: str) -> BrokerCheck:
        return BrokerCheck.model_validate({
            "id": "3.3.3", "section": "3.3", "title": "broker", "kind": "broker",
            "aspect": "consumers", "url": url, "user": "guest",
            "password_env": "OBJ_BROKER_PASSWORD", "max_ready": 250,
            "queues": "^objectives-no-such-queue$"})

    objectives = {"readiness_broker_queue_messages_ready_target": {(): 250.0}}
    live = await run_broker(spec("http://127.0.0.1:15672"), ctx)
    assert live.status is Status.PASS and live.message == "no queues to judge", live.message
    assert_objectives(live, objectives)
    assert samples(live, "readiness_broker_up") == {(): 1.0}

    gone = await run_broker(spec(f"http://127.0.0.1:{free_port()}"), ctx)
    assert_refused(gone)
    assert_objectives(gone, objectives)
    assert samples(gone, "readiness_broker_up") == {(): 0.0}

    monkeypatch.delenv("OBJ_BROKER_PASSWORD")
    unset = await run_broker(spec("http://127.0.0.1:15672"), ctx)
    assert unset.status is Status.ERROR and unset.reason is Reason.CONFIG, unset.message
    assert_objectives(unset, objectives)


# --------------------------------------------------------------------------- logs


def _logs_spec(path: Path) -> LogsCheck:
    return LogsCheck.model_validate({
        "id": "7.4-error-rate", "section": "7.4", "title": "logs", "kind": "logs",
        "path": str(path), "lines": 100, "min_share": 0.9, "max_error_share": 0.02})


LOGS_OBJECTIVES = {"readiness_logs_structured_ratio_target": {(): 0.9},
                   "readiness_logs_error_ratio_target": {(): 0.02}}


async def test_logs_keep_their_targets_when_the_log_cannot_be_read(
        tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "app.log"
    rows = [{"time": i, "level": "info", "message": f"m{i}", "request_id": f"r{i}"}
            for i in range(20)]
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    live = await run_logs(_logs_spec(log), ctx)
    assert live.status is Status.PASS, live.message
    assert_objectives(live, LOGS_OBJECTIVES)

    directory = await run_logs(_logs_spec(tmp_path), ctx)  # a directory, not a log file
    assert directory.status is Status.ERROR and directory.reason is Reason.CONFIG
    assert_objectives(directory, LOGS_OBJECTIVES)
    missing = await run_logs(_logs_spec(tmp_path / "gone.log"), ctx)
    assert missing.status is Status.FAIL and "does not exist" in missing.message
    assert_objectives(missing, LOGS_OBJECTIVES)
    assert not samples(missing, "readiness_logs_structured_ratio")


# --------------------------------------------------------------------------- reports


async def test_report_keeps_its_objectives_when_the_server_is_gone(
        ctx: RuntimeContext) -> None:
    """A Trivy report served over HTTP, then the server stopped."""
    body = (Path(__file__).parent / "report_fixtures" / "trivy.json").read_bytes()

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    objectives = {"readiness_report_max_age_seconds": {(): 7 * 86400.0},
                  "readiness_report_vulnerabilities_allowed": {
                      (("severity", "critical"),): 0.0, (("severity", "high"),): 5.0}}
    async with serve(app_with({"/trivy.json": handler})) as url:
        spec = ReportCheck.model_validate({
            "id": "1.1.3", "section": "1.1", "title": "scan", "kind": "report",
            "format": "vulnerabilities", "url": f"{url}/trivy.json", "max_age": "7d",
            "max_findings": {"critical": 0, "high": 5}})
        live = await run_report(spec, ctx)
    assert live.status in (Status.PASS, Status.FAIL), live.message  # a real verdict
    assert_objectives(live, objectives)
    assert samples(live, "readiness_report_vulnerabilities")

    gone = await run_report(spec, ctx)
    assert_refused(gone)
    assert_objectives(gone, objectives)
    assert not samples(gone, "readiness_report_vulnerabilities")
