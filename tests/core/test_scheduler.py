"""Scheduling: a hanging or raising probe marks only its own check; the rest stay fresh and
/metrics keeps answering."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobEvent

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


def soak_config(path: Path, generation: int, checks: int) -> None:
    """`checks` fast checks and one slower than its interval; every reload changes every
    check's title, the interval of a few, and swaps one check for a new one."""
    entries = [behaviour(f"ok-{i}", "sleep", sleep=0.2, interval=1.5 if i < 5 and generation % 2
                         else 1, timeout=5, title=f"ok {i} generation {generation}")
               for i in range(checks)]
    entries.append(behaviour(f"swap-{generation}", "pass", interval=1))
    entries.append(behaviour("slow", "sleep", sleep=2.5, interval=1, timeout=5,
                             title=f"slow generation {generation}"))
    path.write_text(yaml.safe_dump({
        "settings": {"first_round_spread": 0.2, "jitter": 0.05, "max_concurrency": 500,
                     "state_dir": str(path.parent)},
        "checks": entries}), encoding="utf-8")


async def test_reloads_under_load_keep_the_schedule_and_count_skipped_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checks, reloads = 300, 4
    path = tmp_path / "readiness.yaml"
    soak_config(path, 0, checks)
    runtime = Runtime(config.load(path), path)
    caplog.set_level(logging.INFO)
    await runtime.start()
    # An independent count of APScheduler's fire times: a run started (submitted) or one
    # APScheduler refused itself (a second run already pending).
    submitted: dict[str, int] = {}
    refused: dict[str, int] = {}

    def on_event(event: JobEvent) -> None:
        counts = refused if event.code == EVENT_JOB_MAX_INSTANCES else submitted
        counts[event.job_id] = counts.get(event.job_id, 0) + 1

    runtime.scheduler._scheduler.add_listener(on_event,
                                              EVENT_JOB_MAX_INSTANCES | EVENT_JOB_SUBMITTED)
    try:
        await asyncio.sleep(2.0)  # first round done
        before = {f"ok-{i}": runtime.store.get(f"ok-{i}").runs for i in range(checks)}
        started = time.monotonic()
        for generation in range(1, reloads + 1):
            soak_config(path, generation, checks)
            assert await runtime.reload() == []
            await asyncio.sleep(1.5)
        elapsed = time.monotonic() - started
    finally:
        await runtime.stop()
    body = runtime.exposition.render(False).decode()
    assert runtime.store.get("ok-7").spec.title == f"ok 7 generation {reloads}"
    assert "swap-1" not in runtime.store.states and f"swap-{reloads}" in runtime.store.states

    # Runs kept happening through the reloads, and none of the fast checks skipped one.
    during = {c: runtime.store.get(c).runs - n for c, n in before.items()}
    expected = elapsed / 1.5  # the slowest interval any fast check had
    assert min(during.values()) >= 0.6 * expected, sorted(during.values())[:10]
    assert sum(during.values()) >= 0.8 * checks * elapsed / 1.1
    assert set(refused) <= {"slow"}, f"runs refused: {refused}"
    skipped = {c: s.skipped for c, s in runtime.store.states.items() if s.skipped}
    assert set(skipped) == {"slow"}, skipped

    # The slow check (2.5 s runs at a 1 s interval) really skips, and every skip counts.
    slow = runtime.store.get("slow")
    fires = submitted["slow"] + refused.get("slow", 0)
    # Every fire time either ran or was skipped; at most a run and a pending start were
    # cut short by the shutdown.
    assert fires - slow.runs - 2 <= slow.skipped["overlap"] <= fires - slow.runs
    assert slow.skipped["overlap"] >= slow.runs >= 2
    assert f'readiness_check_skipped_runs_total{{check="slow",reason="overlap"}} ' \
        f'{float(slow.skipped["overlap"])}\n' in body

    # One log line per check per minute at most, and none of APScheduler's own.
    skip_lines = [r for r in caplog.records if r.getMessage() == "check run skipped"]
    assert [getattr(r, "check") for r in skip_lines] == ["slow"]
    assert getattr(skip_lines[0], "reason") == "overlap"
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")
                and r.levelno >= logging.WARNING], "APScheduler logged a skip itself"


