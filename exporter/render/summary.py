"""Counts and the go/no-go verdict of a set of check results (one rule for every output)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.model import Severity, Status
from exporter.store import CheckState

STATUSES = ("pass", "fail", "error", "skipped", "disabled", "pending")
SEVERITIES = tuple(s.value for s in Severity)


def status_name(state: CheckState) -> str:
    """`pass`, `fail`, `error`, `skipped`, `disabled`, or `pending` before the first run."""
    return state.status.value if state.status is not None else "pending"


def _any_result(state: CheckState) -> bool:
    """Freshness as a one-shot run sees it: every result is from this run."""
    return state.outcome is not None


def stood_in_by(state: CheckState) -> str | None:
    """The `any_of` alternative that stands in for a skipped check in this run, else None."""
    return state.satisfied_by(_any_result)


def blocks_go_live(state: CheckState) -> bool:
    """An enabled critical check that does not pass and that no `any_of` alternative
    stands in for (the rule of `readiness_go_live`)."""
    return (state.spec.enabled and state.spec.severity is Severity.CRITICAL
            and state.status is not Status.PASS and stood_in_by(state) is None)


def needs_attention(state: CheckState) -> bool:
    """Enabled and failing, erroring, skipped by its probe or not run: shown first."""
    return state.spec.enabled and state.status is not Status.PASS


@dataclass(frozen=True, slots=True)
class Summary:
    """How many checks are in each status, overall and per severity, and the verdict."""

    by_status: dict[str, int]
    by_severity: dict[str, dict[str, int]]
    disabled: int
    blocking: tuple[str, ...] = ()
    critical_failing: int = 0
    critical_erroring: int = 0
    critical_other: int = 0
    other_failing: int = 0
    stood_in: tuple[tuple[str, str], ...] = ()
    """(check id, alternative id) of skipped critical checks an alternative stands in for."""

    @property
    def go_live(self) -> bool:
        """Every enabled critical check passes (or an `any_of` alternative stands in)."""
        return not self.blocking

    def verdict(self) -> str:
        """One line, e.g. `NO-GO: 3 critical failing, 1 erroring; 92 pass; 6 disabled`."""
        if self.go_live:
            head = "GO: every enabled critical check passes"
            if self.stood_in:
                head += " or is skipped with a passing alternative (" + ", ".join(
                    f"{check} by {alternative}" for check, alternative in self.stood_in) + ")"
        else:
            head = (f"NO-GO: {self.critical_failing} critical failing, "
                    f"{self.critical_erroring} erroring")
            if self.critical_other:
                head += f", {self.critical_other} not run or skipped"
        parts = [head]
        if self.other_failing:
            parts.append(f"{self.other_failing} non-critical failing or erroring")
        parts.append(f"{self.by_status['pass']} pass")
        if self.by_status["skipped"]:
            parts.append(f"{self.by_status['skipped']} skipped")
        parts.append(f"{self.disabled} disabled")
        return "; ".join(parts)


def summarise(states: Iterable[CheckState]) -> Summary:
    """Count `states` and decide the verdict."""
    by_status = dict.fromkeys(STATUSES, 0)
    by_severity = {sev: dict.fromkeys(STATUSES, 0) for sev in SEVERITIES}
    disabled = critical_failing = critical_erroring = critical_other = other_failing = 0
    blocking: list[str] = []
    stood_in: list[tuple[str, str]] = []
    for state in states:
        status = status_name(state)
        by_status[status] += 1
        by_severity[state.spec.severity.value][status] += 1
        if not state.spec.enabled:
            disabled += 1
            continue
        if blocks_go_live(state):
            blocking.append(state.spec.id)
            if status == "fail":
                critical_failing += 1
            elif status == "error":
                critical_erroring += 1
            else:
                critical_other += 1
        elif status in ("fail", "error"):
            other_failing += 1
        elif state.spec.severity is Severity.CRITICAL and (alt := stood_in_by(state)):
            stood_in.append((state.spec.id, alt))
    return Summary(by_status, by_severity, disabled, tuple(blocking), critical_failing,
                   critical_erroring, critical_other, other_failing, tuple(stood_in))
