"""10.2 recovery points: the database scenario measured from a real WAL archive (a real
PostgreSQL whose archive_command copies segments to a directory), and the cluster
scenario refused unless its source lives outside the cluster (a real S3-compatible
server reached by a non-loopback address)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.backup import locality, wal
from exporter.probes.backup.rpo import KIND, BackupPoint, RpoCheck
from exporter.probes.backup.sources import S3Source
from tests.probes.backup.support import pg_connection, set_mtime
from tests.probes.test_backup import backup_fragment
from tests.support.servers import PgCluster, _as_postgres, free_port, pg_cluster, wait_for_port

HOUR = 3600.0


@dataclass
class Archive:
    cluster: PgCluster
    directory: Path

    def switch(self) -> None:
        """Write, switch the WAL segment and wait until it is archived."""
        before = int(self.cluster.psql("SELECT archived_count FROM pg_stat_archiver"))
        self.cluster.psql("INSERT INTO t VALUES (2); SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while int(self.cluster.psql("SELECT archived_count FROM pg_stat_archiver")) <= before:
            assert time.monotonic() < deadline, "WAL was not archived"
            time.sleep(0.1)

    def age_segments(self, seconds: float) -> None:
        for path in self.directory.iterdir():
            set_mtime(path, time.time() - seconds)


@pytest.fixture(scope="module")
def archive() -> Iterator[Archive]:
    directory = Path(tempfile.mkdtemp(prefix="readiness-wal-"))  # reachable by postgres
    directory.chmod(0o777)
    settings = {"archive_mode": "on", "wal_level": "replica",
                "archive_command": f"'cp %p {directory}/%f'"}
    with pg_cluster(settings) as cluster:
        cluster.psql("CREATE TABLE t AS SELECT 1 AS x")
        found = Archive(cluster, directory)
        found.switch()
        yield found
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def ctx(archive: Archive, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    context = RuntimeContext({"app-db": pg_connection(archive.cluster)},
                             state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def spec(**fields: Any) -> RpoCheck:
    return RpoCheck.model_validate({"id": "10.2-x", "item": "10.2", "section": "10.2",
                                    "title": "t", "kind": "rpo", **fields})


def old_backups(tmp_path: Path, age_s: float) -> dict[str, Any]:
    folder = tmp_path / "db"
    folder.mkdir(exist_ok=True)
    dump = folder / "db.dump"
    dump.write_bytes(b"PGDMP" + b"\0" * 100)
    set_mtime(dump, time.time() - age_s)
    return {"type": "backup", "name": "db-backups",
            "source": {"type": "directory", "path": str(folder)}}


def points(outcome: Outcome) -> dict[str, float]:
    return {m.labels.get("source", m.family): m.value for m in outcome.measurements
            if m.family in {"readiness_recovery_point_source_timestamp_seconds",
                            "readiness_rpo_seconds"}}


def database_failure(sources: list[dict[str, Any]]) -> RpoCheck:
    return spec(scenario="database-failure", rpo_target="6h", expected_duration="1h",
                connection="app-db", sources=sources)


# --------------------------------------------------------------------------- WAL archive


async def test_database_scenario_measures_from_the_wal_archive(
        archive: Archive, ctx: RuntimeContext, tmp_path: Path) -> None:
    """Backups 8 h old: beyond 6 h + 1 h. The old preset measured from backups only and
    failed, although the WAL archive restores to a few seconds ago."""
    archive.switch()
    backups = old_backups(tmp_path, 8 * HOUR)
    backups_only = await KIND.run(database_failure([backups]), ctx)
    assert backups_only.status is Status.FAIL, backups_only.message
    source = {"type": "wal_archive", "name": "wal-archive", "directory": str(archive.directory)}
    outcome = await KIND.run(database_failure([backups, source]), ctx)
    assert outcome.status is Status.PASS, outcome.message
    got = points(outcome)
    newest = max(p.stat().st_mtime for p in archive.directory.iterdir())
    assert got["wal-archive"] == newest
    assert got["readiness_rpo_seconds"] < 600
    assert got["db-backups"] < newest - 7 * HOUR


async def test_the_archive_itself_not_the_archivers_report(
        archive: Archive, ctx: RuntimeContext, tmp_path: Path) -> None:
    """archive_command = 'true' exits 0 and stores nothing: pg_stat_archiver reports a
    fresh archive (the old source passed) while the newest segment really archived is 8 h
    old (beyond the 6 h RPO + 1 h)."""
    archive.age_segments(8 * HOUR)
    archive.cluster.psql("ALTER SYSTEM SET archive_command = 'true'")
    archive.cluster.psql("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        archive.switch()
        reported = await KIND.run(database_failure([{"type": "wal_archive", "name": "stats"}]),
                                  ctx)
        assert reported.status is Status.PASS, reported.message
        real = {"type": "wal_archive", "name": "wal-archive",
                "directory": str(archive.directory)}
        outcome = await KIND.run(database_failure([real]), ctx)
        assert outcome.status is Status.FAIL, outcome.message
        assert outcome.message.startswith("database-failure: recovery point is 8h")
        assert "(RPO 6h00m + 1h00m expected backup duration)" in outcome.message
    finally:
        archive.cluster.psql("ALTER SYSTEM RESET archive_command")
        archive.cluster.psql("SELECT pg_reload_conf()")


async def test_archive_without_segments_or_missing(ctx: RuntimeContext, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    (folder / "0000000100000000").mkdir(parents=True)
    for name in ("00000002.history", "000000010000000000000002.00000028.backup",
                 "000000010000000000000003.partial", "archive.info"):
        (folder / "0000000100000000" / name).write_text("x")
    empty = await KIND.run(database_failure([
        {"type": "wal_archive", "name": "wal", "directory": str(folder)}]), ctx)
    assert empty.status is Status.FAIL
    assert empty.message == f"database-failure: no recovery point [wal: no WAL segment in {folder}]"
    missing = await KIND.run(database_failure([
        {"type": "wal_archive", "name": "wal", "directory": str(tmp_path / "nope")}]), ctx)
    assert (missing.status, missing.reason) == (Status.ERROR, Reason.CONFIG)
    assert "does not exist" in missing.message


def test_segment_names() -> None:
    assert wal.SEGMENT_RE.match("000000010000000000000003")
    assert wal.SEGMENT_RE.match("000000010000000000000003-" + "a" * 40 + ".gz")  # pgBackRest
    assert wal.SEGMENT_RE.match("000000010000000000000003.zst")
    for name in ("00000002.history", "000000010000000000000003.partial",
                 "000000010000000000000002.00000028.backup", "00000001000000000000000"):
        assert not wal.SEGMENT_RE.match(name), name


def test_directory_source_needs_no_connection() -> None:
    spec(scenario="s", rpo_target="6h", sources=[{"type": "wal_archive", "directory": "/x"}])
    with pytest.raises(ValueError, match="need connection"):
        spec(scenario="s", rpo_target="6h", sources=[{"type": "wal_archive"}])


# --------------------------------------------------------------------------- off-cluster


def _non_loopback_address() -> str | None:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout
    return next((a for a in out.split() if "." in a and not a.startswith("127.")), None)


@pytest.fixture(scope="module")
def offsite_s3() -> Iterator[str]:
    """moto's S3 server reached through this machine's non-loopback address: a host the
    rule cannot place inside the cluster (as another site's object store)."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to serve S3 on")
    port = free_port()
    server = ThreadedMotoServer(ip_address=address, port=port, verbose=False)
    server.start()
    wait_for_port(port, host=address)
    client = boto3.client("s3", endpoint_url=f"http://{address}:{port}", region_name="us-east-1",
                          aws_access_key_id="AKIAOFFSITE", aws_secret_access_key="offsite")
    client.create_bucket(Bucket="offsite")
    client.put_object(Bucket="offsite", Key="db/db.dump", Body=b"PGDMP" + b"\0" * 100)
    yield f"http://{address}:{port}"
    server.stop()


def cluster_failure(sources: list[dict[str, Any]], **fields: Any) -> RpoCheck:
    return spec(**{"scenario": "complete-cluster-failure", "rpo_target": "6h",
                   "expected_duration": "1h", "off_cluster": True, "sources": sources,
                   **fields})


def s3(endpoint: str) -> dict[str, Any]:
    return {"type": "backup", "name": "offsite", "source": {
        "type": "s3", "bucket": "offsite", "prefix": "db/", "endpoint_url": endpoint,
        "region": "us-east-1", "access_key_id": "${OFFSITE_KEY}",
        "secret_access_key": "${OFFSITE_SECRET}"}}


async def test_cluster_scenario_refuses_a_local_backup(ctx: RuntimeContext,
                                                       tmp_path: Path) -> None:
    """A fresh backup on the node: the old rule passed, the backup dies with the cluster."""
    local = old_backups(tmp_path, 60)
    old_rule = await KIND.run(cluster_failure([local], off_cluster=False), ctx)
    assert old_rule.status is Status.PASS, old_rule.message
    outcome = await KIND.run(cluster_failure([local]), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert outcome.message == (
        "complete-cluster-failure: off_cluster needs a source outside the cluster (e.g. s3 "
        f"on another site); source db-backups: {tmp_path / 'db'} is a local path on the node")
    wal_stats = await KIND.run(cluster_failure([{"type": "wal_archive", "name": "wal"}],
                                               connection="app-db"), ctx)
    assert wal_stats.status is Status.ERROR
    assert "source wal: it reads the production database" in wal_stats.message


async def test_cluster_scenario_with_an_off_cluster_s3(
        offsite_s3: str, ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFSITE_KEY", "AKIAOFFSITE")
    monkeypatch.setenv("OFFSITE_SECRET", "offsite")
    outcome = await KIND.run(cluster_failure([s3(offsite_s3)]), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert points(outcome)["readiness_rpo_seconds"] < 600
    host = offsite_s3.split("//")[1].split(":")[0]
    same_host = await KIND.run(cluster_failure([s3(offsite_s3)], cluster_hosts=[host]), ctx)
    assert (same_host.status, same_host.reason) == (Status.ERROR, Reason.CONFIG)
    assert f"source offsite: {host} is a host of the cluster (cluster_hosts)" in same_host.message


def test_in_cluster_endpoints() -> None:
    def reason(endpoint: str | None, hosts: tuple[str, ...] = ()) -> str | None:
        source = S3Source.model_validate({"type": "s3", "bucket": "b", "endpoint_url": endpoint})
        return locality.backup_reason(source, hosts)

    assert reason(None) is None  # AWS S3
    assert reason("https://s3.eu-west-1.example.net") is None
    assert reason("http://minio.backup.svc:9000") == "minio.backup.svc is an in-cluster service name"
    assert reason("http://minio.backup.svc.cluster.local:9000") is not None
    assert reason("http://minio:9000") == "minio is a single-label name (an in-cluster service)"
    assert reason("http://127.0.0.1:9000") == "127.0.0.1 is this node"
    assert reason("http://localhost:9000") == "localhost is this node"
    assert reason("https://PG.Prod.Example.net", ("pg.prod.example.net",)) is not None


# --------------------------------------------------------------------------- preset


async def test_preset_database_scenario_reads_the_wal_archive(
        archive: Archive, ctx: RuntimeContext, tmp_path: Path) -> None:
    """The preset's 10.2 database failure with backups 8 h old and a WAL archive that is
    current: the WAL source (pg_stat_archiver of app-db, inputs.wal_archive_dir unset)
    gives the recovery point; only the backups were read before, and it failed."""
    archive.switch()
    preset = next(c for c in backup_fragment().checks if c.id == "10.2-database-failure")
    assert isinstance(preset, RpoCheck)
    assert [(s.type, s.name) for s in preset.sources] == [("backup", "db-backups"),
                                                          ("wal_archive", "wal-archive")]
    backups = [BackupPoint.model_validate(old_backups(tmp_path, 8 * HOUR))]
    check = preset.model_copy(update={"sources": [*backups, preset.sources[1]],
                                      "rto_target": None})
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert points(outcome)["readiness_rpo_seconds"] < 600
    old = await KIND.run(check.model_copy(update={"sources": backups}), ctx)
    assert old.status is Status.FAIL


async def test_preset_cluster_scenario_needs_an_offsite_source(ctx: RuntimeContext) -> None:
    preset = next(c for c in backup_fragment().checks
                  if c.id == "10.2-complete-cluster-failure")
    assert isinstance(preset, RpoCheck) and preset.off_cluster
    outcome = await KIND.run(preset, ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "source offsite-backups: /var/backups/qbitel/db is a local path" in outcome.message


# --------------------------------------------------------------------------- pgBackRest


def _pgbackrest_config(work: Path, cluster: PgCluster) -> Path:
    for name in ("repo", "log", "lock"):
        (work / name).mkdir()
        (work / name).chmod(0o777)
    conf = work / "pgbackrest.conf"
    conf.write_text(f"[global]\nrepo1-path={work}/repo\nlog-path={work}/log\n"
                    f"lock-path={work}/lock\nlog-level-console=warn\nlog-level-file=off\n\n"
                    f"[main]\npg1-path={cluster.datadir}\npg1-port={cluster.port}\n"
                    f"pg1-socket-path={cluster.root}\npg1-user=postgres\n", encoding="utf-8")
    conf.chmod(0o644)
    return conf


async def test_pgbackrest_repository_archive(ctx: RuntimeContext) -> None:
    """A real pgBackRest repository: after stanza-create it holds fresh archive.info files
    but no segment (a "newest file" rule would pass); after archive-push the segment
    (`<name>-<sha1>.gz` under archive/main/<version>/<16 hex>/) is the recovery point."""
    work = Path(tempfile.mkdtemp(prefix="readiness-pgbr-"))
    work.chmod(0o777)
    settings = {"archive_mode": "on", "wal_level": "replica", "archive_command": "'false'"}
    try:
        with pg_cluster(settings) as cluster:
            cluster.psql("CREATE TABLE t AS SELECT 1 AS x")
            conf = _pgbackrest_config(work, cluster)
            pgbackrest = ["pgbackrest", f"--config={conf}", "--stanza=main"]
            subprocess.run(_as_postgres([*pgbackrest, "stanza-create"]), check=True,
                           capture_output=True, timeout=120)
            archive_dir = work / "repo" / "archive" / "main"
            source = {"type": "wal_archive", "name": "pgbackrest", "directory": str(archive_dir)}
            empty = await KIND.run(database_failure([source]), ctx)
            assert empty.status is Status.FAIL, empty.message
            assert f"pgbackrest: no WAL segment in {archive_dir}" in empty.message
            cluster.psql(f"ALTER SYSTEM SET archive_command = '{' '.join(pgbackrest)} "
                         "archive-push %p'")
            cluster.psql("SELECT pg_reload_conf()")
            time.sleep(0.5)
            Archive(cluster, work).switch()
            outcome = await KIND.run(database_failure([source]), ctx)
            assert outcome.status is Status.PASS, outcome.message
            segments = [p for p in archive_dir.rglob("*.gz") if wal.SEGMENT_RE.match(p.name)]
            assert segments, list(archive_dir.rglob("*"))
            assert points(outcome)["pgbackrest"] == max(p.stat().st_mtime for p in segments)
    finally:
        shutil.rmtree(work, ignore_errors=True)
