"""Structured JSON log lines on stderr (one object per line)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from exporter import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "msg", ...extra}`; exceptions by type only.

    Configured secret values are scrubbed from the message and every field
    (`redact.active()`), whatever the caller logged.
    """

    def format(self, record: logging.LogRecord) -> str:
        scrubber = redact.active()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception text from client libraries can carry secrets.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(scrubber.value(entry), default=lambda o: scrubber.scrub(str(o)),
                          separators=(",", ":"))


def setup(level: str = "info") -> None:
    """Send every log record, and every Python warning, to stderr as JSON at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python warnings (e.g. cryptography's on odd certificates) as JSON records too.
    from exporter import warning_log

    warning_log.install()
    for noisy in ("apscheduler", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The leader election logs a traceback at ERROR for every refused create/update (the
    # losing side of a race); the restore_drill check reports lease problems itself.
    logging.getLogger("kubernetes_asyncio.leaderelection").setLevel(logging.CRITICAL)
