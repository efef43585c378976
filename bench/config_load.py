"""Configuration loading figures (issue 17): time to validate the largest accepted file,
time to refuse oversized and hostile ones, and how concurrent reload requests coalesce.

Run:  .venv/bin/python bench/config_load.py [--checks 1000] [--clients 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter import config  # noqa: E402
from exporter.config import MAX_CONFIG_BYTES, ConfigError  # noqa: E402
from exporter.daemon import Runtime  # noqa: E402

CHECK = """  - id: "c{i}"
    section: "1.2"
    title: "Required environment variables, group {i}"
    kind: env
    required: [HOME, PATH, DATABASE_HOST, DATABASE_PASSWORD, REDIS_HOST, JWT_SECRET]
    interval: 60s
    timeout: 10s
"""
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def config_text(checks: int) -> str:
    return "checks:\n" + "".join(CHECK.format(i=i) for i in range(checks))


def largest_accepted() -> str:
    text, i = "checks:\n", 0
    while len(text) + len(CHECK) + 16 < MAX_CONFIG_BYTES:
        text += CHECK.format(i=i)
        i += 1
    return text


def timed(load: Callable[[], object], repeat: int = 3) -> float:
    """Median seconds of `load()` (a ConfigError counts as done)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        with contextlib.suppress(ConfigError):
            load()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def coalescing(path: Path, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    """`clients` tasks each asking for a reload back to back for `seconds`; the event
    loop's lag meanwhile (what a scrape waits for)."""
    runtime = Runtime(config.load(path), path)
    await runtime.start()
    requests = 0
    deadline = time.monotonic() + seconds
    lags: list[float] = []

    async def monitor() -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < deadline:
            started = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - started - 0.01)

    async def client() -> None:
        nonlocal requests
        while time.monotonic() < deadline:
            await runtime.reload()
            requests += 1

    await asyncio.gather(monitor(), *(client() for _ in range(clients)))
    await runtime.stop()
    return requests, runtime.reloads_run, sorted(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # status changes of the checks run during reloads
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        typical = root / "typical.yaml"
        typical.write_text(config_text(args.checks))
        largest = root / "largest.yaml"
        largest.write_text(largest_accepted())
        huge = root / "huge.yaml"
        with huge.open("w") as handle:
            handle.write(config_text(1))
            handle.write(("# " + "x" * 1000 + "\n") * 50_000)
        bomb = root / "bomb.yaml"
        bomb.write_text(BOMB + "checks:\n" + CHECK.format(i=0) + "    severity: *i\n")
        (root / "d0.yaml").write_text(config_text(1))
        for level in range(1, 23):
            for side in "lr":
                (root / f"{side}{level}.yaml").write_text(f"include: [d{level - 1}.yaml]\n")
            (root / f"d{level}.yaml").write_text(f"include: [l{level}.yaml, r{level}.yaml]\n")
        shallow = root / "d3.yaml"

        print("command: .venv/bin/python bench/config_load.py "
              f"--checks {args.checks} --clients {args.clients} --seconds {args.seconds:g}")
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
        print(f"validate {args.checks} checks ({typical.stat().st_size / 1024:.0f} KiB): "
              f"{timed(lambda: config.load(typical)) * 1000:.0f} ms")
        count = largest.read_text().count("- id:")
        print(f"validate the largest accepted file ({largest.stat().st_size / 2**20:.1f} MiB, "
              f"{count} checks): {timed(lambda: config.load(largest), 1):.2f} s")
        print(f"refuse a {huge.stat().st_size / 2**20:.0f} MB file: "
              f"{timed(lambda: config.load(huge)) * 1000:.1f} ms")
        print("refuse a billion-laughs alias bomb: "
              f"{timed(lambda: config.load(bomb)) * 1000:.1f} ms")
        print(f"refuse a diamond of 22 includes: "
              f"{timed(lambda: config.load(root / 'd22.yaml')) * 1000:.1f} ms")
        print(f"load a diamond of 3 includes (10 files, each read once): "
              f"{timed(lambda: config.load(shallow)) * 1000:.1f} ms")
        requests, reloads, lags = asyncio.run(coalescing(typical, args.clients, args.seconds))
        print(f"{args.clients} clients reloading back to back for {args.seconds:g} s "
              f"({args.checks} checks): {requests} requests answered by {reloads} reloads; "
              f"event-loop lag p50 {lags[len(lags) // 2] * 1000:.1f} ms, "
              f"p99 {lags[int(len(lags) * 0.99)] * 1000:.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
