"""APScheduler (3.x) wiring: each check at its interval with jitter, one run at a time,
under a global concurrency limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.model import CheckSpec, Outcome, ProbeContext, Status
from exporter.runner import run_check
from exporter.skipped_runs import SkipLog, SkipReason, quiet_apscheduler_skip_lines
from exporter.store import Store

log = logging.getLogger("readiness.check")


def disabled_outcome(spec: CheckSpec) -> Outcome:
    """The result shown for a disabled check."""
    reason = f": {spec.disabled_reason}" if spec.disabled_reason else ""
    return Outcome.disabled(f"disabled{reason}")


class Scheduler:
    """Runs the store's checks on their schedules and records outcomes."""

    def __init__(self, store: Store, ctx: ProbeContext, *, max_concurrency: int = 64,
                 jitter: float = 0.1, first_round_spread: float = 5.0,
                 retry: RetryBackoff | None = None) -> None:
        self._store = store
        self._ctx = ctx
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._jitter = jitter
        self._spread = first_round_spread
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._inflight: set[asyncio.Task[None]] = set()
        self._specs: dict[str, CheckSpec] = {}
        # Checks with a run in flight (or waiting for a slot) -> set when that run ends.
        self._running: dict[str, asyncio.Event] = {}
        self.retry = retry if retry is not None else RetryBackoff()
        """The backoff of retries after `error` (replaced on reload)."""
        # Consecutive `error` results per check (drives the retry backoff).
        self._error_streak: dict[str, int] = {}
        self.skip_log = SkipLog()
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        quiet_apscheduler_skip_lines()
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    def start(self) -> None:
        """Schedule every check and start."""
        self._scheduler.start()
        self.apply(s.spec for s in self._store.states.values())

    def apply(self, specs: Iterable[CheckSpec]) -> None:
        """Make the schedule match `specs` (new, changed, removed, disabled checks).

        Only what changed is touched, so a reload does not disturb the schedule: an
        unchanged check keeps its job and its place; a changed one keeps its job too (a
        run reads the current spec when it starts; a new interval replaces the trigger
        in place); removed and disabled checks lose their job; new and re-enabled ones
        get one. Removing and re-adding a job whose run is in flight would make its
        next run count as an overlap, which is what made reloads skip runs.
        """
        wanted = {s.id: s for s in specs}
        for check_id in [c for c in self._specs if c not in wanted]:
            self._remove_job(check_id)
            del self._specs[check_id]
            self._error_streak.pop(check_id, None)
        now = datetime.now(UTC)
        for check_id, spec in wanted.items():
            old = self._specs.get(check_id)
            if old == spec:
                continue
            self._specs[check_id] = spec
            if not spec.enabled:
                if old is not None and old.enabled:
                    self._remove_job(check_id)
                self._store.record(check_id, disabled_outcome(spec), time.time(), 0.0)
            elif old is None or not old.enabled:
                self._add_job(spec, now)
            else:
                self._update_job(old, spec, now)
        self.skip_log.forget(set(wanted))

    def _first_run(self, spec: CheckSpec, now: datetime) -> datetime:
        spread = min(self._spread, spec.interval)
        return now + timedelta(seconds=random.uniform(0, spread))  # noqa: S311

    def _trigger(self, spec: CheckSpec) -> IntervalTrigger:
        return IntervalTrigger(seconds=spec.interval,
                               jitter=spec.interval * self._jitter or None, timezone=UTC)

    def _add_job(self, spec: CheckSpec, now: datetime) -> None:
        self._scheduler.add_job(
            self._run, self._trigger(spec),
            args=[spec.id], id=spec.id, max_instances=_MAX_INSTANCES, coalesce=True,
            misfire_grace_time=_grace(spec), next_run_time=self._first_run(spec, now),
            replace_existing=True,
        )

    def _update_job(self, old: CheckSpec, spec: CheckSpec, now: datetime) -> None:
        """A changed check keeps its job and runs with the new spec at its next run; when
        that is further away than the first-round spread and no run is in flight, the
        next run is brought forward into the spread."""
        job = self._scheduler.get_job(spec.id)
        if job is None:
            self._add_job(spec, now)
            return
        changes: dict[str, object] = {}
        if old.interval != spec.interval:
            changes.update(trigger=self._trigger(spec), misfire_grace_time=_grace(spec))
        soon = now + timedelta(seconds=min(self._spread, spec.interval))
        if spec.id not in self._running and (job.next_run_time is None
                                             or job.next_run_time > soon):
            changes["next_run_time"] = self._first_run(spec, now)
        if changes:
            self._scheduler.modify_job(spec.id, **changes)

    def _remove_job(self, check_id: str) -> None:
        if self._scheduler.get_job(check_id) is not None:
            self._scheduler.remove_job(check_id)

    def _on_skipped(self, event: JobEvent) -> None:
        """APScheduler skipped a run (too late, or a start already pending)."""
        reason = SkipReason.OVERLAP if event.code == EVENT_JOB_MAX_INSTANCES else SkipReason.LATE
        self._skipped(event.job_id, reason)

    def _skipped(self, check_id: str, reason: SkipReason) -> None:
        """Count a skipped run and log it (rate-limited)."""
        spec = self._specs.get(check_id)
        if spec is None:
            return
        self._store.record_skipped(check_id, reason.value)
        self.skip_log.skipped(check_id, reason, spec.interval)

    async def _run(self, check_id: str) -> None:
        """One scheduled run, unless the check's previous run is still going (overlap).

        The overlap is decided here, not by APScheduler's instance count (which allows
        one pending start besides the run in flight): after an event-loop stall, the
        next fire time can be processed before the end of a run that finished during
        the stall. The pending start waits briefly for the previous run to end, so only
        a run that is really still going makes it an overlap.
        """
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            if await self._previous_run_ended(check_id):
                ended = asyncio.Event()
                self._running[check_id] = ended
                try:
                    await self._run_once(check_id)
                finally:
                    del self._running[check_id]
                    ended.set()
            else:
                self._skipped(check_id, SkipReason.OVERLAP)
        except asyncio.CancelledError:
            return  # shutdown: the run simply ends (nothing to record)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _previous_run_ended(self, check_id: str) -> bool:
        """Whether no run of the check is going, after waiting a little for one to end."""
        previous = self._running.get(check_id)
        if previous is None:
            return True
        spec = self._specs.get(check_id)
        wait = _overlap_wait(spec.interval) if spec is not None else 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await previous.wait()
        return check_id not in self._running

    async def _run_once(self, check_id: str) -> None:
        async with self._semaphore:
            spec = self._specs.get(check_id)
            if spec is None:
                return
            outcome, duration = await run_check(spec, self._ctx)
            previous = self._store.record(check_id, outcome, time.time(), duration)
        self._after_result(spec, outcome.status)
        if previous != outcome.status:
            log_status_change(spec, previous, outcome)

    def _after_result(self, spec: CheckSpec, status: Status) -> None:
        """After an `error`, bring the check's next run forward to the retry backoff
        (when that is sooner than its next interval); any other result ends the streak."""
        if status is not Status.ERROR:
            self._error_streak.pop(spec.id, None)
            return
        streak = self._error_streak.get(spec.id, 0) + 1
        self._error_streak[spec.id] = streak
        if not self.retry.enabled or not self._scheduler.running:
            return
        job = self._scheduler.get_job(spec.id)
        if job is None or job.next_run_time is None:
            return
        retry_at = datetime.now(UTC) + timedelta(seconds=self.retry.delay(streak))
        if retry_at < job.next_run_time:
            self._scheduler.modify_job(spec.id, next_run_time=retry_at)

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


