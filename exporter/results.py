"""Check results as plain records (renderings live in `exporter.render`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from exporter.checklist import section_key
from exporter.store import CheckState


def record(state: CheckState, now: float | None = None,
           stale_after_intervals: float = 3.0) -> dict[str, Any]:
    """The public fields of one check's result (the `json` output and `/api/v1/checks`).

    `satisfied_by` names the `any_of` alternative that stands in for a skipped check
    (passing, fresh at `now`); `alternatives_elsewhere` the alternatives not held here
    (another shard, or not selected), which are never assumed.
    """
    spec, outcome = state.spec, state.outcome
    now = time.time() if now is None else now
    satisfied_by = state.satisfied_by(lambda other: other.is_fresh(now, stale_after_intervals))
    return {
        "id": spec.id,
        "item": spec.item_id,
        "section": spec.section,
        "title": spec.title,
        "severity": spec.severity.value,
        "kind": spec.kind,
        "enabled": spec.enabled,
        "status": outcome.status.value if outcome else "pending",
        "reason": outcome.reason.value if outcome and outcome.reason else None,
        "message": outcome.message if outcome else "not run yet",
        "last_run": state.last_run,
        "duration_seconds": state.duration,
        "stale": bool(spec.enabled and state.last_run is not None
                      and not state.is_fresh(now, stale_after_intervals)),
        "any_of": list(spec.any_of),
        "satisfied_by": satisfied_by,
        "alternatives_elsewhere": state.alternatives_missing(),
    }


def sorted_states(states: Iterable[CheckState]) -> list[CheckState]:
    """By section (numerically), then by id."""
    return sorted(states, key=lambda s: (section_key(s.spec.section), s.spec.id))
