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
    alternatives: tuple[CheckState, ...] = field(default=(), repr=False, compare=False)
    """The states of the checks its `any_of` names that this store holds (set by `Store`)."""
    dependents: tuple[CheckState, ...] = field(default=(), repr=False, compare=False)
    """The states whose `any_of` names this check (set by `Store`)."""

    @property
    def status(self) -> Status | None:
        """Status of the latest run, None before the first run."""
        return self.outcome.status if self.outcome is not None else None

    def is_fresh(self, now: float, stale_after_intervals: float) -> bool:
        """The latest result is younger than `stale_after_intervals` intervals."""
        if self.last_run is None:
            return False
        return now - self.last_run <= self.spec.interval * stale_after_intervals + self.spec.timeout

    def satisfied_by(self, fresh: Callable[[CheckState], bool]) -> str | None:
        """The id of the alternative that stands in for this check, else None.

        Only a `skipped` check is stood in for (a `fail` or an `error` is an observation,
        or the lack of one, that an alternative does not overrule); the first of its
        `any_of` alternatives held here that is enabled, passes and is `fresh` counts.
        An alternative this store does not hold (another shard, not selected) is never
        assumed.
        """
        if self.status is not Status.SKIPPED:
            return None
        for other in self.alternatives:
            if other.spec.enabled and other.status is Status.PASS and fresh(other):
                return other.spec.id
        return None

    def alternatives_missing(self) -> list[str]:
        """`any_of` ids this store does not hold (on another shard, or not selected)."""
        held = {other.spec.id for other in self.alternatives}
        return [i for i in self.spec.any_of if i not in held]


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
        _link_alternatives(self._states)
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
        before = {cid: _link_ids(state) for cid, state in new_states.items()}
        _link_alternatives(new_states)
        seen = {id(state) for state in changed}
        for cid, state in new_states.items():  # links moved: their go-live rule changed
            if before[cid] != _link_ids(state) and id(state) not in seen:
                changed.append(state)
        self._states = new_states
        if changed or not same_checks:
            self._notify(changed)

    def views(self) -> list[CheckView]:
        """Read-only summaries for probes (`aggregate`), with the alternative that stands
        in for a skipped check now (`stood_in_by`)."""
        fresh = self.fresh_at(time.time())
        return [
            CheckView(s.spec.id, s.spec.section, s.spec.severity, s.spec.enabled, s.status,
                      s.last_run, stood_in_by=s.satisfied_by(fresh) if s.alternatives else None)
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

    def fresh_at(self, now: float) -> Callable[[CheckState], bool]:
        """`state -> is its result fresh at now` (this store's staleness rule)."""
        stale_after = self.stale_after_intervals
        return lambda state: state.is_fresh(now, stale_after)

    def holds_down(self, state: CheckState, stale: bool,
                   fresh: Callable[[CheckState], bool]) -> bool:
        """The go-live rule for one check: enabled and critical, and not passing (unless a
        fleet verdict's skip, or a skip an `any_of` alternative stands in for) or stale
        (unless a fleet verdict's skip). `stale` is the check's own staleness, `fresh`
        judges its alternatives'."""
        spec = state.spec
        if not spec.enabled or spec.severity is not Severity.CRITICAL:
            return False
        if state.status is Status.SKIPPED and spec.id in self.fleet_verdicts:
            return False
        if stale:
            return True
        return state.status is not Status.PASS and state.satisfied_by(fresh) is None

    def blockers(self, now: float | None = None) -> list[CheckState]:
        """Enabled critical checks that do not pass (and no alternative stands in for)
        or whose result is stale."""
        now = time.time() if now is None else now
        fresh = self.fresh_at(now)
        return [s for s in self._states.values()
                if self.holds_down(s, not fresh(s), fresh)]

    def stood_in_for(self, now: float | None = None) -> dict[str, str]:
        """Check id -> the id of the alternative that keeps it from blocking go-live."""
        fresh = self.fresh_at(time.time() if now is None else now)
        found: dict[str, str] = {}
        for state in self._states.values():
            if state.spec.any_of and state.spec.enabled and fresh(state):
                alternative = state.satisfied_by(fresh)
                if alternative is not None:
                    found[state.spec.id] = alternative
        return found

    def go_live(self, now: float | None = None) -> bool:
        """Every enabled critical check passes (or is a skip an `any_of` alternative stands
        in for) and is fresh."""
        return not self.blockers(now)


def _link_ids(state: CheckState) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (tuple(o.spec.id for o in state.alternatives),
            tuple(o.spec.id for o in state.dependents))


def _link_alternatives(states: dict[str, CheckState]) -> None:
    """Point every state at the states of its `any_of` alternatives, and back."""
    dependents: dict[str, list[CheckState]] = {}
    for state in states.values():
        held = [states[i] for i in state.spec.any_of if i in states and i != state.spec.id]
        state.alternatives = tuple(held)
        for other in held:
            dependents.setdefault(other.spec.id, []).append(state)
    for cid, state in states.items():
        state.dependents = tuple(dependents.get(cid, ()))
