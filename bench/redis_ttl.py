"""Bench: the redis TTL review (aspect ttl) on a 1,000,000-key keyspace.

Prints, per configuration: keys sampled, wall time of the check run, and how long the
Redis server was blocked by the probe, seen three ways:
- SLOWLOG: the longest single command (SCAN or PTTL), logged when above 50 us;
- INFO commandstats: average server time per SCAN and per PTTL call;
- LATENCY LATEST: Redis latency monitor events (threshold 1 ms; none = nothing >= 1 ms);
- a second client pinging from its own process throughout: the longest PING round
  trip, which also covers a whole PTTL pipeline batch being served before the ping.
An idle baseline of the same pinger is printed first: on a busy machine the scheduler's
delays show in every figure, so compare against it (the load average is printed too).

Run from the repository root (loopback only, about a minute):
    .venv/bin/python bench/redis_ttl.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# The repository root instead of bench/ (whose modules could shadow the stdlib).
sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncio  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402

from exporter import config  # noqa: E402
from exporter.context import RuntimeContext  # noqa: E402
from exporter.probes.redis.probe import KIND, RedisCheck  # noqa: E402
from exporter.transport.redis import REDIS, RedisOptions  # noqa: E402
from tests.support.servers import start_redis  # noqa: E402

WITH_TTL = 600_000
WITHOUT_TTL = 400_000

RUNS: list[tuple[str, dict[str, Any]]] = [
    ("default (max_keys 100k, COUNT 100, budget 5s)", {}),
    ("full walk (max_keys 1M, COUNT 100)", {"max_keys": 1_000_000, "time_budget": 100}),
    ("full walk (max_keys 1M, COUNT 1000)",
     {"max_keys": 1_000_000, "time_budget": 100, "scan_count": 1000}),
]


def _ping_loop(port: int, stop: Any, out: Any) -> None:
    client = redis.Redis(port=port)
    samples: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - started)
        time.sleep(0.0005)
    out.put(samples)


class Pinger:
    """A second client, in its own process, measuring PING round trips."""

    def __init__(self, port: int) -> None:
        self.stop = multiprocessing.Event()
        self.out: Any = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_ping_loop,
                                               args=(port, self.stop, self.out))
        self.samples: list[float] = []

    def start(self) -> None:
        self.process.start()

    def join(self) -> None:
        self.stop.set()
        self.samples = self.out.get(timeout=30)
        self.process.join()


def populate(admin: redis.Redis) -> float:
    started = time.perf_counter()
    admin.execute_command("DEBUG", "POPULATE", WITH_TTL, "sess", 8)  # type: ignore[no-untyped-call]
    admin.eval("for i = 0, tonumber(ARGV[1]) - 1 do "
               "redis.call('PEXPIRE', 'sess:' .. i, 3600000) end", 0, WITH_TTL)
    admin.execute_command("DEBUG", "POPULATE", WITHOUT_TTL, "cache", 8)  # type: ignore[no-untyped-call]
    return time.perf_counter() - started


async def one(port: int, ttl: dict[str, Any], admin: redis.Redis) -> dict[str, Any]:
    budget = float(ttl.get("time_budget", 5))
    cfg = config.build({
        "connections": {"cache": {"kind": "redis", "port": port, "command_timeout": 10}},
        "checks": [{"id": "3.2.4", "section": "3.2", "title": "ttl", "kind": "redis",
                    "connection": "cache", "aspect": "ttl", "timeout": budget + 60,
                    "ttl": ttl}],
    }, "bench")
    spec = cfg.checks[0]
    assert isinstance(spec, RedisCheck)
    admin.slowlog_reset()
    admin.config_resetstat()
    admin.execute_command("LATENCY", "RESET")  # type: ignore[no-untyped-call]
    pinger = Pinger(port)
    ctx = RuntimeContext(cfg.connections, state_dir=Path("/tmp/readiness-bench-state"))
    try:
        declared = await ctx.connection("cache")  # warm the shared client first
        handle = await ctx.client(REDIS, RedisOptions("cache", declared))
        await handle.client.ping()
        pinger.start()
        time.sleep(0.2)
        started = time.perf_counter()
        outcome = await KIND.run(spec, ctx)
        wall = time.perf_counter() - started
        time.sleep(0.2)
    finally:
        pinger.join()
        await ctx.aclose()
    sampled = next(m.value for m in outcome.measurements
                   if m.family == "readiness_redis_ttl_keys_sampled")
    slow = admin.slowlog_get(10_000)
    longest = max(slow, key=lambda e: e["duration"]) if slow else None
    scans = [e["duration"] for e in slow if e["command"].startswith(b"SCAN")]
    events = admin.execute_command("LATENCY", "LATEST")  # type: ignore[no-untyped-call]
    cmdstats = admin.info("commandstats")
    return {
        "status": outcome.status.value,
        "sampled": int(sampled),
        "wall": wall,
        "slow_us": longest["duration"] if longest else 0,
        "slow_cmd": (longest["command"].split()[0].decode() if longest else "-"),
        "slow_count": len(slow),
        "scan_median_us": statistics.median(scans) if scans else 0,
        "scans_logged": len(scans),
        "latency": [(e[0].decode() if isinstance(e[0], bytes) else e[0], e[3])
                    for e in events],
        "ping_max_ms": max(pinger.samples) * 1000,
        "ping_p99_ms": statistics.quantiles(pinger.samples, n=100)[98] * 1000,
        "pings": len(pinger.samples),
        "scan_avg_us": cmdstats.get("cmdstat_scan", {}).get("usec_per_call", 0.0),
        "scan_calls": cmdstats.get("cmdstat_scan", {}).get("calls", 0),
        "pttl_avg_us": cmdstats.get("cmdstat_pttl", {}).get("usec_per_call", 0.0),
    }


async def main() -> None:
    server = start_redis(["--enable-debug-command", "yes", "--latency-monitor-threshold", "1",
                          "--slowlog-log-slower-than", "50", "--slowlog-max-len", "10000"])
    try:
        admin = redis.Redis(port=server.port)
        built = populate(admin)
        info = admin.info("server")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"redis {info['redis_version']}, {admin.dbsize():,} keys "
              f"({WITH_TTL:,} sess:* with TTL, {WITHOUT_TTL:,} cache:* without), "
              f"built in {built:.1f}s")
        baseline = Pinger(server.port)
        baseline.start()
        time.sleep(3)
        baseline.join()
        print(f"idle PING round trip: max {max(baseline.samples) * 1000:.2f} ms, "
              f"p99 {statistics.quantiles(baseline.samples, n=100)[98] * 1000:.2f} ms "
              f"({len(baseline.samples)} pings)")
        for label, ttl in RUNS:
            r = await one(server.port, ttl, admin)
            batch = int(ttl.get("scan_count", 100))
            print(f"\n(load average {os.getloadavg()[0]:.2f})", end="")
            print(f"\n{label}: {r['status']}")
            print(f"  keys sampled {r['sampled']:,}, wall {r['wall']:.2f}s "
                  f"({r['sampled'] / r['wall']:,.0f} keys/s)")
            print(f"  SLOWLOG longest command: {r['slow_us']} us ({r['slow_cmd']}), "
                  f"{r['slow_count']} commands over 50 us; SCAN median {r['scan_median_us']:.0f} "
                  f"us over {r['scans_logged']} logged SCANs")
            print(f"  INFO commandstats: SCAN {r['scan_avg_us']:.0f} us/call over "
                  f"{r['scan_calls']:,} calls, PTTL {r['pttl_avg_us']:.2f} us/call "
                  f"(one pipeline of {batch} PTTL: {r['pttl_avg_us'] * batch / 1000:.2f} ms)")
            print(f"  LATENCY LATEST (>= 1 ms): {r['latency'] or 'no event'}")
            print(f"  other client's PING during the run: max {r['ping_max_ms']:.2f} ms, "
                  f"p99 {r['ping_p99_ms']:.2f} ms ({r['pings']} pings)")
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
