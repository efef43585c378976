"""Skipped runs: logged at most once per check per window, with the count in between, and
APScheduler's own per-run warnings kept out of the log."""

from __future__ import annotations

import logging

import pytest

from exporter.skipped_runs import SkipLog, SkipReason, quiet_apscheduler_skip_lines


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def skip_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "check run skipped"]


def test_one_line_per_check_per_window_with_the_count_in_between(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    skip_log = SkipLog(window=60.0, clock=clock)
    caplog.set_level(logging.WARNING)
    logged = [skip_log.skipped("a", SkipReason.OVERLAP, 1.0) for _ in range(59)]
    logged.append(skip_log.skipped("b", SkipReason.LATE, 5.0))
    assert logged.count(True) == 2 and logged[0] and logged[-1]
    assert [(getattr(r, "check"), getattr(r, "reason")) for r in skip_lines(caplog)] == [
        ("a", "overlap"), ("b", "late")]
    assert all(r.levelno == logging.WARNING for r in skip_lines(caplog))

    clock.now += 59.9
    assert not skip_log.skipped("a", SkipReason.OVERLAP, 1.0)
    clock.now += 0.2  # a minute after the first line
    caplog.clear()
    assert skip_log.skipped("a", SkipReason.OVERLAP, 1.0)
    [line] = skip_lines(caplog)
    assert getattr(line, "skipped_since_last_line") == 59
    assert "settings.max_concurrency" in getattr(line, "hint")


def test_forget_drops_removed_checks() -> None:
    skip_log = SkipLog(clock=FakeClock())
    for check in ("a", "b", "c"):
        skip_log.skipped(check, SkipReason.OVERLAP, 1.0)
    skip_log.forget({"b"})
    assert set(skip_log._windows) == {"b"}


@pytest.mark.parametrize("logger_name, message, args", [
    ("apscheduler.scheduler",
     'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
     ("x", 1)),
    ("apscheduler.executors.default", 'Run time of job "%s" was missed by %s', ("x", "0:00:02")),
])
def test_apscheduler_skip_warnings_are_dropped(caplog: pytest.LogCaptureFixture,
                                               logger_name: str, message: str,
                                               args: tuple[object, ...]) -> None:
    quiet_apscheduler_skip_lines()
    quiet_apscheduler_skip_lines()  # idempotent
    caplog.set_level(logging.WARNING)
    logger = logging.getLogger(logger_name)
    logger.warning(message, *args)
    logger.warning("Error getting due jobs from job store %r: %s", "default", "boom")
    assert [r.getMessage() for r in caplog.records if r.name == logger_name] == [
        "Error getting due jobs from job store 'default': boom"]
    assert len(logger.filters) == 1
