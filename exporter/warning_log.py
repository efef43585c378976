"""Python warnings as structured log records, so stderr stays one JSON object per line.

`logging.captureWarnings` sends warnings to the `py.warnings` logger, but as one
preformatted text (path, line, category and source line run together). This module
installs the same hook (`warnings.showwarning`) with the category and the location as
fields, and logs an identical warning (same category, location and text) at most once
per `window` seconds: the warnings module's own once-per-location registry is reset
whenever any library changes the filters, so it does not stop a flood on its own.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

log = logging.getLogger("py.warnings")

_MAX_MESSAGE = 500  # characters of the warning text kept in the record


class WarningLog:
    """`warnings.showwarning` replacement: one JSON log record per distinct warning."""

    def __init__(self, window: float = 600.0, max_distinct: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_distinct = max_distinct
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, int, str], list[float]] = {}  # -> [since, repeats]

    def show(self, message: Warning | str, category: type[Warning], filename: str,
             lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
        """Log the warning unless an identical one was logged within `window` seconds."""
        text = str(message)
        key = (category.__name__, filename, lineno, text)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return
            repeats = int(seen[1]) if seen is not None else 0
            self._seen.pop(key, None)
            if len(self._seen) >= self.max_distinct:
                del self._seen[next(iter(self._seen))]  # the oldest
            self._seen[key] = [now, 0]
        if len(text) > _MAX_MESSAGE:
            text = text[:_MAX_MESSAGE] + "..."
        log.warning(text, extra={
            "category": category.__name__,
            "location": f"{Path(filename).name}:{lineno}",
            "repeats_not_logged": repeats,
        })


_installed: WarningLog | None = None


def install() -> WarningLog:
    """Route every Python warning through `py.warnings` (idempotent)."""
    global _installed
    if _installed is None or warnings.showwarning != _installed.show:
        _installed = WarningLog()
        warnings.showwarning = _installed.show
    return _installed