@dataclass(frozen=True)
class RetryBackoff:
    """When a check whose last run ended in `error` runs again: `initial` seconds after
    the first error, doubling with each further error up to `maximum`, each delay drawn
    at random from its upper half (jitter, so checks failing together do not retry in
    step). A retry never delays a run: the interval's own next run wins when sooner."""

    initial: float = 1.0
    maximum: float = 30.0
    enabled: bool = True

    def delay(self, streak: int) -> float:
        """Seconds before the retry that follows `streak` consecutive errors."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(streak - 1, 32))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


# A run in flight plus one pending start (see `Scheduler._run`): at most one run of a
# check at a time all the same.
_MAX_INSTANCES = 2


def _overlap_wait(interval: float) -> float:
    """How long a start waits for the check's previous run to end before it is skipped."""
    return min(interval / 4, 1.0)


def _grace(spec: CheckSpec) -> int:
    """How late a run may start before it is skipped as `late`."""
    return max(1, int(spec.interval))


def log_status_change(spec: CheckSpec, previous: Status | None, outcome: Outcome) -> None:
    """One structured log line per status change of a check."""
    level = logging.INFO if outcome.status in (Status.PASS, Status.SKIPPED) else logging.WARNING
    log.log(level, "check status changed", extra={
        "check": spec.id, "section": spec.section, "severity": spec.severity.value,
        "from": previous.value if previous else None, "to": outcome.status.value,
        "reason": outcome.reason.value if outcome.reason else None,
        "detail": outcome.message,
    })
