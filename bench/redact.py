"""Bench: what scrubbing configured secrets costs per outcome message and per log line.

Builds a scrubber of N random secrets (as a large configuration would have: one per
token-bearing check and connection), then times `Scrubber.scrub` on typical outcome
messages (no secret in them, the common case) and on messages that contain one, and
`JsonFormatter.format` on a status-change log line with and without the scrubber.
Prints medians of repeated runs in microseconds.

    cd /work/main && .venv/bin/python -m bench.redact [--secrets 10,100,1000] [--runs 2000]
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import sys
import time
from collections.abc import Callable

from exporter import redact
from exporter.jsonlog import JsonFormatter

MESSAGE = ("status 503, expected 200; token is a 43-character string (expected == 'ok'); "
           "HSTS max-age 300 < 31536000 (+2 more)")


def median_us(func: Callable[[], object], runs: int) -> float:
    """Median wall time of `func` in microseconds (batches of 10 calls)."""
    samples = []
    for _ in range(max(1, runs // 10)):
        started = time.perf_counter()
        for _ in range(10):
            func()
        samples.append((time.perf_counter() - started) / 10)
    return statistics.median(samples) * 1e6


def measure(count: int, runs: int, formatter: JsonFormatter) -> str:
    """One table row: the costs with `count` configured secrets."""
    values = {f"tok-{secrets.token_urlsafe(30)}": f"${{SECRET_{i}}}" for i in range(count)}
    scrubber = redact.Scrubber(values)
    leaked = next(iter(values))
    leaky = f"{MESSAGE}; saw {leaked}"
    record = logging.makeLogRecord({
        "name": "readiness.check", "levelno": logging.WARNING, "levelname": "WARNING",
        "msg": "check status changed", "check": "api", "section": "7.4",
        "severity": "critical", "from": "pass", "to": "fail", "reason": None,
        "detail": leaky})
    redact.install(redact.Scrubber())
    plain_log = median_us(lambda: formatter.format(record), runs)
    redact.install(scrubber)
    clean = median_us(lambda: scrubber.scrub(MESSAGE), runs)
    dirty = median_us(lambda: scrubber.scrub(leaky), runs)
    log_line = median_us(lambda: formatter.format(record), runs)
    assert leaked not in formatter.format(record)
    return f"{count:>8} {clean:>13.1f} {dirty:>13.1f} {log_line:>12.1f} {plain_log:>20.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", default="10,100,1000",
                        help="comma-separated numbers of configured secrets")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    formatter = JsonFormatter()
    print(f"command: {sys.executable} -m bench.redact --secrets {args.secrets} "
          f"--runs {args.runs}")
    print(f"{'secrets':>8} {'clean msg us':>13} {'leaky msg us':>13} "
          f"{'log line us':>12} {'log, no scrubber us':>20}")
    for count in (int(n) for n in args.secrets.split(",")):
        print(measure(count, args.runs, formatter))
    redact.install(redact.Scrubber())


if __name__ == "__main__":
    main()
