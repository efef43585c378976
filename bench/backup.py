"""Bench: find the newest backup among 100,000 files; longest event-loop stall meanwhile.

Builds a tree of 100 directories x 1,000 files with random mtimes (in a temporary
directory), then runs the `backup` probe (recursive directory source) several times
through a RuntimeContext while a ticker coroutine measures how late the event loop
wakes it (sleep 5 ms, record the overshoot). Targets: under 2 s, no stall over 100 ms.

    cd /work/main && .venv/bin/python -m bench.backup [--files 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from exporter.context import RuntimeContext
from exporter.probes.backup.probe import KIND, BackupCheck


def build_tree(root: Path, files: int, per_dir: int = 1000) -> float:
    """Create `files` small files with random mtimes; return the newest mtime."""
    rng = random.Random(7)
    now = time.time()
    newest = 0.0
    for index in range(files):
        folder = root / f"d{index // per_dir:03d}"
        if index % per_dir == 0:
            folder.mkdir()
        path = folder / f"db-{index:06d}.dump"
        with open(path, "wb") as handle:
            handle.write(b"age-encryption.org/v1\n" + b"x" * 64)
        when = now - rng.uniform(0, 30 * 86400)
        os.utime(path, (when, when))
        newest = max(newest, when)
    return newest


async def ticker(stop: asyncio.Event, stalls: list[float]) -> None:
    """Record how late each 5 ms sleep wakes up."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        stalls.append(time.perf_counter() - before - 0.005)


async def measure(root: Path, runs: int, expected: float) -> tuple[list[float], float]:
    ctx = RuntimeContext(state_dir=root / "state")
    spec = BackupCheck.model_validate({
        "id": "bench", "section": "10.1", "title": "bench", "kind": "backup",
        "source": {"type": "directory", "path": str(root / "tree"), "recursive": True},
        "max_age": "30d", "require_encrypted": True})
    times: list[float] = []
    stalls: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stop, stalls))
    try:
        for _ in range(runs):
            started = time.perf_counter()
            outcome = await KIND.run(spec, ctx)
            times.append(time.perf_counter() - started)
            found = {m.family: m.value for m in outcome.measurements}
            assert abs(found["readiness_backup_last_completion_timestamp_seconds"]
                       - expected) < 1e-3, outcome.message
            assert found["readiness_backup_backups_found"] > 0
    finally:
        stop.set()
        await tick
        await ctx.aclose()
    return times, max(stalls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="readiness-bench-backup-"))
    try:
        (root / "tree").mkdir()
        started = time.perf_counter()
        newest = build_tree(root / "tree", args.files)
        print(f"built {args.files:,} files in {time.perf_counter() - started:.1f}s")
        os.sync()
        times, stall = asyncio.run(measure(root, args.runs, newest))
        print(f"find newest of {args.files:,} files: first run {times[0]:.3f}s, "
              f"median {statistics.median(times):.3f}s, max {max(times):.3f}s "
              f"over {len(times)} runs (target < 2 s)")
        print(f"longest event-loop stall: {stall * 1000:.1f} ms (target < 100 ms)")
        print("reproduce: cd /work/main && .venv/bin/python -m bench.backup")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
