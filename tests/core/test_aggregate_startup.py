"""In `serve`, an aggregate that runs before the checks it summarises waits for their
first results (never a false `fail`), and /readyz waits for the aggregate's real verdict."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exporter import config
from exporter.daemon import Runtime
from exporter.model import Outcome, Status
from exporter.server import make_app
from exporter.store import Store
from exporter.webconfig import BasicAuth
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("behaviour_kind")


def slow(check_id: str, seconds: float, what: str = "pass") -> dict[str, Any]:
    return {"id": check_id, "section": "5.1", "title": check_id, "kind": "test_behaviour",
            "severity": "critical", "behaviour": "sleep" if what == "pass" else what,
            "sleep": seconds, "interval": 600, "timeout": 30}


def aggregate(**fields: Any) -> dict[str, Any]:
    return {"id": "11.3.1", "section": "11.3", "title": "health", "kind": "aggregate",
            "severity": "critical", "severities": ["critical"], "interval": 600, **fields}


async def watch(checks: list[dict[str, Any]], seconds: float) -> list[tuple[int, str | None]]:
    """Serve `checks`; every 50 ms record (/readyz status, aggregate status)."""
    cfg = config.build({"settings": {"first_round_spread": 0.05, "jitter": 0.0},
                        "checks": checks}, "test", {})
    runtime = Runtime(cfg, None)
    runner = web.AppRunner(make_app(runtime, BasicAuth({})))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    seen: list[tuple[int, str | None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    state = runtime.store.get("11.3.1").status
                    seen.append((response.status, state.value if state else None))
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    return seen


async def test_aggregate_waits_for_slow_inputs_and_readyz_waits_for_it() -> None:
    seen = await watch([slow("db", 1.5), slow("cache", 0.2), aggregate(timeout=10)], 3.0)
    statuses = [status for _, status in seen]
    # The old rule showed `fail` from ~0.05 s until the next interval (10 minutes here).
    assert "fail" not in statuses, seen
    assert statuses[-1] == "pass"
    # /readyz is 503 until the aggregate has its real verdict, then 200.
    ready = [status for code, status in seen if code == 200]
    assert ready and set(ready) == {"pass"}, seen
    assert seen[0][0] == 503


async def test_a_failing_input_is_reported_once_every_input_has_run() -> None:
    seen = await watch([slow("db", 1.5), slow("broken", 0.0, "fail"),
                        aggregate(timeout=10)], 3.0)
    assert seen[-1] == (200, "fail")  # a real fail, judged on every first result
    first_fail = next(i for i, (_, status) in enumerate(seen) if status == "fail")
    assert all(status is None for _, status in seen[:first_fail]), seen
    assert all(code == 503 for code, _ in seen[:first_fail]), seen


async def test_inputs_slower_than_the_wait_give_skipped_and_readyz_stays_503() -> None:
    seen = await watch([slow("db", 2.0), aggregate(timeout=1, first_result_wait=0.5)], 3.0)
    statuses = [status for _, status in seen]
    assert "fail" not in statuses, seen
    assert "skipped" in statuses
    assert all(code == 503 for code, _ in seen), seen  # db done, aggregate not rerun yet


def test_store_rule_counts_only_aggregate_results_after_the_inputs(
        behaviour_kind: None) -> None:
    cfg = config.build({"checks": [slow("db", 0.0), aggregate()]}, "test", {})
    store = Store(cfg.checks)
    now = time.time()
    store.record("11.3.1", Outcome.skipped("waiting for first results of db"), now, 0.1)
    store.record("db", Outcome.passed("ok"), now + 1, 0.1)
    assert not store.first_round_complete()
    store.record("11.3.1", Outcome.passed("all 1 selected checks pass"), now + 2, 0.1)
    assert store.first_round_complete()
    assert store.get("11.3.1").status is Status.PASS


def test_store_rule_ignores_checks_the_aggregate_does_not_read(
        behaviour_kind: None) -> None:
    warning = {**slow("docs", 0.0), "severity": "warning"}
    cfg = config.build({"checks": [slow("db", 0.0), warning, aggregate()]}, "test", {})
    store = Store(cfg.checks)
    now = time.time()
    store.record("db", Outcome.passed("ok"), now, 0.1)
    store.record("11.3.1", Outcome.passed("all 1 selected checks pass"), now + 1, 0.1)
    store.record("docs", Outcome.failed("late, and not critical"), now + 2, 0.1)
    assert store.first_round_complete()  # 11.3.1 reads critical checks only
