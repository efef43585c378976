"""`aggregate` against a runtime context whose check results are set by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.context import RuntimeContext
from exporter.model import CheckView, Severity, Status
from exporter.probes.aggregate import KIND, AggregateCheck


def view(check_id: str, status: Status | None, *, section: str = "5.1",
         severity: Severity = Severity.CRITICAL, enabled: bool = True,
         age: float = 1.0) -> CheckView:
    import time

    return CheckView(id=check_id, section=section, severity=severity, enabled=enabled,
                     status=status, last_run=None if status is None else time.time() - age)


class Board:
    """The list `ctx.checks()` returns; tests replace `views`."""

    def __init__(self) -> None:
        self.views: list[CheckView] = []

    def __call__(self) -> list[CheckView]:
        return list(self.views)


@pytest.fixture
async def board_ctx(tmp_path: Path) -> AsyncIterator[tuple[Board, RuntimeContext]]:
    board = Board()
    context = RuntimeContext(state_dir=tmp_path / "state", checks=board)
    yield board, context
    await context.aclose()


def spec(**fields: Any) -> AggregateCheck:
    base: dict[str, Any] = {"id": "11.3.1", "section": "11.3", "title": "health",
                            "kind": "aggregate", "severity": "critical"}
    return AggregateCheck.model_validate({**base, **fields})


def counts(outcome: Any) -> dict[str, float]:
    return {m.labels["state"]: m.value for m in outcome.measurements
            if m.family == "readiness_aggregate_checks"}


async def test_all_critical_pass_and_itself_excluded(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [
        view("5.1.1", Status.PASS),
        view("3.2.1", Status.PASS, section="3.2"),
        view("1.2.3", Status.FAIL, severity=Severity.WARNING),  # not critical: ignored
        view("9.9", Status.FAIL, enabled=False),  # disabled: ignored
        view("11.3.1", Status.FAIL, section="11.3"),  # itself, failing last time
    ]
    outcome = await KIND.run(spec(severities=["critical"]), ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert counts(outcome)["pass"] == 2
    selected = [m.value for m in outcome.measurements
                if m.family == "readiness_aggregate_selected_checks"]
    assert selected == [2.0]


async def test_failure_error_and_not_run_count_as_not_passing(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [
        view("5.1.1", Status.PASS),
        view("5.1.2", Status.FAIL),
        view("5.1.3", Status.ERROR),
        view("5.1.4", None),
    ]
    # A check without a first result is waited for, not judged (issue 11): skipped.
    waiting = await KIND.run(spec(severities=["critical"], first_result_wait=0.2), ctx)
    assert waiting.status == Status.SKIPPED
    assert waiting.message == "waiting for first results of 5.1.4"
    assert counts(waiting) == {"pass": 1, "fail": 1, "error": 1, "skipped": 0,
                               "not_run": 1, "stale": 0, "other_shard": 0}
    board.views[3] = view("5.1.4", Status.FAIL)
    outcome = await KIND.run(spec(severities=["critical"]), ctx)
    assert outcome.status == Status.FAIL
    assert "3 of 4" in outcome.message
    for check_id in ("5.1.2", "5.1.3", "5.1.4"):
        assert check_id in outcome.message
    assert counts(outcome) == {"pass": 1, "fail": 2, "error": 1, "skipped": 0,
                               "not_run": 0, "stale": 0, "other_shard": 0}


async def test_section_prefix_is_dotted(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [
        view("5.1.1", Status.PASS, section="5.1"),
        view("5.2.1", Status.PASS, section="5.2"),
        view("50.1", Status.FAIL, section="50.1"),  # "5" must not select section 50
        view("4.1.1", Status.FAIL, section="4.1"),
    ]
    outcome = await KIND.run(spec(sections=["5"]), ctx)
    assert outcome.status == Status.PASS, outcome.message
    assert counts(outcome)["pass"] == 2
    outcome = await KIND.run(spec(sections=["5", "4.1"]), ctx)
    assert outcome.status == Status.FAIL and "4.1.1" in outcome.message
    assert "50.1" not in outcome.message


async def test_filters_combine_and_exclude(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [
        view("5.1.1", Status.PASS, section="5.1"),
        view("5.1.2", Status.FAIL, section="5.1", severity=Severity.WARNING),
        view("5.1.3", Status.FAIL, section="5.1"),
    ]
    assert (await KIND.run(spec(sections=["5.1"]), ctx)).status == Status.FAIL
    # sections AND severities: the warning one drops out, 5.1.3 still fails
    outcome = await KIND.run(spec(sections=["5.1"], severities=["critical"]), ctx)
    assert outcome.status == Status.FAIL and "5.1.2" not in outcome.message
    outcome = await KIND.run(spec(sections=["5.1"], severities=["critical"],
                                  exclude=["5.1.3"]), ctx)
    assert outcome.status == Status.PASS


async def test_ids_selection_and_unknown_id(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [view("5.1.1", Status.PASS), view("5.1.2", Status.FAIL)]
    assert (await KIND.run(spec(ids=["5.1.1"]), ctx)).status == Status.PASS
    outcome = await KIND.run(spec(ids=["5.1.1", "5.1.9"]), ctx)
    assert outcome.status == Status.FAIL and "not configured: 5.1.9" in outcome.message
    outcome = await KIND.run(spec(ids=["5.1.1", "5.1.9"], require_listed=False), ctx)
    assert outcome.status == Status.PASS


async def test_skipped_and_stale(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [view("5.1.1", Status.SKIPPED), view("5.1.2", Status.PASS, age=600)]
    outcome = await KIND.run(spec(severities=["critical"]), ctx)
    assert outcome.status == Status.FAIL and "5.1.1 (skipped)" in outcome.message
    outcome = await KIND.run(spec(severities=["critical"], allow_skipped=True), ctx)
    assert outcome.status == Status.PASS
    outcome = await KIND.run(spec(severities=["critical"], allow_skipped=True,
                                  max_age="5m"), ctx)
    assert outcome.status == Status.FAIL and "5.1.2 (stale)" in outcome.message
    assert counts(outcome)["stale"] == 1


async def test_empty_selection_is_a_config_error(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [view("11.3.1", Status.PASS, section="11.3"),
                   view("1.1.1", Status.PASS, severity=Severity.INFO)]
    outcome = await KIND.run(spec(severities=["critical"]), ctx)
    assert outcome.status == Status.ERROR and outcome.reason == "config"


def test_spec_validation() -> None:
    with pytest.raises(ValidationError, match="at least one of ids, sections, severities"):
        spec()
    with pytest.raises(ValidationError, match="itself"):
        spec(ids=["11.3.1"])
    with pytest.raises(ValidationError):
        spec(severities=["urgent"])
    with pytest.raises(ValidationError):
        spec(severities=["critical"], max_age="-1s")


async def test_require_any_passes_on_one_alternative(board_ctx: Any) -> None:
    board, ctx = board_ctx
    alternatives = spec(id="11.1.x-staging", ids=["e2e", "attested"], require="any")
    board.views = [view("e2e", Status.FAIL), view("attested", Status.PASS)]
    outcome = await KIND.run(alternatives, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message.startswith("attested passes (1 of 2 alternatives)")
    board.views = [view("e2e", Status.FAIL), view("attested", Status.ERROR)]
    outcome = await KIND.run(alternatives, ctx)
    assert outcome.status is Status.FAIL
    assert outcome.message == "none of 2 alternatives passes: e2e (fail), attested (error)"
    # Still waits for the other's first result (bounded), then reports what it saw.
    board.views = [view("e2e", None), view("attested", Status.PASS)]
    outcome = await KIND.run(alternatives.model_copy(update={"first_result_wait": 0.2}), ctx)
    assert outcome.status is Status.SKIPPED
    assert outcome.message == "waiting for first results of e2e"


async def test_waits_for_first_results_then_reports_skipped_not_fail(board_ctx: Any) -> None:
    board, ctx = board_ctx
    board.views = [view("5.1.1", Status.PASS), view("5.1.2", None)]
    check = spec(severities=["critical"], timeout=2, first_result_wait=0.3)
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.SKIPPED, outcome.message
    assert outcome.message == "waiting for first results of 5.1.2"

    async def arrives() -> None:
        await asyncio.sleep(0.2)
        board.views = [view("5.1.1", Status.PASS), view("5.1.2", Status.PASS)]

    board.views = [view("5.1.1", Status.PASS), view("5.1.2", None)]
    late = asyncio.create_task(arrives())
    outcome = await KIND.run(spec(severities=["critical"], timeout=5), ctx)
    await late
    assert outcome.status is Status.PASS, outcome.message


def test_wait_must_stay_below_the_timeout() -> None:
    with pytest.raises(ValidationError, match="first_result_wait"):
        spec(severities=["critical"], timeout=2, first_result_wait=2)
