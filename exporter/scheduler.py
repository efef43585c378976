"""APScheduler (3.x) wiring: each check at its interval with jitter, one run at a time,
under a global concurrency limit."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.model import CheckSpec, Outcome, ProbeContext, Status
from exporter.runner import run_check
from exporter.store import Store

log = logging.getLogger("readiness.check")


def disabled_outcome(spec: CheckSpec) -> Outcome:
    """The result shown for a disabled check."""
    reason = f": {spec.disabled_reason}" if spec.disabled_reason else ""
    return Outcome.disabled(f"disabled{reason}")


class Scheduler:
    """Runs the store's checks on their schedules and records outcomes."""

    def __init__(self, store: Store, ctx: ProbeContext, *, max_concurrency: int = 64,
                 jitter: float = 0.1, first_round_spread: float = 5.0) -> None:
        self._store = store
        self._ctx = ctx
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._jitter = jitter
        self._spread = first_round_spread
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._inflight: set[asyncio.Task[None]] = set()
        self._specs: dict[str, CheckSpec] = {}
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    def start(self) -> None:
        """Schedule every check and start."""
        self._scheduler.start()
        self.apply(s.spec for s in self._store.states.values())

    def apply(self, specs: Iterable[CheckSpec]) -> None:
        """Make the schedule match `specs` (new, changed, removed, disabled checks)."""
        wanted = {s.id: s for s in specs}
        for check_id in list(self._specs):
            if check_id not in wanted or wanted[check_id] != self._specs[check_id]:
                if self._scheduler.get_job(check_id) is not None:
                    self._scheduler.remove_job(check_id)
                del self._specs[check_id]
        now = datetime.now(UTC)
        for check_id, spec in wanted.items():
            if check_id in self._specs:
                continue
            self._specs[check_id] = spec
            if not spec.enabled:
                self._store.record(check_id, disabled_outcome(spec), time.time(), 0.0)
                continue
            first = now + timedelta(seconds=random.uniform(0, min(self._spread, spec.interval)))  # noqa: S311
            trigger = IntervalTrigger(seconds=spec.interval,
                                      jitter=spec.interval * self._jitter or None, timezone=UTC)
            self._scheduler.add_job(
                self._run, trigger,
                args=[check_id], id=check_id, max_instances=1, coalesce=True,
                misfire_grace_time=max(1, int(spec.interval)), next_run_time=first,
                replace_existing=True,
            )

    async def _run(self, check_id: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._run_once(check_id)
        except asyncio.CancelledError:
            return  # shutdown: the run simply ends (nothing to record)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _run_once(self, check_id: str) -> None:
        async with self._semaphore:
            spec = self._specs.get(check_id)
            if spec is None:
                return
            outcome, duration = await run_check(spec, self._ctx)
            previous = self._store.record(check_id, outcome, time.time(), duration)
        if previous != outcome.status:
            log_status_change(spec, previous, outcome)

    async def shutdown(self, grace: float = 2.0) -> None:
        """Stop scheduling; give in-flight probes `grace` seconds, then cancel them."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        pending = set(self._inflight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=grace)


def log_status_change(spec: CheckSpec, previous: Status | None, outcome: Outcome) -> None:
    """One structured log line per status change of a check."""
    level = logging.INFO if outcome.status in (Status.PASS, Status.SKIPPED) else logging.WARNING
    log.log(level, "check status changed", extra={
        "check": spec.id, "section": spec.section, "severity": spec.severity.value,
        "from": previous.value if previous else None, "to": outcome.status.value,
        "reason": outcome.reason.value if outcome.reason else None,
        "detail": outcome.message,
    })
