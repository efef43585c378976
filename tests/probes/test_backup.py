"""`backup` kind: real dumps (pg_dump, age, gzip, tar, OpenSSL, GnuPG) in real directories,
pgBackRest JSON captured from a real `pgbackrest info`, and a local S3 server (moto)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import Status
from exporter.probes.backup import encryption
from exporter.probes.backup.probe import KIND, BackupCheck
from tests.probes.backup.support import (
    DATA,
    ClockContext,
    age_encrypt,
    age_keypair,
    pg_dump,
    set_mtime,
)
from tests.support.servers import PgCluster, free_port, pg_cluster, wait_for_port


@pytest.fixture(scope="module")
def source_db() -> Iterator[PgCluster]:
    """A real PostgreSQL with an application database to dump."""
    with pg_cluster() as cluster:
        cluster.psql("CREATE DATABASE appdb")
        cluster.psql("CREATE TABLE customers AS SELECT g AS id, 'name ' || g AS name "
                     "FROM generate_series(1, 2000) g", "appdb")
        yield cluster


@pytest.fixture(scope="module")
def dumps(source_db: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dump per format, made by the real tools."""
    root = tmp_path_factory.mktemp("dumps")
    out = {"custom": pg_dump(source_db, "appdb", root / "db.dump", "c"),
           "plain": pg_dump(source_db, "appdb", root / "db.sql", "p"),
           "directory": pg_dump(source_db, "appdb", root / "db.dir", "d")}
    key, recipient, _secret = age_keypair(root)
    out["age"] = age_encrypt(out["custom"], recipient, root / "db.dump.age")
    out["age-armored"] = age_encrypt(out["custom"], recipient, root / "db.dump.age.asc",
                                     armor=True)
    out["gzip"] = root / "db.sql.gz"
    out["gzip"].write_bytes(gzip.compress(out["plain"].read_bytes()))
    out["tar"] = root / "config.tar"
    with tarfile.open(out["tar"], "w") as tar:
        tar.add(out["plain"], arcname="db.sql")
    out["openssl"] = root / "db.dump.enc"
    subprocess.run(["openssl", "enc", "-aes-256-cbc", "-salt", "-pbkdf2", "-pass",
                    "pass:not-a-secret", "-in", str(out["custom"]), "-out",
                    str(out["openssl"])], check=True, capture_output=True)
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700)
    for name, armor in (("gpg", []), ("gpg-armored", ["--armor"])):
        out[name] = root / f"db.dump.{name}"
        subprocess.run(["gpg", "--homedir", str(gnupg), "--batch", "--yes", "--pinentry-mode",
                        "loopback", "--passphrase", "not-a-secret", "--symmetric", *armor,
                        "-o", str(out[name]), str(out["custom"])],
                       check=True, capture_output=True)
    return out


def spec(**fields: Any) -> BackupCheck:
    return BackupCheck.model_validate({"id": "t", "section": "10.1", "title": "t",
                                       "kind": "backup", **fields})


def directory(path: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "directory", "path": str(path), **extra}


@pytest.mark.parametrize(("name", "expected", "encrypted"), [
    ("custom", "pg_dump-custom", False), ("plain", "sql-text", False),
    ("gzip", "gzip", False), ("tar", "tar", False), ("age", "age", True),
    ("age-armored", "age-armored", True), ("openssl", "openssl-salted", True),
    ("gpg", "openpgp", True), ("gpg-armored", "openpgp-armored", True),
    ("directory", "pg_dump-custom", False),
])
def test_detects_real_formats(dumps: dict[str, Path], name: str, expected: str,
                              encrypted: bool) -> None:
    fmt = encryption.detect(encryption.read_head(dumps[name]))
    assert (fmt.name, fmt.encrypted) == (expected, encrypted)


def test_unknown_bytes_are_not_counted_as_encrypted() -> None:
    assert encryption.detect(bytes(range(0x20, 0x7f)) * 2 + b"\x00\x01").encrypted is None
    assert encryption.detect(b"").name == "empty"


