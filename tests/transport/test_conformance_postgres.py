"""Conformance of the PostgreSQL transport: every kind that talks to PostgreSQL gives the
same reason for the same failure, against real servers, and never shows a secret.

Failures: a refused port, a name under `.invalid` (never resolves), a server that accepts
and never answers, a TLS cluster presented with the wrong CA (verification required), and
a wrong password. Kinds: postgres, sql, alembic, ciphertext, rpo, restore_drill (record
mode reads a table; run mode connects to the drill server first). Each check runs through
the runner, as the scheduler runs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Reason, Status
from exporter.runner import run_check
from exporter.transport.postgres import PostgresConnection
from tests.support.servers import PgCluster, free_port, pg_tls_cluster

PASSWORD = "Pg-conformance-8d1f0c2a-secret"
WRONG = "Wrong-pg-5e7a9b31-secret"
KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[PgCluster]:
    """A throw-away cluster with ssl=on (certificate for 127.0.0.1 from its own CA) and a
    role `app` that logs in with a password."""
    with pg_tls_cluster(["host all app 127.0.0.1/32 scram-sha-256"]) as (cluster, _):
        cluster.psql(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")
        yield cluster


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on a free port that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


# --------------------------------------------------------------------------- failures

Connection = dict[str, Any]


def _refused(_cluster: PgCluster, _tmp: Path, _port: int) -> Connection:
    return {"port": free_port()}


def _dns(_cluster: PgCluster, _tmp: Path, _port: int) -> Connection:
    return {"host": "db.readiness-conformance.invalid"}


def _silent(_cluster: PgCluster, _tmp: Path, port: int) -> Connection:
    return {"port": port}


def _wrong_ca(cluster: PgCluster, tmp: Path, _port: int) -> Connection:
    other = tmp / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    return {"port": cluster.port, "tls": {"ca_file": str(other)}}


def _wrong_ca_libpq(cluster: PgCluster, tmp: Path, _port: int) -> Connection:
    other = tmp / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    return {"port": cluster.port, "sslmode": "verify-full", "sslrootcert": str(other)}


def _wrong_password(cluster: PgCluster, _tmp: Path, _port: int) -> Connection:
    return {"port": cluster.port, "user": "app", "password": "${PGCONF_PASSWORD}"}


FAILURES: dict[str, tuple[Callable[[PgCluster, Path, int], Connection], Reason]] = {
    "refused": (_refused, Reason.CONNECT),
    "dns": (_dns, Reason.DNS),
    "silent": (_silent, Reason.TIMEOUT),
    "wrong-ca": (_wrong_ca, Reason.TLS),
    "wrong-ca-sslmode": (_wrong_ca_libpq, Reason.TLS),
    "wrong-password": (_wrong_password, Reason.AUTH),
}

# --------------------------------------------------------------------------- kinds

BASE = {"id": "conf", "section": "3.1", "title": "conformance", "timeout": 20}


def _kinds(tmp: Path) -> dict[str, dict[str, Any]]:
    backups = tmp / "backups"
    backups.mkdir(exist_ok=True)
    return {
        "postgres": {"kind": "postgres", "connection": "db", "min_version_num": 150000},
        "sql": {"kind": "sql", "connection": "db", "query": "SELECT 1", "threshold": 1},
        "alembic": {"kind": "alembic", "connection": "db", "expected_revision": "abc123"},
        "ciphertext": {"kind": "ciphertext", "connection": "db", "table": "pii",
                       "column": "email", "key": "${PGCONF_KEY}"},
        "rpo": {"kind": "rpo", "connection": "db", "scenario": "db", "rpo_target": "6h",
                "sources": [{"type": "wal_archive"}]},
        "rpo-sync": {"kind": "rpo", "connection": "db", "scenario": "db", "rpo_target": 0,
                     "sources": [{"type": "sync_replication"}]},
        "restore_drill-record": {"kind": "restore_drill", "scenario": "db",
                                 "records_table": "drills", "records_connection": "db"},
        "restore_drill-run": {"kind": "restore_drill", "mode": "run", "scenario": "db",
                              "connection": "db",
                              "source": {"type": "directory", "path": str(backups)}},
    }


KIND_NAMES = ["postgres", "sql", "alembic", "ciphertext", "rpo", "rpo-sync",
              "restore_drill-record", "restore_drill-run"]


def _spec(fields: dict[str, Any]) -> CheckSpec:
    spec = registry.probe_kind(fields["kind"]).spec.model_validate({**BASE, **fields})
    assert isinstance(spec, CheckSpec)
    return spec


@pytest.fixture
async def contexts(tmp_path: Path) -> AsyncIterator[list[RuntimeContext]]:
    made: list[RuntimeContext] = []
    yield made
    for context in made:
        await context.aclose()


@pytest.mark.parametrize("kind", KIND_NAMES)
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_same_failure_same_reason_from_every_kind(
        failure: str, kind: str, tls_cluster: PgCluster, tmp_path: Path,
        contexts: list[RuntimeContext], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PGCONF_PASSWORD", WRONG)
    monkeypatch.setenv("PGCONF_KEY", KEY)
    make, reason = FAILURES[failure]
    with silent_server() as silent_port:
        fields = {"kind": "postgres", "connect_timeout": 1.5, "min_size": 1,
                  **make(tls_cluster, tmp_path, silent_port)}
        connection = PostgresConnection.model_validate(fields)
        ctx = RuntimeContext({"db": connection}, state_dir=tmp_path / "state")
        contexts.append(ctx)
        outcome, _ = await run_check(_spec(_kinds(tmp_path)[kind]), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, reason), outcome.message
    for secret in (WRONG, PASSWORD, KEY):
        assert secret not in outcome.message
        assert all(secret not in record.getMessage() and secret not in str(record.__dict__)
                   for record in caplog.records)


async def test_the_right_password_passes_through_the_same_transport(
        tls_cluster: PgCluster, tmp_path: Path, contexts: list[RuntimeContext],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The control case: the same connection with the right password and the right CA."""
    monkeypatch.setenv("PGCONF_PASSWORD", PASSWORD)
    connection = PostgresConnection.model_validate(
        {"kind": "postgres", "port": tls_cluster.port, "user": "app",
         "password": "${PGCONF_PASSWORD}", "tls": {"insecure_skip_verify": True}})
    ctx = RuntimeContext({"db": connection}, state_dir=tmp_path / "state")
    contexts.append(ctx)
    outcome, _ = await run_check(_spec(_kinds(tmp_path)["postgres"]), ctx)
    assert outcome.status is Status.PASS, outcome.message


