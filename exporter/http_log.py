"""The HTTP server's own logger: malformed requests at debug, rate limited.

aiohttp logs every request it cannot parse (bad request line, bad header, oversized
head) at error level with a traceback: anyone who can connect could fill the logs. The
server is given the `readiness.http` logger, whose filter turns those records into one
short debug line (`malformed HTTP request`, the error type and the client address, never
the request bytes), at most `burst` per `period` seconds; the next line that is let
through carries how many were dropped (`suppressed`). Anything else aiohttp logs there
(an exception in a handler) keeps its level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

LOGGER_NAME = "readiness.http"
PERIOD = 60.0
BURST = 5


class MalformedRequestFilter(logging.Filter):
    """Rewrites and rate-limits aiohttp's records about unparsable requests."""

    def __init__(self, period: float = PERIOD, burst: int = BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.period = period
        self.burst = burst
        self._clock = clock
        self._window_start = float("-inf")
        self._in_window = 0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, record.args, record.exc_info, record.exc_text = (
            "malformed HTTP request", (), None, None)
        record.error = type(error).__name__
        record.remote = str(remote) if remote is not None else None
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        now = self._clock()
        if now - self._window_start >= self.period:
            self._window_start, self._in_window = now, 0
        if self._in_window >= self.burst:
            self.suppressed += 1
            return False
        self._in_window += 1
        if self.suppressed:
            record.suppressed, self.suppressed = self.suppressed, 0
        return True


def http_logger() -> logging.Logger:
    """The logger to give aiohttp's server, with the filter installed once."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())
    return logger
