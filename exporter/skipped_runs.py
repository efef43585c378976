"""Runs the scheduler had to skip: why, and a log that stays quiet when it happens a lot.

APScheduler skips a run when the check's previous run is still going (it runs at most
one at a time, and a run may be waiting for a slot under the global concurrency limit)
and when the scheduler woke up later than the misfire grace time. It logs a warning for
every such run; with 1,000 checks at a 1 s interval that is megabytes of logs. The
exporter counts skipped runs in `readiness_check_skipped_runs_total` instead and logs
at most one line per check per `window` seconds.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("readiness.scheduler")

# The exact messages APScheduler 3.x logs for the two events the exporter counts.
_APSCHEDULER_SKIP_MESSAGES = (
    "Execution of job \"%s\" skipped: maximum number of running instances reached",
    "Run time of job \"%s\" was missed by",
)
_APSCHEDULER_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


class SkipReason(enum.StrEnum):
    """Why a scheduled run did not happen (a bounded label value)."""

    OVERLAP = "overlap"  # the previous run was still running or waiting for a slot
    LATE = "late"  # the scheduler woke up later than the misfire grace time


@dataclass(slots=True)
class _Window:
    started: float
    skipped: int = 0


class SkipLog:
    """Logs a skipped run at most once per check per `window` seconds.

    The line after a quiet window says how many runs of the check were skipped since
    the previous line, so nothing is lost from the log, only repeated.
    """

    def __init__(self, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def skipped(self, check_id: str, reason: SkipReason, interval: float | None) -> bool:
        """Note one skipped run; return whether a line was logged for it."""
        now = self._clock()
        current = self._windows.get(check_id)
        if current is not None and now - current.started < self.window:
            current.skipped += 1
            return False
        suppressed = current.skipped if current is not None else 0
        self._windows[check_id] = _Window(now)
        log.warning("check run skipped", extra={
            "check": check_id, "reason": reason.value, "interval": interval,
            "skipped_since_last_line": suppressed,
            "hint": "see readiness_check_skipped_runs_total; a check that overlaps needs a "
                    "longer interval, a shorter timeout or a higher "
                    "settings.max_concurrency",
        })
        return True

    def forget(self, keep: set[str]) -> None:
        """Drop the windows of checks no longer configured."""
        for check_id in [c for c in self._windows if c not in keep]:
            del self._windows[check_id]


class _DropApschedulerSkipLines(logging.Filter):
    """Drops APScheduler's per-run skip warnings (the exporter counts and logs them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        return not message.startswith(_APSCHEDULER_SKIP_MESSAGES)


_FILTER = _DropApschedulerSkipLines()


def quiet_apscheduler_skip_lines() -> None:
    """Install the filter on APScheduler's loggers (idempotent)."""
    for name in _APSCHEDULER_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
