"""Bench: 200 postgres/sql checks on one server, run repeatedly through RuntimeContext.

Prints the connections the exporter opened in total (counted exactly from the server
log with `log_connections = on`, by application_name) after each round, and the
exporter's CPU seconds per 1,000 check runs. Loopback only; takes well under a minute.

    cd /work/main && .venv/bin/python -m bench.postgres [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome
from exporter.probes.postgres import probe, sql
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, pg_cluster

APP = "readiness-bench"


def build_checks() -> list[tuple[Any, CheckSpec]]:
    """100 postgres checks (the six sections in turn) and 100 sql checks.

    The archiving checks fail (archive_mode is off on the bench cluster): that is
    expected and costs the same as a pass.
    """
    base = {"section": "3.1", "title": "bench", "connection": "db"}
    sections: list[dict[str, Any]] = [
        {"min_version_num": 150000},
        {"settings": {"shared_buffers": "16MB", "work_mem": ">= 4MB", "max_connections": 50}},
        {"max_connections_used": 0.9},
        {"tls": {"min_share": 0.0}},
        {"archiving": {}},
        {"replication": {"role": "primary", "min_replicas": 0}},
    ]
    queries = ["SELECT count(*) FROM pg_class", "SELECT now() - pg_postmaster_start_time()",
               "SELECT 1", "SELECT count(*) FROM pg_settings WHERE unit = 'kB'"]
    checks: list[tuple[Any, CheckSpec]] = []
    for i in range(100):
        spec = probe.PostgresCheck.model_validate(
            {**base, "id": f"pg-{i}", "kind": "postgres", **sections[i % len(sections)]})
        checks.append((probe.run, spec))
    for i in range(100):
        query = sql.SqlCheck.model_validate(
            {**base, "id": f"sql-{i}", "kind": "sql", "query": queries[i % len(queries)],
             "op": ">=", "threshold": 0})
        checks.append((sql.run, query))
    return checks


def connections_opened(cluster: PgCluster) -> int:
    log = (cluster.root / "server.log").read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in log.splitlines()
               if "connection authorized" in line and f"application_name={APP}" in line)


async def bench(cluster: PgCluster, rounds: int, concurrency: int, max_size: int) -> None:
    conn = PostgresConnection.model_validate(
        {"kind": "postgres", "port": cluster.port, "application_name": APP,
         "max_size": max_size})
    ctx = RuntimeContext({"db": conn}, state_dir=Path("/tmp/readiness-bench-state"))
    checks = build_checks()
    limit = asyncio.Semaphore(concurrency)

    async def one(run: Any, spec: CheckSpec) -> Outcome:
        async with limit:
            outcome: Outcome = await run(spec, ctx)
            return outcome

    statuses: Counter[str] = Counter()
    cpu_total = wall_total = 0.0
    opened_by_round: list[int] = []
    try:
        for _ in range(rounds):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            outcomes = await asyncio.gather(*(one(run, spec) for run, spec in checks))
            cpu_total += time.process_time() - cpu0
            wall_total += time.perf_counter() - wall0
            statuses.update(o.status.value for o in outcomes)
            opened_by_round.append(connections_opened(cluster))
    finally:
        await ctx.aclose()
    runs = rounds * len(checks)
    print(f"checks: {len(checks)} (100 postgres, 100 sql) on one server, {rounds} rounds, "
          f"{runs} runs, concurrency {concurrency}, pool max_size {max_size}")
    print(f"outcomes: {dict(statuses)}")
    print(f"connections opened in total after each round: {opened_by_round}")
    print(f"exporter CPU seconds per 1,000 runs: {cpu_total / runs * 1000:.3f}")
    print(f"wall seconds per round of {len(checks)}: {wall_total / rounds:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-size", type=int, default=4)
    args = parser.parse_args()
    print("command: cd /work/main && .venv/bin/python -m bench.postgres "
          f"--rounds {args.rounds} --concurrency {args.concurrency} --max-size {args.max_size}")
    print(f"python {sys.version.split()[0]}")
    with pg_cluster({"log_connections": "on"}) as cluster:
        asyncio.run(bench(cluster, args.rounds, args.concurrency, args.max_size))


if __name__ == "__main__":
    main()
