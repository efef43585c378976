"""Hour-long soak (issue 16): a real `readiness-exporter serve` process with 10,000 checks,
a reload every minute and 10 concurrent gzip scrapers; resident memory, open file
descriptors and threads of the daemon sampled every 10 s.

Run:  .venv/bin/python bench/soak.py [--minutes 70] [--warmup-minutes 40] [--checks 10000]

The checks are cheap kinds that still do real work, in this mix: 40 % `file` (stat and
read one of 200 small files), 30 % `env` (the daemon's environment), 20 % `config_value`
(parse one of 20 YAML files and compare a value), 10 % `http` (GET a local aiohttp
endpoint served by this script, JSON assertion on the body). Every `--reload-every`
seconds the configuration file is rewritten with the other of two variants, which differ
in titles (10 %), intervals (1 %) and ids (1 % of the checks replaced), and
`POST /-/reload` is sent (`--web.enable-lifecycle`) on a new connection, closed after.
The scrapers run in this process, each on one kept-alive connection of its own (as a
Prometheus server scrapes a target); each asks for `/metrics` with `Accept-Encoding: gzip`
every `--scrape-every` seconds.

After the warm-up, growth is printed in % from the first sample at or after the warm-up to
the last one, to the largest one, and between the medians of the first and the last
minute of samples; pass/fail is decided on the medians against 5 % (a single sample of
open fds moves with the scrapers' and probes' connections of that instant).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
LIMIT_PERCENT = 5.0
FILES = 200
APP_CONFIGS = 20


@dataclass(frozen=True)
class Sample:
    """One reading of the daemon's /proc entries."""

    at: float  # seconds since the daemon started
    rss_kib: int
    fds: int
    threads: int
    fd_kinds: dict[str, int] = field(default_factory=dict)
    """Open fds by what they are (`fd_kinds`): scrape connections, probe connections..."""


@dataclass
class Observed:
    """What the soak saw, besides the samples."""

    samples: list[Sample] = field(default_factory=list)
    scrapes: list[float] = field(default_factory=list)  # seconds each
    scrape_bytes: list[int] = field(default_factory=list)
    scrape_failures: int = 0
    reloads: list[float] = field(default_factory=list)  # seconds each
    reload_failures: list[str] = field(default_factory=list)
    http_hits: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_inputs(workdir: Path) -> None:
    """The files the `file` and `config_value` checks read."""
    files = workdir / "files"
    files.mkdir()
    for i in range(FILES):
        (files / f"runbook-{i:03d}.md").write_text(f"# Runbook {i}\n\nRestore steps.\n" * 20)
    apps = workdir / "apps"
    apps.mkdir()
    for i in range(APP_CONFIGS):
        (apps / f"app-{i:02d}.yaml").write_text(yaml.safe_dump(
            {"database": {"pool_size": 20 + i, "ssl": True}, "name": f"app-{i}"}))


def one_check(i: int, workdir: Path, http_url: str) -> dict[str, Any]:
    """Check number `i` of the mix (kind by i % 10)."""
    slot = i % 10
    if slot < 4:
        return {"kind": "file", "path": str(workdir / "files" / f"runbook-{i % FILES:03d}.md"),
                "min_size": 10}
    if slot < 7:
        return {"kind": "env", "required": ["PATH", "HOME"]}
    if slot < 9:
        return {"kind": "config_value", "file": str(workdir / "apps" /
                                                    f"app-{i % APP_CONFIGS:02d}.yaml"),
                "assertions": [{"path": "database.pool_size", "op": ">=", "value": 10},
                               {"path": "database.ssl", "op": "==", "value": True}]}
    return {"kind": "http", "url": f"{http_url}/health/{i % 50}",
            "json_assertions": [{"path": "status", "op": "==", "value": "ok"}]}