async def test_a_pool_is_opened_once_per_connection_and_closed_with_the_runtime(
        tls_cluster: PgCluster, tmp_path: Path) -> None:
    connection = PostgresConnection.model_validate(
        {"kind": "postgres", "port": tls_cluster.port, "application_name": "conf-pool"})
    ctx = RuntimeContext({"db": connection, "same": connection},
                         state_dir=tmp_path / "state")
    spec = _spec(_kinds(tmp_path)["sql"])
    other = spec.model_copy(update={"connection": "same"})
    for _ in range(5):
        await asyncio.gather(run_check(spec, ctx), run_check(other, ctx))
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'conf-pool'"
    assert tls_cluster.psql(count).strip() == "2"  # one pool per connection, reused
    await ctx.aclose()
    assert tls_cluster.psql(count).strip() == "0"


async def test_a_connection_changed_on_reload_closes_its_old_pool(
        tls_cluster: PgCluster, tmp_path: Path) -> None:
    before = PostgresConnection.model_validate(
        {"kind": "postgres", "port": tls_cluster.port, "application_name": "conf-old"})
    after = before.model_copy(update={"application_name": "conf-new"})
    ctx = RuntimeContext({"db": before}, state_dir=tmp_path / "state")
    spec = _spec(_kinds(tmp_path)["sql"])
    try:
        assert (await run_check(spec, ctx))[0].status is Status.PASS
        await ctx.update_connections({"db": after})
        assert (await run_check(spec, ctx))[0].status is Status.PASS
        sessions = tls_cluster.psql(
            "SELECT string_agg(application_name, ',' ORDER BY application_name) FROM "
            "pg_stat_activity WHERE application_name LIKE 'conf-%'")
        assert sessions.strip() == "conf-new"  # the old pool is closed, not left open
    finally:
        await ctx.aclose()