async def test_newest_by_mtime_with_size_and_format(dumps: dict[str, Path], tmp_path: Path,
                                                    ctx: RuntimeContext) -> None:
    now = time.time()
    for i, age_s in enumerate((30000, 20000, 3600)):
        target = tmp_path / f"db-{i}.dump.age"
        shutil.copy(dumps["age"], target)
        set_mtime(target, now - age_s)
    (tmp_path / "db-9.dump.age.partial").write_bytes(b"x")  # in progress: ignored
    outcome = await KIND.run(spec(source=directory(tmp_path), max_age="6h",
                                  require_encrypted=True), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert "db-2.dump.age" in outcome.message
    values = {m.family: m.value for m in outcome.measurements}
    assert values["readiness_backup_backups_found"] == 3
    assert values["readiness_backup_last_size_bytes"] == dumps["age"].stat().st_size
    assert abs(values["readiness_backup_last_completion_timestamp_seconds"] - (now - 3600)) < 2
    assert values["readiness_backup_encrypted"] == 1
    assert any(m.labels == {"format": "age"} for m in outcome.measurements)


async def test_too_old_plaintext_and_empty_fail(dumps: dict[str, Path], tmp_path: Path,
                                                ctx: RuntimeContext) -> None:
    target = tmp_path / "db.dump"
    shutil.copy(dumps["custom"], target)
    set_mtime(target, time.time() - 7 * 3600)
    outcome = await KIND.run(spec(source=directory(tmp_path), max_age="6h",
                                  require_encrypted=True), ctx)
    assert outcome.status is Status.FAIL
    assert "7h" in outcome.message and "not encrypted (format pg_dump-custom)" in \
        outcome.message
    assert {m.family: m.value for m in outcome.measurements}["readiness_backup_encrypted"] == 0
    (tmp_path / "db2.dump").write_bytes(b"")
    outcome = await KIND.run(spec(source=directory(tmp_path)), ctx)
    assert outcome.status is Status.FAIL and "empty" in outcome.message


async def test_shrink_against_previous(dumps: dict[str, Path], tmp_path: Path,
                                       ctx: RuntimeContext) -> None:
    big = tmp_path / "a.sql"
    shutil.copy(dumps["plain"], big)
    set_mtime(big, time.time() - 100)
    small = tmp_path / "b.sql"
    small.write_bytes(dumps["plain"].read_bytes()[:1000])
    outcome = await KIND.run(spec(source=directory(tmp_path), max_shrink=0.5), ctx)
    assert outcome.status is Status.FAIL and "shrank" in outcome.message
    assert {m.family for m in outcome.measurements} >= {"readiness_backup_previous_size_bytes"}
    outcome = await KIND.run(spec(source=directory(tmp_path), max_shrink=None), ctx)
    assert outcome.status is Status.PASS


async def test_name_pattern_and_checksum_sidecar(dumps: dict[str, Path], tmp_path: Path,
                                                 ctx: RuntimeContext) -> None:
    fmt = "db-%Y%m%dT%H%M%SZ.dump"
    for stamp in ("20260101T000000Z", "20260301T060000Z", "20260201T000000Z"):
        shutil.copy(dumps["custom"], tmp_path / f"db-{stamp}.dump")
    (tmp_path / "notes.txt").write_text("not a backup")
    newest = tmp_path / "db-20260301T060000Z.dump"
    set_mtime(newest, 0)  # the name wins over the mtime
    digest = hashlib.sha256(newest.read_bytes()).hexdigest()
    (tmp_path / (newest.name + ".sha256")).write_text(f"{digest}  {newest.name}\n")
    source = directory(tmp_path, time_from="name", name_format=fmt, checksum="sha256")
    outcome = await KIND.run(spec(source=source), ctx)
    assert outcome.status is Status.PASS, outcome.message
    values = {m.family: m.value for m in outcome.measurements}
    assert values["readiness_backup_last_completion_timestamp_seconds"] == 1772344800
    assert values["readiness_backup_backups_found"] == 3
    assert values["readiness_backup_checksum_ok"] == 1
    (tmp_path / (newest.name + ".sha256")).write_text("0" * 64)
    outcome = await KIND.run(spec(source=source), ctx)
    assert outcome.status is Status.FAIL and "does not match" in outcome.message
    assert {m.family: m.value for m in outcome.measurements}["readiness_backup_checksum_ok"] == 0


async def test_directory_format_dumps_and_newer_than(dumps: dict[str, Path], tmp_path: Path,
                                                     ctx: RuntimeContext) -> None:
    backups = tmp_path / "backups"
    models = tmp_path / "models" / "run-7"
    backups.mkdir()
    models.mkdir(parents=True)
    shutil.copytree(dumps["directory"], backups / "artifacts-1")
    set_mtime(backups / "artifacts-1", time.time() - 600)
    model = models / "model.pt"
    model.write_bytes(b"weights")
    set_mtime(model, time.time() - 1200)
    check = spec(source=directory(backups, directories=True),
                 newer_than=directory(tmp_path / "models", recursive=True))
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert any(m.family == "readiness_backup_reference_timestamp_seconds"
               for m in outcome.measurements)
    set_mtime(model, time.time())  # a model trained after the newest backup
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.FAIL and "older than model.pt" in outcome.message


async def test_missing_directory_is_a_config_error(tmp_path: Path, ctx: RuntimeContext) -> None:
    outcome = await KIND.run(spec(source=directory(tmp_path / "nope")), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is not None
    assert outcome.reason.value == "config"
    (tmp_path / "empty").mkdir()
    outcome = await KIND.run(spec(source=directory(tmp_path / "empty")), ctx)
    assert outcome.status is Status.FAIL and "no backups found" in outcome.message


# --------------------------------------------------------------------------- pgBackRest

PGBR_AES = DATA / "pgbackrest-info-aes.json"
PGBR_NONE = DATA / "pgbackrest-info-none.json"
PGBR_STOP = 1795883452  # stop time of the newest (incremental) backup in the capture


async def test_pgbackrest_file_with_cipher(tmp_path: Path) -> None:
    context = ClockContext(state_dir=tmp_path, now=PGBR_STOP + 3600)
    try:
        check = spec(source={"type": "pgbackrest", "file": str(PGBR_AES)}, max_age="6h",
                     require_encrypted=True)
        outcome = await KIND.run(check, context)
        assert outcome.status is Status.PASS, outcome.message
        values = {m.family: m.value for m in outcome.measurements}
        assert values["readiness_backup_last_completion_timestamp_seconds"] == PGBR_STOP
        assert values["readiness_backup_backups_found"] == 2
        assert values["readiness_backup_encrypted"] == 1
        per_type = {m.labels["type"]: m.value for m in outcome.measurements
                    if m.family == "readiness_backup_type_last_completion_timestamp_seconds"}
        assert per_type == {"full": 1795883450, "incr": PGBR_STOP}
        full_only = spec(source={"type": "pgbackrest", "file": str(PGBR_AES),
                                 "backup_types": ["full"], "stanza": "main"})
        outcome = await KIND.run(full_only, context)
        assert "20261128-163047F:" in outcome.message  # the full backup, not the incremental
        context.fixed_now = PGBR_STOP + 7 * 3600
        outcome = await KIND.run(check, context)
        assert outcome.status is Status.FAIL and "7h" in outcome.message
    finally:
        await context.aclose()


async def test_pgbackrest_command_without_cipher(tmp_path: Path) -> None:
    context = ClockContext(state_dir=tmp_path, now=1795883462 + 60)
    try:
        check = spec(source={"type": "pgbackrest", "command": ["cat", str(PGBR_NONE)]},
                     require_encrypted=True)
        outcome = await KIND.run(check, context)
        assert outcome.status is Status.FAIL
        assert "not encrypted (format pgbackrest)" in outcome.message
        broken = spec(source={"type": "pgbackrest", "command": ["sh", "-c", "exit 3"]})
        outcome = await KIND.run(broken, context)
        assert outcome.status is Status.ERROR and "status 3" in outcome.message
        wrong = spec(source={"type": "pgbackrest", "file": str(PGBR_NONE), "stanza": "other"})
        outcome = await KIND.run(wrong, context)
        assert outcome.status is Status.ERROR and "no stanza 'other'" in outcome.message
    finally:
        await context.aclose()


async def test_real_pgbackrest_without_stanzas(tmp_path: Path, ctx: RuntimeContext) -> None:
    """The real binary against an empty repository: no stanza to report."""
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text(f"[global]\nrepo1-path={tmp_path / 'repo'}\nlock-path={tmp_path}\n"
                    f"log-path={tmp_path}\nlog-level-console=off\n")
    command = ["pgbackrest", f"--config={conf}", "--output=json", "info"]
    outcome = await KIND.run(spec(source={"type": "pgbackrest", "command": command}), ctx)
    assert outcome.status is Status.ERROR and "0 stanzas" in outcome.message


# --------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3-compatible server on a free loopback port."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


S3_KEY_ID = "AKIATESTBACKUPKEY01"
S3_SECRET = "s3-secret-value-never-shown-0123456789"


async def test_s3_bucket_prefix(s3_endpoint: str, dumps: dict[str, Path], ctx: RuntimeContext,
                                monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("BACKUP_S3_KEY", S3_KEY_ID)
    monkeypatch.setenv("BACKUP_S3_SECRET", S3_SECRET)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
    client.create_bucket(Bucket="qbitel-backups")
    body = dumps["age"].read_bytes()
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        client.put_object(Bucket="qbitel-backups", Key=f"db/db-{stamp}.dump.age", Body=body)
    client.put_object(Bucket="qbitel-backups", Key="db/db-20260103T000000Z.dump",
                      Body=dumps["custom"].read_bytes())
    client.put_object(Bucket="qbitel-backups", Key="config/c.tar", Body=b"x")
    source = {"type": "s3", "bucket": "qbitel-backups", "prefix": "db/",
              "endpoint_url": s3_endpoint, "access_key_id": "${BACKUP_S3_KEY}",
              "secret_access_key": "${BACKUP_S3_SECRET}", "time_from": "name",
              "name_format": "db-%Y%m%dT%H%M%SZ.dump.age", "pattern": "*.age"}
    outcome = await KIND.run(spec(source=source, require_encrypted=True), ctx)
    assert outcome.status is Status.PASS, outcome.message
    values = {m.family: m.value for m in outcome.measurements}
    assert values["readiness_backup_backups_found"] == 2
    assert values["readiness_backup_last_size_bytes"] == len(body)
    assert "db-20260102T000000Z.dump.age" in outcome.message
    # by LastModified: the plaintext dump uploaded last is the newest
    by_mtime = {**source, "time_from": "mtime", "pattern": "*"}
    del by_mtime["name_format"]
    outcome = await KIND.run(spec(source=by_mtime, require_encrypted=True, max_age="1h"), ctx)
    assert outcome.status is Status.FAIL and "pg_dump-custom" in outcome.message
    missing = {**source, "bucket": "no-such-bucket"}
    outcome = await KIND.run(spec(source=missing), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is not None
    assert outcome.reason.value == "config"
    for text in [outcome.message, *(r.getMessage() for r in caplog.records)]:
        assert S3_SECRET not in text


def backup_fragment() -> config.Config:
    """50-backup.yaml with the connections of 30-postgres.yaml (10.2 uses app-db)."""
    docs = {d[0].rsplit("/", 1)[-1]: d for d in config._preset_documents("qbitel-production")}
    data = config._parse_yaml(docs["50-backup.yaml"][1], docs["50-backup.yaml"][0])
    postgres = config._parse_yaml(docs["30-postgres.yaml"][1], docs["30-postgres.yaml"][0])
    data["connections"] = postgres["connections"]
    return config.build(data, "fragment", environ={})


async def test_backup_in_progress_is_not_red(dumps: dict[str, Path], tmp_path: Path,
                                             ctx: RuntimeContext) -> None:
    """Backups every 6 h: 6h20m after the last one, the next is still being written."""
    target = tmp_path / "db-0.dump"
    shutil.copy(dumps["custom"], target)
    set_mtime(target, time.time() - (6 * 3600 + 20 * 60))
    (tmp_path / "db-1.dump.partial").write_bytes(b"PGDMP")  # the run in progress
    old_rule = await KIND.run(spec(source=directory(tmp_path), max_age="6h"), ctx)
    assert old_rule.status is Status.FAIL
    allowed = await KIND.run(spec(source=directory(tmp_path), max_age="6h",
                                  expected_duration="1h"), ctx)
    assert allowed.status is Status.PASS, allowed.message
    values = {m.family: m.value for m in allowed.measurements}
    assert values["readiness_backup_max_age_seconds"] == 7 * 3600
    set_mtime(target, time.time() - (7 * 3600 + 10 * 60))  # a run was missed
    late = await KIND.run(spec(source=directory(tmp_path), max_age="6h",
                               expected_duration="1h"), ctx)
    assert late.status is Status.FAIL
    assert "(max 7h00m = 6h00m interval + 1h00m expected duration)" in late.message


def test_preset_backup_freshness_allows_one_backup_run() -> None:
    checks = {c.id: c for c in backup_fragment().checks}
    for cid, interval in (("3.1.4", 6 * 3600), ("10.1.1", 6 * 3600), ("10.1.2", 86400)):
        check = checks[cid]
        assert isinstance(check, BackupCheck)
        assert check.max_age == interval
        assert check.expected_duration == 3600
    for cid in ("10.2-database-failure", "10.2-complete-cluster-failure"):
        assert checks[cid].expected_duration == 3600  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- preset


def test_preset_fragment_loads_in_an_empty_environment() -> None:
    built = backup_fragment()
    ids = {c.id for c in built.checks}
    assert ids >= {"2.3.3", "3.1.4", "3.1.5-drill", "10.1.1", "10.1.2", "10.1.3",
                   "10.2-database-failure", "10.2-application-failure",
                   "10.2-complete-cluster-failure", "10.3.1", "10.3.2"}
    rpo = {c.id: c for c in built.checks if c.kind == "rpo"}
    assert rpo["10.2-database-failure"].rpo_target == 6 * 3600  # type: ignore[attr-defined]
    assert rpo["10.2-application-failure"].rpo_target == 0  # type: ignore[attr-defined]
    # enforced, not disabled: RPO 0 is judged against the primary's synchronous standbys
    application = rpo["10.2-application-failure"]
    assert application.enabled
    assert application.connection == "app-db"  # type: ignore[attr-defined]
    assert [s.type for s in application.sources] == ["sync_replication"]  # type: ignore[attr-defined]
    assert rpo["10.2-complete-cluster-failure"].rto_target == 7200  # type: ignore[attr-defined]


def test_bad_options_name_their_path() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.build({"checks": [{"id": "b", "section": "10.1", "title": "t", "kind": "backup",
                                  "source": {"type": "directory", "path": "/x",
                                             "time_from": "name"},
                                  "max_shrink": 2}]}, "t", environ={})
    text = str(info.value)
    assert "max_shrink" in text and "name_format" in text


def test_switching_the_preset_to_run_mode_loads(tmp_path: Path) -> None:
    """The override documented in docs/probes/backup.md validates against the fragment."""
    key = tmp_path / "drill.key"
    key.write_text("AGE-SECRET-KEY-1PLACEHOLDER\n")
    docs = [d for d in config._preset_documents("qbitel-production")
            if d[0].endswith("50-backup.yaml")]
    data = config._parse_yaml(docs[0][1], docs[0][0])
    override = config._parse_yaml(f"""
connections:
  app-db: {{kind: postgres, host: postgres, database: qbitel_prod, password_env: DB_PW}}
  drill-db: {{kind: postgres, host: drill-db.qbitel.svc, user: drill, password_env: DRILL_PW}}
checks:
  - id: "10.3.1"
    mode: run
    records_file: null
    source: {{type: directory, path: /var/backups/qbitel/db, pattern: "*.dump.age"}}
    age_identity: {{file: {key}}}
    connection: drill-db
    production_connections: [app-db]
    verify: {{tables: [public.users], min_rows: {{public.users: 1}}}}
  - {{id: "10.2-database-failure", drill_records: null}}
  - {{id: "10.2-application-failure", connection: app-db, enabled: true}}
""", "override")
    built = config.build(config._merge(data, override), "override", environ={})
    drill_check = built.check("10.3.1")
    assert drill_check.mode == "run"  # type: ignore[attr-defined]
    assert built.check("10.2-application-failure").enabled
    bad = config._parse_yaml("""
checks:
  - {id: "10.3.1", mode: run, records_file: null, connection: nope,
     source: {type: directory, path: /x}}
""", "bad")
    with pytest.raises(config.ConfigError, match="no connection named 'nope'"):
        config.build(config._merge(data, bad), "bad", environ={})


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian package prometheus) is not installed")
async def test_backup_exposition_passes_promtool(dumps: dict[str, Path], tmp_path: Path,
                                                 ctx: RuntimeContext) -> None:
    """`readiness_backup_count` was flagged: "should not have _count suffix"."""
    target = tmp_path / "db.dump"
    shutil.copy(dumps["custom"], target)
    outcome = await KIND.run(spec(source=directory(tmp_path), max_age="6h"), ctx)
    helps = {f.name: f.help for f in KIND.metrics}
    lines = []
    for m in outcome.measurements:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(m.labels.items()))
        lines += [f"# HELP {m.family} {helps[m.family]}", f"# TYPE {m.family} gauge",
                  f"{m.family}{{{labels}}} {m.value}"]
    result = subprocess.run(["promtool", "check", "metrics"], input="\n".join(lines) + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    assert "readiness_backup_backups_found" in helps
