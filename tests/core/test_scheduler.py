"""Scheduling: a hanging or raising probe marks only its own check; the rest stay fresh and
/metrics keeps answering."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exporter import config
from exporter.daemon import Runtime
from exporter.model import Reason, Status
from exporter.server import make_app
from exporter.webconfig import BasicAuth
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("behaviour_kind")


def build_config(checks: list[dict[str, Any]], **settings: Any) -> config.Config:
    return config.build({"settings": {"first_round_spread": 0.2, "jitter": 0.05, **settings},
                         "checks": checks}, "test", {})


def behaviour(check_id: str, what: str, **extra: Any) -> dict[str, Any]:
    return {"id": check_id, "section": "5.1", "title": check_id, "kind": "test_behaviour",
            "severity": "critical", "behaviour": what, **extra}


async def test_hanging_and_raising_probes_only_mark_their_own_check(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "exception-secret-7Qx"
    checks = [behaviour(f"hang-{i}", "hang", interval=1, timeout=0.5) for i in range(50)]
    checks += [behaviour(f"ok-{i}", "pass", interval=1, timeout=0.5) for i in range(48)]
    checks.append(behaviour("raises", "raise", interval=1, secret_in_exception=secret))
    checks.append(behaviour("off", "pass", enabled=False, disabled_reason="not applicable"))
    cfg = build_config(checks, max_concurrency=200, state_dir=str(tmp_path))
    runtime = Runtime(cfg, None)
    app = make_app(runtime, BasicAuth({}))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    caplog.set_level(logging.INFO)
    try:
        async with aiohttp.ClientSession() as session:
            # Scrapes keep answering quickly while 50 probes hang.
            latencies = []
            deadline = time.monotonic() + 3.5
            while time.monotonic() < deadline:
                started = time.monotonic()
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    assert response.status == 200
                    body = await response.text()
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.2)
            async with session.get(f"http://127.0.0.1:{port}/api/v1/checks") as response:
                records = {r["id"]: r for r in await response.json()}
        assert max(latencies) < 1.0
        now = time.time()
        for i in range(48):
            state = runtime.store.get(f"ok-{i}")
            assert state.status is Status.PASS
            assert now - state.last_run < 2.0, f"ok-{i} result is not fresh"
            assert state.runs >= 2
        for i in range(50):
            state = runtime.store.get(f"hang-{i}")
            assert state.status is Status.ERROR
            assert state.outcome is not None and state.outcome.reason is Reason.TIMEOUT
            assert state.errors["timeout"] >= 2
        raised = runtime.store.get("raises")
        assert raised.outcome is not None and raised.outcome.reason is Reason.INTERNAL
        assert raised.outcome.message == "probe failed: RuntimeError"
        assert records["off"]["status"] == "disabled"
        assert records["off"]["message"] == "disabled: not applicable"
        assert 'readiness_check_errors_total{check="hang-0",reason="timeout"}' in body
        assert secret not in body and secret not in caplog.text and secret not in str(records)
    finally:
        await runner.cleanup()


async def test_at_most_one_run_at_a_time_and_concurrency_limit(tmp_path: Any) -> None:
    checks = [behaviour(f"slow-{i}", "sleep", sleep=0.6, interval=0.2, timeout=5) for i in range(6)]
    cfg = build_config(checks, max_concurrency=2, state_dir=str(tmp_path))
    runtime = Runtime(cfg, None)
    await runtime.start()
    try:
        await asyncio.sleep(2.2)
    finally:
        await runtime.stop()
    total_runs = sum(s.runs for s in runtime.store.states.values())
    # Two at a time, 0.6 s each: at most 2 * 2.2 / 0.6 ~ 7 runs finish, never one per 0.2 s.
    assert 2 <= total_runs <= 8
    for state in runtime.store.states.values():
        assert state.runs <= 2


async def test_shutdown_cancels_in_flight_probes_quickly(tmp_path: Any) -> None:
    from tests.support.kinds import SHUTDOWN_CALLS

    checks = [behaviour(f"h{i}", "hang", interval=60, timeout=120) for i in range(10)]
    cfg = build_config(checks, state_dir=str(tmp_path))
    runtime = Runtime(cfg, None)
    await runtime.start()
    await asyncio.sleep(0.6)
    calls_before = len(SHUTDOWN_CALLS)
    started = time.monotonic()
    await runtime.stop()
    assert time.monotonic() - started < 5.0
    assert len(SHUTDOWN_CALLS) == calls_before + 1  # the kind's background work was ended
    assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task()
               and "Runtime" in repr(t))
