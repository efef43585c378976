"""Core daemon figures (issue 2): /metrics latency with 10,000 checks and 10 concurrent
scrapers, exposition size, event-loop lag, scheduler overhead, resident memory.

Run:  .venv/bin/python bench/core.py [--checks 10000] [--seconds 20]

The exporter runs in this process (so the event-loop lag is measured on its own loop);
the 10 scrapers run in a separate process, as Prometheus would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter import config  # noqa: E402
from exporter.daemon import Runtime, families_of  # noqa: E402
from exporter.metrics import ReadinessCollector  # noqa: E402
from exporter.server import make_app  # noqa: E402
from exporter.webconfig import BasicAuth  # noqa: E402

SCRAPER = textwrap.dedent("""
    import asyncio, json, sys, time
    import aiohttp
    url, seconds = sys.argv[1], float(sys.argv[2])
    concurrency, gzip = int(sys.argv[3]), sys.argv[4] == "1"
    # every > 0: the workers ask together at every tick (a burst of `concurrency`
    # requests each `every` seconds, as that many Prometheus servers with aligned scrape
    # intervals); every == 0: a closed loop (each asks again as soon as it has its answer).
    every = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    async def worker(session, out, start, deadline):
        headers = {"Accept-Encoding": "gzip"} if gzip else {"Accept-Encoding": "identity"}
        tick = 0
        while time.monotonic() < deadline:
            if every:
                tick += 1
                await asyncio.sleep(max(0.0, start + tick * every - time.monotonic()))
            started = time.monotonic()
            async with session.get(url, headers=headers, auto_decompress=False) as r:
                body = await r.read()
            out.append((time.monotonic() - started, len(body)))
    async def main():
        out = []
        start = time.monotonic()
        deadline = start + seconds
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(worker(session, out, start, deadline)
                                   for _ in range(concurrency)))
        print(json.dumps(out))
    asyncio.run(main())
""")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_config(checks: int, interval: float, spread: float) -> config.Config:
    return config.build({
        "settings": {"first_round_spread": spread, "max_concurrency": 256},
        "checks": [{"id": f"check-{i:05d}", "section": f"{1 + i % 12}.{1 + i % 4}",
                    "title": f"bench check {i}", "kind": "env", "interval": interval,
                    "severity": "critical" if i % 5 == 0 else "warning",
                    "required": ["PATH"]} for i in range(checks)],
    }, "bench", {})


async def lag_monitor(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(0.01)
        samples.append(loop.time() - started - 0.01)


async def scrape_phase(args: argparse.Namespace) -> dict[str, Any]:
    cfg = make_config(args.checks, interval=60.0, spread=5.0)
    runtime = Runtime(cfg, None)
    app = make_app(runtime, BasicAuth({}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = 19000 + os.getpid() % 1000
    await web.TCPSite(runner, "127.0.0.1", port).start()
    while not runtime.store.first_round_complete():
        await asyncio.sleep(0.2)
    rss_loaded = rss_mb()
    results: dict[str, Any] = {"checks": args.checks, "rss_mb_loaded": rss_loaded}
    for gzip in (True, False):
        lags: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(lag_monitor(lags, stop))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}/metrics",
            str(args.seconds), "10", "1" if gzip else "0", stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        stop.set()
        await monitor
        import json
        scrapes = json.loads(out)
        latencies = [s[0] for s in scrapes]
        key = "gzip" if gzip else "identity"
        results[key] = {
            "scrapes": len(scrapes),
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "body_bytes": statistics.median(s[1] for s in scrapes),
            "loop_lag_p99_ms": percentile(lags, 0.99) * 1000,
            "loop_lag_max_ms": max(lags) * 1000,
        }
    results["rss_mb_after_scrapes"] = rss_mb()
    results["rss_mb_peak_served"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    body = runtime.exposition.render(False)
    results["samples"] = sum(1 for line in body.splitlines() if not line.startswith(b"#"))

    # The plain prometheus_client custom collector over the same store, same process.
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(runtime.store, families_of(cfg.checks),
                                         runtime.reload_state))
    for name, render in (("plain_text", generate_latest), ("plain_openmetrics",
                                                            generate_openmetrics)):
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            render(registry)
            timings.append(time.perf_counter() - started)
        results[f"{name}_render_ms"] = statistics.median(timings) * 1000
    await runner.cleanup()
    return results


async def scheduler_phase(checks: int, seconds: float) -> dict[str, float]:
    cfg = make_config(checks, interval=1.0, spread=1.0)
    runtime = Runtime(cfg, None)
    await runtime.start()
    await asyncio.sleep(2.0)  # warm up: first round done
    runs_before = sum(s.runs for s in runtime.store.states.values())
    cpu_before = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu_before
    runs = sum(s.runs for s in runtime.store.states.values()) - runs_before
    await runtime.stop()
    return {"runs": runs, "cpu_seconds": cpu, "cpu_seconds_per_1000_runs": cpu / runs * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    results = asyncio.run(scrape_phase(args))
    sched = asyncio.run(scheduler_phase(1000, 10.0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"command: .venv/bin/python bench/core.py --checks {args.checks} "
          f"--seconds {args.seconds:g}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"checks loaded: {results['checks']}, samples per scrape: {results['samples']}")
    for key in ("gzip", "identity"):
        r = results[key]
        print(f"/metrics ({key}, 10 concurrent scrapers, {args.seconds:g}s): "
              f"{r['scrapes']} scrapes, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"body {r['body_bytes'] / 1e6:.2f} MB; event-loop lag p99 "
              f"{r['loop_lag_p99_ms']:.1f} ms (max {r['loop_lag_max_ms']:.1f} ms)")
    print(f"plain prometheus_client collector render: text "
          f"{results['plain_text_render_ms']:.0f} ms, OpenMetrics "
          f"{results['plain_openmetrics_render_ms']:.0f} ms per scrape")
    print(f"ratio plain text render / served p99 (identity): "
          f"{results['plain_text_render_ms'] / results['identity']['p99_ms']:.1f}x; "
          f"plain text render / served p50: "
          f"{results['plain_text_render_ms'] / results['identity']['p50_ms']:.1f}x")
    print(f"scheduler: {sched['runs']:.0f} no-op runs, {sched['cpu_seconds']:.2f} CPU s, "
          f"{sched['cpu_seconds_per_1000_runs']:.3f} CPU s per 1,000 runs")
    print(f"resident memory: {results['rss_mb_loaded']:.0f} MB with {results['checks']} "
          f"checks loaded, "
          f"{results['rss_mb_after_scrapes']:.0f} MB after the scrapes, peak while serving "
          f"{results['rss_mb_peak_served']:.0f} MB (peak incl. the plain-collector comparison "
          f"{peak:.0f} MB)")


if __name__ == "__main__":
    main()
