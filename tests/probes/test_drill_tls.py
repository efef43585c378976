"""A run-mode restore drill on a drill server that accepts TLS connections only.

The drill's tools (`pg_restore`, `psql`) reach the server with the libpq environment
built from the connection's spec (`tls.ca_file` becomes PGSSLROOTCERT with
`PGSSLMODE=verify-full`), the way the exporter's own pool reaches it. The drill once read
asyncpg's private connection parameters instead, where an SSL context shows as
`sslmode=require`: a drill configured to verify its server ran the restore unverified.
"""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exporter.context import RuntimeContext
from exporter.model import Status
from exporter.probes.backup import drill
from exporter.probes.backup.drill import KIND, RestoreDrillCheck
from exporter.transport.postgres import PostgresConnection, database
from tests.probes.backup.support import pg_dump
from tests.support.servers import PgCluster, pg_tls_cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tls_only() -> Iterator[tuple[PgCluster, Path]]:
    """A cluster that rejects every connection without TLS, and its CA file."""
    with pg_tls_cluster(["hostnossl all all 127.0.0.1/32 reject"]) as (cluster, ca_file):
        cluster.psql("CREATE DATABASE appdb")
        cluster.psql("CREATE TABLE customers AS SELECT g AS id FROM "
                     "generate_series(1, 300) g", "appdb")
        yield cluster, ca_file


@pytest.fixture
async def ctx(tls_only: tuple[PgCluster, Path], tmp_path: Path
              ) -> AsyncIterator[RuntimeContext]:
    cluster, ca = tls_only
    connection = PostgresConnection.model_validate(
        {"kind": "postgres", "port": cluster.port, "tls": {"ca_file": str(ca)}, "min_size": 0})
    context = RuntimeContext({"drill": connection}, state_dir=tmp_path / "state")
    yield context
    await drill.cancel_all()
    await context.aclose()


async def test_drill_restores_over_verified_tls(tls_only: tuple[PgCluster, Path],
                                                ctx: RuntimeContext, tmp_path: Path) -> None:
    cluster, _ = tls_only
    backups = tmp_path / "backups"
    backups.mkdir()
    pg_dump(cluster, "appdb", backups / "db.dump", "c")
    check = RestoreDrillCheck.model_validate({
        "id": "10.3.1", "section": "10.3", "title": "t", "kind": "restore_drill",
        "mode": "run", "scenario": "tls", "connection": "drill",
        "source": {"type": "directory", "path": str(backups)},
        "verify": {"tables": ["customers"], "min_rows": {"customers": 300}}})
    first = await KIND.run(check, ctx)
    task = drill.running_drill(ctx.state_dir, check.scenario)
    assert task is not None, first.message
    record = await task
    assert record.success, record.detail
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    leftovers = cluster.psql("SELECT count(*) FROM pg_database WHERE datname LIKE "
                             "'readiness_drill_%'")
    assert leftovers.strip() == "0"


async def test_tools_get_the_connections_tls_files(tls_only: tuple[PgCluster, Path],
                                                   ctx: RuntimeContext) -> None:
    _, ca = tls_only
    client = await database(ctx, "drill")
    env = client.libpq_env("scratch", "readiness-drill")
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", str(ca.resolve()))
    assert (env["PGHOST"], env["PGDATABASE"]) == ("127.0.0.1", "scratch")
    assert "PGPASSWORD" not in env  # none configured


def test_backup_and_postgres_probes_read_no_private_attribute() -> None:
    """`obj._name` on anything but self/cls is a private API of another library."""
    offenders: list[str] = []
    for folder in ("exporter/probes/backup", "exporter/probes/postgres"):
        for path in sorted((REPO / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                        and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name)
                                 and node.value.id in ("self", "cls"))):
                    offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offenders == []
