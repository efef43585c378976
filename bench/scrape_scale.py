"""Scrape at scale (issue 16): /metrics with gzip for 100,000 checks and 10 concurrent
scrapers: p99 latency (target < 100 ms), event-loop lag p99 (< 50 ms) and resident
memory (< 600 MB), side by side with the plain prometheus_client render of the same data.

Run:  .venv/bin/python bench/scrape_scale.py [--checks 100000] [--seconds 20]
      [--scrape-every 0 1]

Each `--scrape-every` value is one run of the 10 scrapers: 0 a closed loop (each asks
again as soon as it has its answer: the most scrapes the machine can serve), N > 0 a
burst of 10 concurrent scrapes every N seconds (10 Prometheus servers whose scrape
intervals line up).

The store holds synthetic outcomes (pass, fail, error with a reason; one family sample
each), recorded as the scheduler would; the scheduler is not started and no probe
runs, so the figures are the cost of serving, not of probing. The exporter runs in
this process (its event-loop lag is measured on its own loop); the scrapers run in a
separate process, as Prometheus would.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from core import SCRAPER, lag_monitor, percentile, rss_mb  # noqa: E402

from exporter import config  # noqa: E402
from exporter.daemon import Runtime, families_of  # noqa: E402
from exporter.metrics import ReadinessCollector  # noqa: E402
from exporter.model import Measurement, Outcome, Reason  # noqa: E402
from exporter.server import make_app  # noqa: E402
from exporter.webconfig import BasicAuth  # noqa: E402

TARGETS = {"p99_ms": 100.0, "loop_lag_p99_ms": 50.0, "rss_mb": 600.0}


def make_config(checks: int, state_dir: str) -> config.Config:
    """`checks` env checks; `state_dir` fresh per run (the board history kept there by one
    run would otherwise be loaded by the next, and its memory counted)."""
    return config.build({
        "settings": {"state_dir": state_dir},
        "checks": [{"id": f"check-{i:06d}", "section": f"{1 + i % 12}.{1 + i % 4}",
                    "title": f"bench check {i}", "kind": "env", "interval": 60,
                    "severity": "critical" if i % 5 == 0 else "warning",
                    "required": ["PATH"]} for i in range(checks)],
    }, "bench", {})


def synthetic_outcome(i: int) -> Outcome:
    sample = (Measurement("readiness_env_variable_present", 1.0 if i % 10 else 0.0,
                          {"variable": "PATH"}),)
    if i % 10 == 0:
        return Outcome.failed("PATH missing", sample)
    if i % 97 == 0:
        return Outcome.errored(Reason.TIMEOUT, "timed out", sample)
    return Outcome.passed("PATH set", sample)


async def serve_and_scrape(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    cfg = make_config(args.checks, args.state_dir)
    runtime = Runtime(cfg, None)
    # Serving only: the app starts the runtime, whose scheduler would run 100,000 probes
    # in its first-round spread and replace the synthetic outcomes.
    runtime.scheduler.start = lambda: None  # type: ignore[method-assign]
    now = time.time()
    for i, spec in enumerate(cfg.checks):
        runtime.store.record(spec.id, synthetic_outcome(i), now, 0.01)
    results: dict[str, Any] = {"setup_s": time.perf_counter() - started}
    app = make_app(runtime, BasicAuth({}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = 20000 + os.getpid() % 1000
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # The first scrape builds the cached body; Prometheus asks for gzip, so that is the
    # body built (the text body is built only when a scrape asks for it).
    await runtime.exposition.body(False, True)
    results["rss_mb_loaded"] = rss_mb()
    results["served"] = {}
    for every in args.scrape_every:
        lags: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(lag_monitor(lags, stop))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}/metrics",
            str(args.seconds), "10", "1", str(every), stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        stop.set()
        await monitor
        scrapes = json.loads(out)
        latencies = [s[0] for s in scrapes]
        results["served"][every] = {
            "scrapes": len(scrapes),
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000,
            "gzip_bytes": statistics.median(s[1] for s in scrapes),
            "loop_lag_p99_ms": percentile(lags, 0.99) * 1000,
            "loop_lag_max_ms": max(lags) * 1000,
        }
    results["rss_mb_after"] = rss_mb()
    results["rss_mb_peak_served"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    body = runtime.exposition.render(False)
    results["body_bytes"] = len(body)
    results["samples"] = sum(1 for line in body.splitlines() if not line.startswith(b"#"))

    # The plain prometheus_client custom collector over the same store: what one scrape
    # would cost (render + gzip), on the loop, if served without the cache.
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(runtime.store, families_of(cfg.checks),
                                         runtime.reload_state))
    renders, zips = [], []
    for _ in range(args.plain_rounds):
        t0 = time.perf_counter()
        text = generate_latest(registry)
        t1 = time.perf_counter()
        gzip.compress(text, compresslevel=6)
        renders.append(t1 - t0)
        zips.append(time.perf_counter() - t1)
    results["plain_render_ms"] = statistics.median(renders) * 1000
    results["plain_gzip_ms"] = statistics.median(zips) * 1000
    results["plain_bytes"] = len(text)
    await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--plain-rounds", type=int, default=3)
    parser.add_argument(
        "--scrape-every", type=float, nargs="+", default=[0.0, 1.0], metavar="SECONDS",
        help="one run of the 10 scrapers per value, each --seconds long: 0 is a closed loop "
        "(each scraper asks again as soon as it has its answer: the most scrapes the "
        "machine can serve), N > 0 a burst of 10 concurrent scrapes every N seconds "
        "(10 Prometheus servers with aligned scrape intervals of N seconds)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="readiness-bench-scrape-") as state_dir:
        args.state_dir = state_dir
        r = asyncio.run(serve_and_scrape(args))
    load_after = os.getloadavg()
    print(f"command: .venv/bin/python bench/scrape_scale.py --checks {args.checks} "
          f"--seconds {args.seconds:g} --plain-rounds {args.plain_rounds} --scrape-every "
          + " ".join(f"{e:g}" for e in args.scrape_every))
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load average "
          f"(1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/"
          f"{load_before[2]:.1f}, after {load_after[0]:.1f}/{load_after[1]:.1f}/"
          f"{load_after[2]:.1f}")
    print(f"checks: {args.checks} (synthetic outcomes, set up in {r['setup_s']:.1f} s); "
          f"samples per scrape: {r['samples']}; body {r['body_bytes'] / 1e6:.1f} MB, "
          f"gzip {statistics.median(s['gzip_bytes'] for s in r['served'].values()) / 1e6:.2f}"
          " MB")

    def verdict(key: str, value: float) -> str:
        return "met" if value <= TARGETS[key] else "MISSED"

    for every, s in r["served"].items():
        how = ("closed loop: each asks again as soon as it has its answer" if not every else
               f"a burst of 10 together every {every:g} s")
        print(f"served /metrics (gzip, 10 concurrent scrapers, {how}; {args.seconds:g} s): "
              f"{s['scrapes']} scrapes, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms "
              f"(target < 100 ms: {verdict('p99_ms', s['p99_ms'])}), max {s['max_ms']:.1f} ms;"
              f" event-loop lag p99 {s['loop_lag_p99_ms']:.1f} ms (target < 50 ms: "
              f"{verdict('loop_lag_p99_ms', s['loop_lag_p99_ms'])}), max "
              f"{s['loop_lag_max_ms']:.1f} ms")
    print(f"resident memory: {r['rss_mb_loaded']:.0f} MB loaded, {r['rss_mb_after']:.0f} MB "
          f"after the scrapes, peak while serving {r['rss_mb_peak_served']:.0f} MB "
          f"(target < 600 MB: {verdict('rss_mb', r['rss_mb_peak_served'])})")
    best = min(s["p99_ms"] for s in r["served"].values())
    print(f"plain prometheus_client collector, same data: render {r['plain_render_ms']:.0f} ms "
          f"+ gzip {r['plain_gzip_ms']:.0f} ms per scrape ({r['plain_bytes'] / 1e6:.1f} MB), "
          f"i.e. {(r['plain_render_ms'] + r['plain_gzip_ms']) / best:.1f}x the best served "
          f"p99, with the loop blocked that long per scrape")


if __name__ == "__main__":
    main()
