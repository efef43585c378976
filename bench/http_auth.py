"""Basic-auth figures (issue 17): login time of known and unknown users, and authorised
/metrics latency alone and during a wrong-password flood.

Run:  .venv/bin/python bench/http_auth.py [--checks 1000] [--cost 10] [--flooders 32]
                                          [--seconds 10] [--tries 20]

The exporter runs as the real `readiness-exporter serve` process with a web config of
one bcrypt user; this process is the scraper (gzip, as Prometheus scrapes, with valid
credentials) and the flood (concurrent clients sending that user a wrong password).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import bcrypt

REPO = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "readiness-exporter"
PASSWORD = "bench-pass-Zq8Xw7Ce6"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(workdir: Path, checks: int, cost: int) -> tuple[subprocess.Popen[bytes], int]:
    (workdir / "runbook.md").write_text("# runbook\n")
    lines = ["settings:", "  first_round_spread: 2s", "checks:"]
    for i in range(checks):
        lines += [f"  - id: file-{i}", '    section: "10.3"', f"    title: file {i}",
                  "    severity: warning", "    kind: file",
                  f"    path: {workdir / 'runbook.md'}", "    interval: 60s"]
    (workdir / "readiness.yaml").write_text("\n".join(lines) + "\n")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=cost)).decode()
    (workdir / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    port = free_port()
    process = subprocess.Popen(
        [str(EXE), "serve", "--config.file", str(workdir / "readiness.yaml"),
         "--web.config.file", str(workdir / "web.yml"),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    return process, port


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/readyz",
                                   headers={"Authorization": basic("prometheus", PASSWORD)}) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the exporter did not become ready")


async def login_medians(session: aiohttp.ClientSession, url: str,
                        tries: int) -> dict[str, tuple[float, Counter[int]]]:
    """Median login time and statuses per case; the cases are interleaved, so a change
    in the machine's load affects them alike."""
    cases = {"known user, wrong password": basic("prometheus", "wrong"),
             "unknown user": basic("nobody", "wrong"),
             "known user, 100-byte password": basic("prometheus", "p" * 100),
             "unknown user, 100-byte password": basic("nobody", "p" * 100)}
    durations: dict[str, list[float]] = {name: [] for name in cases}
    statuses: dict[str, Counter[int]] = {name: Counter() for name in cases}
    for _ in range(tries):
        for name, header in cases.items():
            started = time.perf_counter()
            async with session.get(url + "/healthz", headers={"Authorization": header}) as r:
                await r.read()
                statuses[name][r.status] += 1
            durations[name].append(time.perf_counter() - started)
    return {name: (statistics.median(values), statuses[name])
            for name, values in durations.items()}


async def scrape_for(session: aiohttp.ClientSession, url: str, seconds: float) -> list[float]:
    headers = {"Authorization": basic("prometheus", PASSWORD), "Accept-Encoding": "gzip"}
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        async with session.get(url + "/metrics", headers=headers, auto_decompress=False) as r:
            await r.read()
            assert r.status == 200, r.status
        latencies.append(time.perf_counter() - started)
    return latencies


async def flood(url: str, flooders: int, stop: asyncio.Event, statuses: Counter[int]) -> None:
    header = {"Authorization": basic("prometheus", "flood-wrong-password")}
    connector = aiohttp.TCPConnector(limit=flooders)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one() -> None:
            while not stop.is_set():
                async with session.get(url + "/healthz", headers=header) as r:
                    await r.read()
                    statuses[r.status] += 1
        await asyncio.gather(*(one() for _ in range(flooders)))


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(args: argparse.Namespace, url: str) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, url)
        medians = await login_medians(session, url, args.tries)
        known = medians["known user, wrong password"][0]
        print(f"login, bcrypt cost {args.cost}, median of {args.tries}:")
        for name, (seconds, codes) in medians.items():
            print(f"  {name:32s} {seconds * 1000:8.1f} ms  ({seconds / known:.2f} x known)"
                  f"  HTTP {dict(codes)}")
        alone = await scrape_for(session, url, args.seconds / 2)
        stop = asyncio.Event()
        statuses: Counter[int] = Counter()
        flooding = asyncio.create_task(flood(url, args.flooders, stop, statuses))
        await asyncio.sleep(1)
        started = time.monotonic()
        before = statuses[401]
        during = await scrape_for(session, url, args.seconds)
        hashes_per_second = (statuses[401] - before) / (time.monotonic() - started)
        stop.set()
        await flooding
    print(f"authorised gzip scrapes of {args.checks} checks:")
    print(f"  alone:        p50 {p(alone, 0.5):7.1f} ms  p99 {p(alone, 0.99):7.1f} ms"
          f"  ({len(alone)} scrapes)")
    print(f"  during flood: p50 {p(during, 0.5):7.1f} ms  p99 {p(during, 0.99):7.1f} ms"
          f"  ({len(during)} scrapes)")
    print(f"flood: {args.flooders} clients, wrong password for the known user: "
          f"{statuses[401]} x 401 (hashed, {hashes_per_second:.1f}/s), "
          f"{statuses[429]} x 429 (queue full, not hashed), "
          f"others {({k: v for k, v in statuses.items() if k not in (401, 429)})}")
    print("command: .venv/bin/python bench/http_auth.py " + " ".join(sys.argv[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--cost", type=int, default=10)
    parser.add_argument("--flooders", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start(Path(tmp), args.checks, args.cost)
        try:
            asyncio.run(run(args, f"http://127.0.0.1:{port}"))
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
