"""Structured log lines on stderr, one record per line: JSON objects (default) or logfmt."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exporter import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


LOG_FORMATS = ("json", "logfmt")
_LOGFMT_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
_LOGFMT_KEY_BAD = re.compile(r"[\s\"=\\\x00-\x1f\x7f]")


def _entry(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of a record (both formats): time, level, logger, msg, extras, exception."""
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
    return entry


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "msg", ...extra}`; exceptions by type only.

    Configured secret values are scrubbed from the message and every field
    (`redact.active()`), whatever the caller logged.
    """

    def format(self, record: logging.LogRecord) -> str:
        scrubber = redact.active()
        return json.dumps(scrubber.value(_entry(record)),
                          default=lambda o: scrubber.scrub(str(o)), separators=(",", ":"))


def _logfmt_value(value: Any, scrub: Callable[[str], str]) -> str:
    """One logfmt value: scrubbed, then bare or quoted (JSON string escapes)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:  # lists, dicts: their JSON, as one quoted value
        text = json.dumps(value, default=str, separators=(",", ":"))
    text = scrub(text)
    if _LOGFMT_BARE.fullmatch(text):
        return text
    return json.dumps(text)  # quoted; quotes, backslashes and newlines escaped


class LogfmtFormatter(logging.Formatter):
    """`time=... level=... logger=... msg="..." key=value`: the JsonFormatter's fields,
    values quoted when they hold spaces, quotes, `=` or control characters.

    Scrubbed like JsonFormatter: no configured secret value reaches a line.
    """

    def format(self, record: logging.LogRecord) -> str:
        scrubber = redact.active()
        entry = scrubber.value(_entry(record))
        return " ".join(
            f"{_LOGFMT_KEY_BAD.sub('_', str(key)) or '_'}={_logfmt_value(value, scrubber.scrub)}"
            for key, value in entry.items())


def setup(level: str = "info", log_format: str = "json") -> None:
    """Send every log record, and every Python warning, to stderr at `level`, as JSON or
    logfmt (`log_format`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter() if log_format == "logfmt" else JsonFormatter())
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
