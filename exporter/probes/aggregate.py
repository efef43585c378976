"""`aggregate`: passes when a selected set of other checks passes (11.3.1), or with
`require: any` when at least one of them does (an "either of two" item such as 11.1.x
staging validated: a staging report or a signed attestation).

Reads the latest result of every configured check through `ctx.checks()`; it never runs
them. A check is selected when it matches every filter that is given (`ids`, `sections`
as dotted prefixes, `severities`) and is not in `exclude`; the aggregate never selects
itself. Disabled checks are left out. A result older than `max_age` counts as not
passing. A `skipped` check whose `any_of` alternative stands in for it (the go-live
rule, docs/configuration.md) counts as passing, so 11.3.1 agrees with go-live.

With sharding (`serve --shard`), a selected check that another shard runs has no result
here: it counts as `other_shard`, neither passing nor failing. A verdict that depends on
such inputs is `skipped` ("cannot see ..."), never assumed; across shards it is computed
by the recording rules (`readiness:go_live`). A failing input this shard sees still
fails an `all` aggregate, and a passing one passes an `any` aggregate.

At start-up the aggregate may run before the checks it summarises: while a selected
check has not run yet, it waits for that first result (up to `first_result_wait`,
polling the store), and if one is still missing it reports `skipped` ("waiting for first
results"), never a `fail` it has not seen.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from exporter.model import (
    CheckSpec,
    CheckView,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
    Severity,
    Status,
)
from exporter.probes.wording import shortened

__all__ = ["KIND", "AggregateCheck", "run", "selected"]

_LIST_IN_MESSAGE = 5
# Every value of the `state` label (bounded).
STATES = ("pass", "fail", "error", "skipped", "not_run", "stale", "other_shard")


class AggregateCheck(CheckSpec):
    """`kind: aggregate` options."""

    summarises_other_checks: ClassVar[bool] = True  # `check` runs it after the others

    kind: Literal["aggregate"]
    # An aggregate does no I/O; its run may wait for the first results of the checks it
    # summarises (up to `first_result_wait`), so its default timeout covers their first
    # round (the preset's slowest input, 1.2.2, has a 5-minute timeout).
    timeout: Duration = Field(default=420.0, gt=0, description="run time limit; the wait "
                              "for first results is 80 % of it unless first_result_wait is set")
    ids: list[str] = Field(default=[], description="only these check ids (empty: any)")
    sections: list[str] = Field(
        default=[], description="only checks in these sections or below ('5' selects 5.1, "
        "5.1.2 ...; empty: any)")
    severities: list[Severity] = Field(default=[], description="only these severities "
                                       "(empty: any)")
    exclude: list[str] = Field(default=[], description="check ids never selected")
    allow_skipped: bool = Field(default=False, description="a skipped check counts as passing")
    max_age: Duration | None = Field(
        default=None, gt=0, description="a result older than this counts as not passing")
    require_listed: bool = Field(
        default=True, description="an id in `ids` that is not configured fails the check")
    require: Literal["all", "any"] = Field(
        default="all", description="all: every selected check passes; any: at least one")
    first_result_wait: Duration | None = Field(
        default=None, ge=0, description="how long a run waits for selected checks' first "
        "results before reporting `skipped` (default: 80 % of timeout; below timeout)")

    @model_validator(mode="after")
    def _selects_something(self) -> AggregateCheck:
        if not (self.ids or self.sections or self.severities):
            raise ValueError("select checks with at least one of ids, sections, severities")
        if self.id in self.ids:
            raise ValueError("an aggregate cannot include itself in ids")
        if self.first_result_wait is not None and self.first_result_wait >= self.timeout:
            raise ValueError(f"first_result_wait ({self.first_result_wait:g} s) must be "
                             f"below timeout ({self.timeout:g} s)")
        return self

    def selected_ids(self, views: list[CheckView]) -> list[str]:
        """Ids of the checks this aggregate reads (the store's /readyz rule uses it)."""
        return [view.id for view in selected(self, views)]

    @property
    def wait_seconds(self) -> float:
        """How long a run may wait for first results."""
        if self.first_result_wait is not None:
            return self.first_result_wait
        return self.timeout * 0.8


CHECKS = MetricFamily(
    "readiness_aggregate_checks",
    "Selected checks by state of their latest result (pass, fail, error, skipped, "
    "not_run, stale; other_shard: run by another shard, not visible here).",
    ("state",),
)
SELECTED = MetricFamily(
    "readiness_aggregate_selected_checks",
    "Enabled checks the aggregate covers.",
)


def _in_sections(section: str, prefixes: list[str]) -> bool:
    return any(section == prefix or section.startswith(prefix + ".") for prefix in prefixes)


def selected(spec: AggregateCheck, views: list[CheckView]) -> list[CheckView]:
    """The enabled checks `spec` covers (never itself)."""
    chosen = []
    for view in views:
        if view.id == spec.id or view.id in spec.exclude or not view.enabled:
            continue
        if spec.ids and view.id not in spec.ids:
            continue
        if spec.sections and not _in_sections(view.section, spec.sections):
            continue
        if spec.severities and view.severity not in spec.severities:
            continue
        chosen.append(view)
    return chosen


def _state(spec: AggregateCheck, view: CheckView, now: float) -> str:
    if view.elsewhere:
        return "other_shard"
    if view.status is None:
        return "not_run"
    if (spec.max_age is not None and view.last_run is not None
            and now - view.last_run > spec.max_age):
        return "stale"
    return str(view.status.value)


_POLL_SECONDS = 0.1


def _waiting(spec: AggregateCheck, views: list[CheckView]) -> list[str]:
    """Selected checks without a first result yet."""
    return [view.id for view in selected(spec, views)
            if view.status is None and not view.elsewhere]


def _passing_states(spec: AggregateCheck) -> set[str]:
    return {Status.PASS.value} | ({Status.SKIPPED.value} if spec.allow_skipped else set())


async def _first_results(spec: AggregateCheck, ctx: ProbeContext) -> tuple[list[CheckView],
                                                                            list[str]]:
    """The views once every selected check has a first result, or the ids still
    missing after the wait. The verdict waits for all of them even when one result
    would decide it: `/readyz` counts an aggregate ready only after its inputs' first
    results, and the message then lists every input's real state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.wait_seconds
    while True:
        views = ctx.checks()
        waiting = _waiting(spec, views)
        if not waiting or loop.time() >= deadline:
            return views, waiting
        await asyncio.sleep(_POLL_SECONDS)


async def run(spec: AggregateCheck, ctx: ProbeContext) -> Outcome:
    """Summarise the latest results of the selected checks."""
    views, waiting = await _first_results(spec, ctx)
    chosen = selected(spec, views)
    known = {view.id for view in views}
    unknown = [check_id for check_id in spec.ids if check_id not in known]
    now = ctx.now()

    counts = dict.fromkeys(STATES, 0)
    failing: list[str] = []
    passing_states = _passing_states(spec)
    passing: list[str] = []
    unseen: list[str] = []
    for view in chosen:
        state = _state(spec, view, now)
        counts[state] += 1
        if state in passing_states or (state == "skipped" and view.stood_in_by):
            passing.append(view.id)  # a skip its any_of alternative stands in for
        elif state == "other_shard":
            unseen.append(view.id)
        else:
            failing.append(f"{view.id} ({state.replace('_', ' ')})")
    measurements = [Measurement(CHECKS.name, float(count), {"state": state})
                    for state, count in counts.items()]
    measurements.append(Measurement(SELECTED.name, float(len(chosen))))

    if unknown and spec.require_listed:
        return Outcome.failed(f"not configured: {_short(unknown)}", tuple(measurements))
    if not chosen:
        return Outcome.errored(Reason.CONFIG, "the selection matches no enabled check",
                               tuple(measurements))
    if waiting:
        return Outcome.skipped(f"waiting for first results of {_short(waiting)}",
                               tuple(measurements))
    if spec.require == "any":
        if passing:
            return Outcome.passed(f"{_short(passing)} passes ({len(passing)} of "
                                  f"{len(chosen)} alternatives)", tuple(measurements))
        if unseen:
            return Outcome.skipped(_cannot_see(unseen, len(chosen)), tuple(measurements))
        return Outcome.failed(f"none of {len(chosen)} alternatives passes: {_short(failing)}",
                              tuple(measurements))
    if failing:
        return Outcome.failed(f"{len(failing)} of {len(chosen)} not passing: {_short(failing)}",
                              tuple(measurements))
    if unseen:
        return Outcome.skipped(_cannot_see(unseen, len(chosen)), tuple(measurements))
    return Outcome.passed(f"all {len(chosen)} selected checks pass", tuple(measurements))


def _cannot_see(unseen: list[str], selected_count: int) -> str:
    return (f"cannot see {len(unseen)} of {selected_count} selected checks, run by other "
            f"shards ({_short(unseen)}); the verdict across shards is the recording rule "
            "readiness:go_live (or list the inputs in `ids` to keep them on this shard)")


def _short(items: list[str]) -> str:
    return shortened(items, _LIST_IN_MESSAGE)


KIND = ProbeKind(
    name="aggregate",
    spec=AggregateCheck,
    run=run,
    summary="Passes when every selected check (by id, section, severity) passes, or with "
    "require: any when one of them does; waits for their first results.",
    metrics=(CHECKS, SELECTED),
)
