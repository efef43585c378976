"""Bench: a restore drill of a >= 1 GB database against a plain `pg_restore` of the same dump.

Creates a throw-away cluster, generates a database of at least 1 GB server-side with
generate_series (one table with a primary key), dumps it with `pg_dump -Fc`, then runs
in ABBA order: plain restore (`createdb` + `pg_restore` with the drill's flags), drill
(`execute_drill`: scratch database, `pg_restore`, verification, drop), drill, plain.
Then two drills of the dump encrypted with age. Prints each wall time, the drill's
phases and the drill's overhead over the plain restore (target: at most 10%). Takes
several minutes; run it in the background.

    cd /work/main && .venv/bin/python -m bench.restore_drill \
        [--rows 10000000] [--rounds 2] [--encrypted 2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from exporter.context import RuntimeContext
from exporter.probes.backup.drill import RestoreDrillCheck, execute_drill
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, create_pg_cluster, pg_bin

SETTINGS = {"shared_buffers": "'256MB'", "maintenance_work_mem": "'256MB'",
            "max_wal_size": "'8GB'", "checkpoint_timeout": "'30min'"}
FLAGS = ["--no-owner", "--no-acl", "--exit-on-error"]


class PhaseTimes(logging.Handler):
    """Collects the drill's phase log lines with a monotonic time stamp."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        phase = getattr(record, "phase", None)
        if phase is not None:
            self.marks.append((str(phase), time.perf_counter()))
        elif record.getMessage() == "restore drill finished":
            self.marks.append(("done", time.perf_counter()))


def sql(cluster: PgCluster, statement: str, database: str = "src") -> str:
    """Run one statement with psql (no 60 s limit: generating 1 GB takes longer)."""
    return subprocess.run(
        [pg_bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
         str(cluster.port), "-U", "postgres", "-d", database, "-c", statement],
        check=True, capture_output=True, text=True).stdout


def generate(cluster: PgCluster, rows: int) -> int:
    sql(cluster, "CREATE DATABASE src", "postgres")
    sql(cluster, "CREATE TABLE events AS SELECT g AS id, now() - g * interval '1 second' "
        f"AS at, md5(g::text) AS a, md5((g * 7)::text) AS b FROM generate_series(1, {rows}) g")
    sql(cluster, "ALTER TABLE events ADD PRIMARY KEY (id)")
    sql(cluster, "VACUUM ANALYZE events")
    return int(sql(cluster, "SELECT pg_database_size('src')").strip())


def plain_restore(cluster: PgCluster, dump: Path) -> float:
    base = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
    started = time.perf_counter()
    subprocess.run([pg_bin("createdb"), *base, "plain_restore"], check=True)
    subprocess.run([pg_bin("pg_restore"), *base, *FLAGS, "-d", "plain_restore", str(dump)],
                   check=True)
    elapsed = time.perf_counter() - started
    subprocess.run([pg_bin("dropdb"), *base, "plain_restore"], check=True)
    return elapsed


async def drill(cluster: PgCluster, backups: Path, state: Path, rows: int,
                phases: PhaseTimes, identity: Path | None = None
                ) -> tuple[float, float, dict[str, float]]:
    ctx = RuntimeContext({"drill": PostgresConnection(kind="postgres", port=cluster.port,
                                                      tls="disable",
                                                      command_timeout=3600)},
                         state_dir=state)
    spec = RestoreDrillCheck.model_validate({
        "id": "bench", "section": "10.3", "title": "bench", "kind": "restore_drill",
        "mode": "run", "scenario": "bench", "connection": "drill",
        "source": {"type": "directory", "path": str(backups)},
        "verify": {"tables": ["events"], "min_rows": {"events": rows}},
        "age_identity": {"file": str(identity)} if identity else None})
    phases.marks.clear()
    started = time.perf_counter()
    try:
        record = await execute_drill(spec, ctx)
    finally:
        await ctx.aclose()
    total = time.perf_counter() - started
    assert record.success, record.detail
    marks = phases.marks
    spans = {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}
    return record.duration, total, spans


def encrypted_drills(args: argparse.Namespace, cluster: PgCluster, work: Path, dump: Path,
                     phases: PhaseTimes, plain: float) -> None:
    """Drills of the same dump encrypted with age (decrypted streaming into pg_restore)."""
    key = work / "age.key"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in key.read_text().splitlines()
                     if "public key" in line)
    encrypted = work / "encrypted"
    encrypted.mkdir()
    started = time.perf_counter()
    subprocess.run(["age", "-r", recipient, "-o", str(encrypted / "src.dump.age"), str(dump)],
                   check=True)
    print(f"age encryption of the dump: {time.perf_counter() - started:.1f}s", flush=True)
    durations = []
    for _ in range(args.encrypted):
        duration, total, spans = asyncio.run(
            drill(cluster, encrypted, work / "state", args.rows, phases, key))
        durations.append(duration)
        shown = ", ".join(f"{k} {v:.1f}s" for k, v in spans.items())
        print(f"encrypted drill: {duration:.1f}s recorded, {total:.1f}s with drop; "
              f"phases: {shown}", flush=True)
    e = statistics.median(durations)
    print(f"median encrypted drill {e:.1f}s: {(e / plain - 1) * 100:+.1f}% over the plain "
          "restore of the unencrypted dump")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds")
    parser.add_argument("--encrypted", type=int, default=2,
                        help="then this many drills of the age-encrypted dump")
    args = parser.parse_args()
    phases = PhaseTimes()
    logger = logging.getLogger("readiness.backup.drill")
    logger.addHandler(phases)
    logger.setLevel(logging.INFO)
    work = Path(tempfile.mkdtemp(prefix="readiness-bench-drill-"))
    cluster = create_pg_cluster(SETTINGS)
    try:
        started = time.perf_counter()
        size = generate(cluster, args.rows)
        print(f"generated database: {size / 2**30:.2f} GiB ({args.rows:,} rows) in "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        backups = work / "backups"
        backups.mkdir()
        dump = backups / "src.dump"
        started = time.perf_counter()
        subprocess.run([pg_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U",
                        "postgres", "-Fc", "-f", str(dump), "src"], check=True)
        print(f"pg_dump -Fc: {dump.stat().st_size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        plain: list[float] = []
        drills: list[float] = []
        for _ in range(args.rounds):
            for step in ("plain", "drill", "drill", "plain"):
                if step == "plain":
                    plain.append(plain_restore(cluster, dump))
                    print(f"plain createdb + pg_restore: {plain[-1]:.1f}s", flush=True)
                else:
                    duration, total, spans = asyncio.run(
                        drill(cluster, backups, work / "state", args.rows, phases))
                    drills.append(duration)
                    shown = ", ".join(f"{k} {v:.1f}s" for k, v in spans.items())
                    print(f"drill: {duration:.1f}s recorded (start -> verified), {total:.1f}s "
                          f"with drop; phases: {shown}", flush=True)
        p, d = statistics.median(plain), statistics.median(drills)
        print(f"median plain restore {p:.1f}s, median drill {d:.1f}s: drill adds "
              f"{(d / p - 1) * 100:+.1f}% (target <= +10%)", flush=True)
        if args.encrypted:
            encrypted_drills(args, cluster, work, dump, phases, p)
        print("reproduce: cd /work/main && .venv/bin/python -m bench.restore_drill")
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
