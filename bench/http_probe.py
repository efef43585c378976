"""Benchmark of the `http` probe (loopback only). Prints figures and how to reproduce.

A local aiohttp app in a helper process answers `/health` with `{"status": "healthy"}`,
an HSTS header and an X-Request-ID. At equal concurrency, side by side:

1. the `http` probe (JSON assertion + HSTS-less correlation check, shared session),
   run in this process: probes per second, CPU per probe, longest event-loop stall;
2. prometheus-blackbox-exporter (Debian package) `/probe` with an `http` module that
   checks the status and a body regex, driven by an aiohttp client.

    .venv/bin/python bench/http_probe.py [--probes 5000] [--concurrency 50]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `http` package: drop bench/ from the
# import path before anything imports `http` (aiohttp does).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402

import aiohttp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"

SERVER = """
import asyncio, sys
from aiohttp import web
async def health(request):
    return web.json_response({"status": "healthy"}, headers={
        "Strict-Transport-Security": "max-age=31536000", "X-Request-ID": "r-1"})
async def main():
    app = web.Application(); app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024); await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pace(total: int, concurrency: int, one: Callable[[], Awaitable[bool]]
                ) -> tuple[float, int]:
    """Run `one` `total` times with `concurrency` workers; (seconds, failures)."""
    left = total
    failures = 0

    async def worker() -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            if not await one():
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, failures


async def _stall_monitor(stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        worst[0] = max(worst[0], time.perf_counter() - before - 0.005)


async def bench_probe(url: str, probes: int, concurrency: int) -> None:
    from exporter.context import RuntimeContext
    from exporter.model import Status
    from exporter.probes.http.probe import run
    from exporter.probes.http.spec import HttpCheck

    spec = HttpCheck.model_validate({
        "id": "bench", "section": "6.2", "title": "bench", "kind": "http", "url": url,
        "json_assertions": [{"path": "status", "value": "healthy"}],
        "correlation_id": {}})
    ctx = RuntimeContext(state_dir=Path(tempfile.mkdtemp()))

    async def one() -> bool:
        return (await run(spec, ctx)).status is Status.PASS

    await _pace(200, concurrency, one)  # warm up connections
    stop, worst = asyncio.Event(), [0.0]
    monitor = asyncio.create_task(_stall_monitor(stop, worst))
    cpu = time.process_time()
    seconds, failures = await _pace(probes, concurrency, one)
    cpu = time.process_time() - cpu
    stop.set()
    await monitor
    await ctx.aclose()
    print(f"http probe:        {probes / seconds:8.0f} probes/s  "
          f"({probes} probes, {failures} not passing, {seconds:.2f} s wall, "
          f"{cpu / probes * 1e6:.0f} us CPU per probe, longest loop stall "
          f"{worst[0] * 1000:.1f} ms)")
    return None


async def bench_blackbox(url: str, probes: int, concurrency: int) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "blackbox.yml"
        config.write_text(json.dumps({"modules": {"health": {
            "prober": "http", "timeout": "5s",
            "http": {"valid_status_codes": [200], "method": "GET",
                     "fail_if_body_not_matches_regexp": ['"status": ?"healthy"']}}}}))
        proc = subprocess.Popen(
            [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            probe_url = f"http://127.0.0.1:{port}/probe"
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=concurrency)) as session:
                for _ in range(100):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/-/healthy") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)

                async def one() -> bool:
                    params = {"module": "health", "target": url}
                    async with session.get(probe_url, params=params) as response:
                        return "probe_success 1" in await response.text()

                await _pace(200, concurrency, one)
                seconds, failures = await _pace(probes, concurrency, one)
            print(f"blackbox_exporter: {probes / seconds:8.0f} probes/s  "
                  f"({probes} probes, {failures} not passing, {seconds:.2f} s wall)")
        finally:
            proc.terminate()
            proc.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/health"
        print(f"target {url}, concurrency {args.concurrency}")
        await bench_probe(url, args.probes, args.concurrency)
        await bench_blackbox(url, args.probes, args.concurrency)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    print("reproduce: .venv/bin/python bench/http_probe.py "
          f"--probes {args.probes} --concurrency {args.concurrency}")


if __name__ == "__main__":
    asyncio.run(main())