async def test_apply_touches_only_the_jobs_of_changed_checks() -> None:
    from datetime import UTC, datetime, timedelta

    from apscheduler.events import EVENT_JOB_ADDED, EVENT_JOB_REMOVED

    from exporter.model import CheckSpec
    from exporter.scheduler import Scheduler
    from exporter.store import Store
    from tests.support.kinds import BEHAVIOUR

    def spec(check_id: str, **extra: Any) -> CheckSpec:
        fields = behaviour(check_id, "pass", **{"interval": 60, **extra})
        validated: CheckSpec = BEHAVIOUR.spec.model_validate(fields)
        return validated

    ids = ["same", "retitled", "slower", "off", "gone", "far"]
    store = Store([spec(c) for c in ids])
    scheduler = Scheduler(store, None, first_round_spread=30.0)  # type: ignore[arg-type]
    events: list[tuple[str, str]] = []
    scheduler._scheduler.add_listener(
        lambda e: events.append(("added" if e.code == EVENT_JOB_ADDED else "removed", e.job_id)),
        EVENT_JOB_ADDED | EVENT_JOB_REMOVED)
    scheduler.start()
    try:
        jobs = scheduler._scheduler
        far = datetime.now(UTC) + timedelta(seconds=3000)
        jobs.modify_job("far", next_run_time=far)
        next_runs = {c: jobs.get_job(c).next_run_time for c in ids}
        events.clear()

        # Equal specs (new objects, as a reload builds them): nothing is touched.
        scheduler.apply([spec(c) for c in ids])
        assert events == []
        assert {c: jobs.get_job(c).next_run_time for c in ids} == next_runs

        new = [spec("same"), spec("retitled", title="new title"),
               spec("slower", interval=120), spec("off", enabled=False),
               spec("far", title="moved"), spec("added")]
        store.replace_specs(new)
        scheduler.apply(new)
        assert sorted(events) == [("added", "added"), ("removed", "gone"), ("removed", "off")]
        assert jobs.get_job("same").next_run_time == next_runs["same"]
        assert jobs.get_job("retitled").next_run_time == next_runs["retitled"]
        assert jobs.get_job("slower").next_run_time == next_runs["slower"]
        assert jobs.get_job("slower").trigger.interval == timedelta(seconds=120)
        # A changed check whose next run was far away runs again within the spread.
        assert jobs.get_job("far").next_run_time <= datetime.now(UTC) + timedelta(seconds=30)
        assert store.get("off").status is Status.DISABLED
        # A disabled check whose reason changes shows the new reason; still no job.
        events.clear()
        new[3] = spec("off", enabled=False, disabled_reason="not in this release")
        store.replace_specs(new)
        scheduler.apply(new)
        assert events == []
        assert store.get("off").outcome is not None
        assert store.get("off").outcome.message == "disabled: not in this release"
    finally:
        await scheduler.shutdown()


async def test_an_event_loop_stall_does_not_skip_runs_that_had_finished(tmp_path: Path) -> None:
    """A run whose end is delayed by a stalled loop is not an overlap: when the loop
    resumes, its end is processed before the check's next run starts."""
    checks = [behaviour(f"ok-{i}", "sleep", sleep=0.5, interval=1, timeout=5)
              for i in range(100)]
    runtime = Runtime(build_config(checks, max_concurrency=200, state_dir=str(tmp_path)), None)
    await runtime.start()
    try:
        await asyncio.sleep(1.5)  # first round done
        before = {c: s.runs for c, s in runtime.store.states.items()}
        for _ in range(3):
            # Half the runs are in flight when the loop stalls (a long GC, a CPU-bound
            # call) for longer than what is left of their interval, but less than the
            # misfire grace time (1 s): nothing is late.
            time.sleep(0.95)
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.0)
    finally:
        await runtime.stop()
    skipped = {c: s.skipped for c, s in runtime.store.states.items() if s.skipped}
    assert skipped == {}
    during = [s.runs - before[c] for c, s in runtime.store.states.items()]
    assert min(during) >= 3, sorted(during)[:10]