def config_text(args: argparse.Namespace, workdir: Path, http_url: str, variant: int) -> str:
    """Variant 0 or 1 of the soak configuration."""
    checks = []
    one_percent = max(1, args.checks // 100)
    for i in range(args.checks):
        check_id = f"check-{i:05d}"
        if variant and i < one_percent:
            check_id = f"swapped-{i:05d}"
        title = f"soak check {i}" + (" (variant b)" if variant and i % 10 == 0 else "")
        interval = args.interval * (2 if variant and one_percent <= i < 2 * one_percent else 1)
        checks.append({"id": check_id, "section": f"{1 + i % 12}.{1 + i % 4}", "title": title,
                       "severity": "critical" if i % 5 == 0 else "warning",
                       "interval": f"{interval:g}s", "timeout": "10s",
                       **one_check(i, workdir, http_url)})
    return yaml.safe_dump({"settings": {"first_round_spread": min(args.interval, 30.0)},
                           "checks": checks}, sort_keys=False)


_TCP_STATES = {"01": "established", "06": "time-wait", "08": "close-wait", "0A": "listen"}


def _tcp_sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """socket inode -> (local port, remote port, state) from /proc/PID/net/tcp{,6}."""
    sockets: dict[str, tuple[int, int, str]] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                sockets[inode] = (int(local.rsplit(":", 1)[1], 16),
                                  int(remote.rsplit(":", 1)[1], 16),
                                  _TCP_STATES.get(state, state))
    return sockets


def fd_kinds(pid: int, serve_port: int, http_port: int) -> dict[str, int]:
    """The daemon's open fds by what they are: `scrape` (a connection to its own port:
    the scrapers and the reloader), `probe-http` (to the endpoint the http checks probe),
    `listen`, other TCP, other sockets (unix), pipes, anonymous inodes (epoll, eventfd),
    files."""
    sockets = _tcp_sockets(pid)
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            tcp = sockets.get(target[8:-1])
            if tcp is None:
                kind = "socket-other"
            elif tcp[2] == "listen":
                kind = "listen"
            elif tcp[0] == serve_port:
                kind = f"scrape-{tcp[2]}"
            elif tcp[1] == http_port:
                kind = f"probe-http-{tcp[2]}"
            else:
                kind = f"tcp-other-{tcp[2]}"
        elif target.startswith("pipe:"):
            kind = "pipe"
        elif target.startswith("anon_inode:"):
            kind = target[len("anon_inode:"):].strip("[]")
        else:
            kind = "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def read_sample(pid: int, started: float, ports: tuple[int, int]) -> Sample:
    """RSS and threads from /proc/PID/status, fds from /proc/PID/fd (counted and sorted
    into kinds)."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.split()
    kinds = fd_kinds(pid, *ports)
    return Sample(time.monotonic() - started, int(status["VmRSS"][0]),
                  sum(kinds.values()), int(status["Threads"][0]), kinds)


async def health_app(observed: Observed) -> web.AppRunner:
    """The local endpoint the `http` checks probe."""

    async def health(request: web.Request) -> web.Response:
        observed.http_hits += 1
        return web.json_response({"status": "ok", "id": request.match_info["n"]})

    app = web.Application()
    app.router.add_get("/health/{n}", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


async def scraper(session: aiohttp.ClientSession, url: str, every: float, offset: float,
                  deadline: float, observed: Observed) -> None:
    """Scrape `/metrics` with gzip every `every` seconds until the deadline."""
    await asyncio.sleep(offset)
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            async with session.get(url, headers={"Accept-Encoding": "gzip"},
                                   auto_decompress=False) as response:
                body = await response.read()
                if response.status != 200 or response.headers.get("Content-Encoding") != "gzip":
                    observed.scrape_failures += 1
                else:
                    observed.scrapes.append(time.monotonic() - started)
                    observed.scrape_bytes.append(len(body))
        except (aiohttp.ClientError, TimeoutError):
            observed.scrape_failures += 1
        await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))


async def reloader(session: aiohttp.ClientSession, base: str, path: Path, texts: list[str],
                   every: float, deadline: float, observed: Observed) -> None:
    """Every `every` seconds: write the other variant, then POST /-/reload."""
    variant = 0
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        variant = 1 - variant
        path.write_text(texts[variant], encoding="utf-8")
        started = time.monotonic()
        try:
            async with session.post(f"{base}/-/reload") as response:
                text = await response.text()
                if response.status == 200:
                    observed.reloads.append(time.monotonic() - started)
                else:
                    observed.reload_failures.append(f"{response.status}: {text[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            observed.reload_failures.append(f"no answer: {type(exc).__name__}")


async def sampler(pid: int, started: float, every: float, deadline: float,
                  observed: Observed, ports: tuple[int, int]) -> None:
    while time.monotonic() < deadline:
        observed.samples.append(read_sample(pid, started, ports))
        await asyncio.sleep(every)
    observed.samples.append(read_sample(pid, started, ports))


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes],
                     limit: float) -> float:
    """Seconds until /readyz answers 200 (the first round of checks done)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with status {proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise SystemExit(f"/readyz not 200 after {limit:g} s")


async def soak(args: argparse.Namespace, workdir: Path) -> tuple[Observed, float]:
    observed = Observed()
    write_inputs(workdir)
    runner = await health_app(observed)
    http_port, port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    http_url = f"http://127.0.0.1:{http_port}"
    texts = [config_text(args, workdir, http_url, variant) for variant in (0, 1)]
    path = workdir / "readiness.yaml"
    path.write_text(texts[0], encoding="utf-8")
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "readiness-exporter"), "--log.level", "warning",
         "serve", "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}",
         "--web.enable-lifecycle"], stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    started = time.monotonic()
    base = f"http://127.0.0.1:{port}"
    try:
        timeout = aiohttp.ClientTimeout(total=120)
        # The load generator's own connections are fixed, so that the daemon's descriptors
        # count only what the daemon holds: each scraper keeps one connection, as a
        # Prometheus server keeps one per target (a shared pool would hold as many as the
        # scrapes ever overlapped); the reloader closes its connection after each POST.
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(aiohttp.ClientSession(
                timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)))
            scrapers = [await stack.enter_async_context(aiohttp.ClientSession(
                timeout=timeout, connector=aiohttp.TCPConnector(limit=1)))
                for _ in range(args.scrapers)]
            ready = await wait_ready(session, base, proc, 600.0)
            deadline = started + args.minutes * 60
            await asyncio.gather(
                sampler(proc.pid, started, args.sample_every, deadline, observed,
                        (port, http_port)),
                reloader(session, base, path, texts, args.reload_every, deadline, observed),
                *(scraper(own, f"{base}/metrics", args.scrape_every,
                          n * args.scrape_every / args.scrapers, deadline, observed)
                  for n, own in enumerate(scrapers)))
            if proc.poll() is not None:
                raise SystemExit(f"serve exited with status {proc.returncode}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        await runner.cleanup()
    return observed, ready


def growth(values: list[int], window: int) -> tuple[float, float, float]:
    """Growth in % after the warm-up: (first to last sample, median of the first `window`
    samples to median of the last `window`, first sample to the largest)."""
    first = values[0]
    start, end = statistics.median(values[:window]), statistics.median(values[-window:])
    return (100.0 * (values[-1] - first) / first, 100.0 * (end - start) / start,
            100.0 * (max(values) - first) / first)


def report(args: argparse.Namespace, observed: Observed, ready: float,
           load_before: tuple[float, float, float]) -> bool:
    """Print the figures; True when every growth after warm-up is under the limit."""
    load_after = os.getloadavg()
    niceness = os.nice(0)
    print("command: " + (f"nice -n {niceness} " if niceness else "") + ".venv/bin/python "
          + " ".join(["bench/soak.py", *sys.argv[1:]]))
    print(f"settings: --minutes {args.minutes:g} --warmup-minutes {args.warmup_minutes:g} "
          f"--checks {args.checks} --interval {args.interval:g} --reload-every "
          f"{args.reload_every:g} --scrapers {args.scrapers} --scrape-every {args.scrape_every:g} "
          f"--sample-every {args.sample_every:g}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load average "
          f"(1/5/15 min) {'/'.join(f'{x:.2f}' for x in load_before)} at start, "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} at the end")
    print("mix: 40 % file, 30 % env, 20 % config_value, 10 % http (local aiohttp endpoint); "
          f"first round done after {ready:.0f} s; {observed.http_hits} HTTP probe requests")
    print(f"reloads: {len(observed.reloads)} applied, {len(observed.reload_failures)} refused; "
          f"duration p50 {statistics.median(observed.reloads or [0]):.2f} s, "
          f"max {max(observed.reloads or [0]):.2f} s")
    for failure in observed.reload_failures[:3]:
        print(f"  refused: {failure}")
    scrapes = sorted(observed.scrapes) or [0.0]
    print(f"scrapes (gzip): {len(observed.scrapes)} ok, {observed.scrape_failures} failed; "
          f"p50 {statistics.median(scrapes) * 1000:.0f} ms, "
          f"p99 {scrapes[min(len(scrapes) - 1, int(0.99 * len(scrapes)))] * 1000:.0f} ms, "
          f"body {statistics.median(observed.scrape_bytes or [0]) / 1024:.0f} KiB")
    after = [s for s in observed.samples if s.at >= args.warmup_minutes * 60]
    if len(after) < 2:
        print(f"FAIL: fewer than two samples after the warm-up ({len(observed.samples)} in all)")
        return False
    print(f"samples: {len(observed.samples)} every {args.sample_every:g} s, "
          f"{len(after)} after the warm-up (from t={after[0].at:.0f} s to t={after[-1].at:.0f} s)")
    window = max(1, min(len(after) // 2, round(60 / args.sample_every)))
    print(f"growth after the warm-up: first to last sample, median of the first {window} "
          f"samples to median of the last {window} (decides pass/fail), first to largest")
    ok = True
    for name, unit, values in (("resident memory", "MiB", [s.rss_kib for s in after]),
                               ("open file descriptors", "", [s.fds for s in after]),
                               ("threads", "", [s.threads for s in after])):
        to_end, medians, to_max = growth(values, window)
        scale = 1024 if unit else 1
        passed = medians < LIMIT_PERCENT
        ok = ok and passed
        print(f"{name}: {values[0] / scale:.1f}{' ' + unit if unit else ''} after warm-up, "
              f"{values[-1] / scale:.1f} at the end ({to_end:+.1f} %), medians "
              f"{statistics.median(values[:window]) / scale:.1f} -> "
              f"{statistics.median(values[-window:]) / scale:.1f} ({medians:+.1f} %), max "
              f"{max(values) / scale:.1f} ({to_max:+.1f} %); "
              f"{'pass' if passed else 'FAIL'} (< {LIMIT_PERCENT:g} %)")
    for label, part in (("first", after[:window]), ("last", after[-window:])):
        kinds = sorted({kind for sample in part for kind in sample.fd_kinds})
        print(f"open fds by kind, median of the {label} {window} samples: " + ", ".join(
            f"{kind} {statistics.median(s.fd_kinds.get(kind, 0) for s in part):g}"
            for kind in kinds))
    whole = observed.samples
    print("over the whole run (warm-up included): resident memory "
          f"{whole[0].rss_kib / 1024:.1f} -> {whole[-1].rss_kib / 1024:.1f} MiB, fds "
          f"{whole[0].fds} -> {whole[-1].fds}, threads {whole[0].threads} -> {whole[-1].threads}")
    if args.samples:
        print(json.dumps([s.__dict__ for s in observed.samples]))
    failed = observed.scrape_failures or observed.reload_failures
    print(f"result: {'PASS' if ok and not failed else 'FAIL'}")
    return ok and not failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=70.0, help="whole run, warm-up included")
    parser.add_argument("--warmup-minutes", type=float, default=40.0,
                        help="the pools of kept-alive connections fill in 30-40 minutes")
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=60.0, help="check interval, seconds")
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--scrapers", type=int, default=10)
    parser.add_argument("--scrape-every", type=float, default=5.0,
                        help="seconds between two scrapes of one scraper")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--samples", action="store_true", help="also print every sample (JSON)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        observed, ready = asyncio.run(soak(args, Path(tmp)))
    sys.exit(0 if report(args, observed, ready, load_before) else 1)


if __name__ == "__main__":
    main()
