"""Bench: the `http` latency verdict next to a CPU-heavy neighbour on the event loop.

A 5 ms endpoint runs in its own thread (standard-library HTTP server); a neighbour
coroutine blocks the event loop in slices of `--slice` seconds. Prints the median
measured latency of the probe alone, with the neighbour (timed path: `max_latency`
set, the request runs in a worker thread with its own loop), and with the neighbour
on the old path (no `max_latency`: timed on the main loop).

    cd /work/main && .venv/bin/python -m bench.http_latency_busy_loop [--runs 7] [--slice 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter.context import RuntimeContext
from exporter.probes.http.probe import HttpCheck, run


class _FiveMs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(0.005)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


async def _hog(stop: asyncio.Event, slice_seconds: float) -> None:
    while not stop.is_set():
        end = time.perf_counter() + slice_seconds
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0)


async def _median(ctx: RuntimeContext, spec: HttpCheck, runs: int, hog: float | None) -> float:
    seconds = []
    for _ in range(runs):
        stop = asyncio.Event()
        task = asyncio.create_task(_hog(stop, hog)) if hog else None
        await asyncio.sleep(0)
        outcome = await run(spec, ctx)
        stop.set()
        if task is not None:
            await task
        seconds.append(next(m.value for m in outcome.measurements
                            if m.family == "readiness_http_duration_seconds"))
    return statistics.median(seconds)


async def main(runs: int, slice_seconds: float) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FiveMs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    base = {"id": "b", "section": "7.4", "title": "b", "kind": "http", "url": url,
            "timeout": 10}
    timed = HttpCheck.model_validate({**base, "max_latency": 0.08})
    old = HttpCheck.model_validate(base)
    ctx = RuntimeContext()
    try:
        alone = await _median(ctx, timed, runs, None)
        busy = await _median(ctx, timed, runs, slice_seconds)
        old_busy = await _median(ctx, old, runs, slice_seconds)
    finally:
        await ctx.aclose()
        server.shutdown()
    print(f"5 ms endpoint, median of {runs} runs, neighbour blocking the loop "
          f"{slice_seconds * 1000:.0f} ms at a time")
    print(f"  timed path alone:          {alone * 1000:8.1f} ms")
    print(f"  timed path, busy loop:     {busy * 1000:8.1f} ms")
    print(f"  old path, busy loop:       {old_busy * 1000:8.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--slice", type=float, default=0.25)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.slice))
