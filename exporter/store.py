"""The latest outcome of every check, with run counters, and the go/no-go verdict."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from exporter.model import CheckSpec, CheckView, Outcome, Severity, Status


@dataclass(slots=True)
class CheckState:
    """What the exporter knows of one check."""

    spec: CheckSpec
    outcome: Outcome | None = None
    last_run: float | None = None  # wall-clock end of the last run
    duration: float | None = None
    runs: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped: dict[str, int] = field(default_factory=dict)  # skip reason -> count
    status_since: float | None = None
    first_result: float | None = None  # wall-clock end of the first run

    @property
    def status(self) -> Status | None:
        """Status of the latest run, None before the first run."""
        return self.outcome.status if self.outcome is not None else None

    def is_fresh(self, now: float, stale_after_intervals: float) -> bool:
        """The latest result is younger than `stale_after_intervals` intervals."""
        if self.last_run is None:
            return False
        return now - self.last_run <= self.spec.interval * stale_after_intervals + self.spec.timeout


Listener = Callable[[Sequence[CheckState]], None]


def _summarises(spec: CheckSpec) -> bool:
    """The check's verdict is made of other checks' results (`aggregate`)."""
    return bool(getattr(type(spec), "summarises_other_checks", False))


def _inputs(spec: CheckSpec, views: list[CheckView]) -> list[str]:
    """The ids a summarising check reads (its `selected_ids(views)`, else every check)."""
    pick = getattr(spec, "selected_ids", None)
    if callable(pick):
        return list(pick(views))
    return [view.id for view in views]


class Store:
    """Holds a `CheckState` per configured check; notifies listeners of every change.

    A listener gets the states that changed: one per run, and after a reload the new and
    changed checks in one call (removed checks are simply no longer in `states`).
    """

    def __init__(self, specs: Iterable[CheckSpec], stale_after_intervals: float = 3.0) -> None:
        self.stale_after_intervals = stale_after_intervals
        self._states: dict[str, CheckState] = {s.id: CheckState(s) for s in specs}
        self._listeners: list[Listener] = []
        self.generation = 0
        self.fleet_verdicts: frozenset[str] = frozenset()
        """Checks whose verdict spans shards (set by the runtime when sharded): their
        `skipped` ("cannot see other shards") does not block this shard's go-live, since
        the fleet's go-live (every shard's) already covers what they summarise."""

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(changed_states)` after every change."""
        self._listeners.append(listener)

    def _notify(self, states: Sequence[CheckState]) -> None:
        self.generation += 1
        for listener in self._listeners:
            listener(states)

    @property
    def states(self) -> dict[str, CheckState]:
        """Check id -> state (do not mutate)."""
        return self._states

    def get(self, check_id: str) -> CheckState:
        """The state of one check (`KeyError` when unknown)."""
        return self._states[check_id]

    def record(self, check_id: str, outcome: Outcome, finished: float,
               duration: float) -> Status | None:
        """Store a run's outcome; return the previous status (None before the first run)."""
        state = self._states.get(check_id)
        if state is None:  # removed by a reload while it ran
            return None
        previous = state.status
        state.outcome = outcome
        state.last_run = finished
        state.duration = duration
        state.runs += 1
        if state.first_result is None:
            state.first_result = finished
        if outcome.status is Status.ERROR:
            reason = outcome.reason.value if outcome.reason is not None else "internal"
            state.errors[reason] = state.errors.get(reason, 0) + 1
        if previous != outcome.status:
            state.status_since = finished
        self._notify((state,))
        return previous

    def record_skipped(self, check_id: str, reason: str) -> None:
        """Count a scheduled run of the check that did not happen, by bounded reason."""
        state = self._states.get(check_id)
        if state is None:  # removed by a reload
            return
        state.skipped[reason] = state.skipped.get(reason, 0) + 1
        self._notify((state,))

    def replace_specs(self, specs: Iterable[CheckSpec]) -> None:
        """Adopt a reloaded configuration: keep history of checks that remain.

        Listeners hear once, of the new and changed checks only.
        """
        new_states: dict[str, CheckState] = {}
        changed: list[CheckState] = []
        for spec in specs:
            old = self._states.get(spec.id)
            if old is None:
                state = CheckState(spec)
                changed.append(state)
            else:
                if old.spec != spec:
                    old.spec = spec
                    changed.append(old)
                state = old
            new_states[spec.id] = state
        same_checks = list(self._states) == list(new_states)  # same ids, same order
        self._states = new_states
        if changed or not same_checks:
            self._notify(changed)

    def views(self) -> list[CheckView]:
        """Read-only summaries for probes (`aggregate`)."""
        return [
            CheckView(s.spec.id, s.spec.section, s.spec.severity, s.spec.enabled, s.status,
                      s.last_run)
            for s in self._states.values()
        ]

    def first_round_complete(self) -> bool:
        """Every enabled check has a result, and every check that summarises others
        (an aggregate) has one from after its inputs' first results."""
        enabled = [s for s in self._states.values() if s.spec.enabled]
        if any(s.outcome is None for s in enabled):
            return False
        summaries = [s for s in enabled if _summarises(s.spec)]
        if not summaries:
            return True
        views = self.views()
        for summary in summaries:
            inputs = [self._states[i] for i in _inputs(summary.spec, views)
                      if i in self._states and i != summary.spec.id]
            done = max((s.first_result or 0.0 for s in inputs), default=0.0)
            if (summary.last_run or 0.0) < done:
                return False
        return True

    def blockers(self, now: float | None = None) -> list[CheckState]:
        """Enabled critical checks that do not pass or whose result is stale."""
        now = time.time() if now is None else now
        return [
            s for s in self._states.values()
            if s.spec.enabled and s.spec.severity is Severity.CRITICAL
            and (s.status is not Status.PASS or not s.is_fresh(now, self.stale_after_intervals))
            and not (s.status is Status.SKIPPED and s.spec.id in self.fleet_verdicts)
        ]

    def go_live(self, now: float | None = None) -> bool:
        """Every enabled critical check passes and is fresh."""
        return not self.blockers(now)
