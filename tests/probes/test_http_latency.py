"""`max_latency` is judged on a time the event loop cannot inflate.

A 5 ms endpoint runs in its own thread (a standard-library HTTP server, not on the
test's event loop); a CPU-heavy neighbour blocks the event loop in 250 ms slices, as a
busy `check` run of 64 probes did. The old path (timed on the main loop) measured the
neighbour's time; the timed path (`max_latency` set) stays near the probe run alone.
Medians of several runs, generous bounds: this is a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.context import RuntimeContext
from exporter.model import Status
from exporter.probes.http.probe import run
from exporter.probes.http.timed import SWITCH_INTERVAL
from tests.probes.test_http_support import make_check

RUNS = 3
HOG_SLICE = 0.25


class _FiveMs(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(0.005)
        body = b'{"status": "healthy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FiveMs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


async def _hog(stop: asyncio.Event) -> None:
    """A CPU-heavy neighbour: blocks the event loop in slices."""
    while not stop.is_set():
        end = time.perf_counter() + HOG_SLICE
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0)


async def _measure(ctx: RuntimeContext, url: str, hog: bool, **fields: object) -> list[float]:
    seconds: list[float] = []
    for _ in range(RUNS):
        stop = asyncio.Event()
        neighbour = asyncio.create_task(_hog(stop)) if hog else None
        await asyncio.sleep(0)  # the neighbour starts first, as in a busy run
        outcome = await run(make_check(url=url, timeout=5, **fields), ctx)
        stop.set()
        if neighbour is not None:
            await neighbour
        seconds.append(next(m.value for m in outcome.measurements
                            if m.family == "readiness_http_duration_seconds"))
    return seconds


async def test_latency_verdict_is_not_inflated_by_a_busy_loop(ctx: RuntimeContext,
                                                              endpoint: str) -> None:
    alone = statistics.median(await _measure(ctx, endpoint, False, max_latency=0.2))
    busy = statistics.median(await _measure(ctx, endpoint, True, max_latency=0.2))
    old_busy = statistics.median(await _measure(ctx, endpoint, True))
    figures = (f"alone {alone * 1000:.1f} ms, busy {busy * 1000:.1f} ms, "
               f"old path busy {old_busy * 1000:.1f} ms")
    # the old path absorbed at least one whole slice of the neighbour; the timed path
    # pays only GIL hand-overs (up to 5 ms each), never a slice
    assert old_busy > HOG_SLICE, figures
    assert busy - alone < HOG_SLICE / 2, figures
    assert busy < old_busy / 3, figures


async def test_latency_verdict_with_a_busy_neighbour(ctx: RuntimeContext,
                                                     endpoint: str) -> None:
    """A 5 ms endpoint and `max_latency: 200ms`: the old path failed it next to a busy
    neighbour, the timed path passes it."""
    stop = asyncio.Event()
    neighbour = asyncio.create_task(_hog(stop))
    await asyncio.sleep(0)
    try:
        outcome = await run(make_check(url=endpoint, timeout=5, max_latency=0.2), ctx)
    finally:
        stop.set()
        await neighbour
    assert outcome.status is Status.PASS, outcome.message


async def test_latency_verdict_still_fails_a_slow_endpoint(ctx: RuntimeContext,
                                                           endpoint: str) -> None:
    outcome = await run(make_check(url=endpoint, timeout=5, max_latency=0.001), ctx)
    assert outcome.status is Status.FAIL and "> 1 ms" in outcome.message


async def test_timed_requests_lower_the_gil_switch_interval_never_raise_it(
        ctx: RuntimeContext, endpoint: str) -> None:
    """The GIL hand-over interval bounds how long the timing thread waits behind a busy
    main thread (bench/http_latency_busy_loop.py shows the effect)."""
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        outcome = await run(make_check(url=endpoint, timeout=5, max_latency=0.2), ctx)
        assert outcome.status is Status.PASS
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        sys.setswitchinterval(0.0001)
        await run(make_check(url=endpoint, timeout=5, max_latency=0.2), ctx)
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(before)
