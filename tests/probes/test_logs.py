"""logs: files written by Python's logging with a JSON formatter, and by hand."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.logs import KIND, LogsCheck, read_tail


class JsonFormatter(logging.Formatter):
    """What a structured application logger writes: one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"timestamp": self.formatTime(record), "level": record.levelname,
                           "message": record.getMessage(), "logger": record.name,
                           "correlation_id": getattr(record, "correlation_id", None)})


def _app_log(path: Path, count: int, *, correlation: bool = True) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"qbitel.test.{path.name}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(count):
            extra = {"correlation_id": f"req-{i:06d}"} if correlation else {}
            logger.info("handled request %d", i, extra=extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _spec(path: Path, **fields: object) -> LogsCheck:
    return LogsCheck.model_validate({"id": "5.2.1", "section": "5.2", "title": "t",
                                     "kind": "logs", "path": str(path), **fields})


def _value(outcome: Outcome, family: str, **labels: str) -> float:
    return next(m.value for m in outcome.measurements
                if m.family == family and dict(m.labels) == labels)


async def test_structured_application_log_passes(tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "app.log"
    _app_log(log, 1000)
    outcome = await KIND.run(_spec(log), ctx)
    assert outcome.status is Status.PASS
    assert outcome.message == "100.0% of the last 200 lines structured (min 95%)"
    assert _value(outcome, "readiness_logs_sampled_lines") == 200
    assert _value(outcome, "readiness_logs_structured_ratio") == 1.0
    assert _value(outcome, "readiness_logs_missing_field_lines", field="correlation_id") == 0


async def test_plain_lines_and_missing_fields_lower_the_share(
        tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "app.log"
    _app_log(log, 300)
    secret = "password=Hunter2-prod-value"
    with log.open("a") as handle:  # a traceback printed without the JSON formatter
        handle.write("Traceback (most recent call last):\n  File \"app.py\", line 1\n"
                     f"ValueError: bad login {secret}\n")
        handle.write(json.dumps([1, 2]) + "\n")
    _app_log(log, 20, correlation=False)
    outcome = await KIND.run(_spec(log, lines=100), ctx)
    # 100 lines: 76 structured, 3 plain + 1 JSON array, 20 without correlation id.
    assert outcome.status is Status.FAIL
    assert outcome.message == ("76.0% of the last 100 lines structured (min 95%): "
                               "4 not JSON, 20 without correlation_id")
    assert _value(outcome, "readiness_logs_unparsed_lines") == 4
    assert _value(outcome, "readiness_logs_missing_field_lines", field="correlation_id") == 20
    assert secret not in outcome.message + repr(outcome.measurements)
    relaxed = await KIND.run(_spec(log, lines=100, min_share=0.75), ctx)
    assert relaxed.status is Status.PASS
    optional = await KIND.run(_spec(log, lines=100, fields={"correlation_id": []}), ctx)
    assert _value(optional, "readiness_logs_structured_ratio") == 0.96


async def test_nested_field_names(tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "ecs.log"
    # Elastic Common Schema style: dotted and nested names.
    rows = [{"@timestamp": "2026-11-28T10:00:00Z", "log": {"level": "info"},
             "message": "ok", "trace": {"id": f"t{i}"}} for i in range(10)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    default = await KIND.run(_spec(log), ctx)
    assert default.status is Status.FAIL and "10 without correlation_id" in default.message
    ecs = await KIND.run(_spec(log, fields={"correlation_id": ["trace.id"]}), ctx)
    assert ecs.status is Status.PASS, ecs.message


def test_tail_reads_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("w") as handle:
        for i in range(400_000):  # ~ 14 MB
            handle.write(f'{{"n": {i}, "pad": "{"x" * 16}"}}\n')
    tail = read_tail(log, 5, 8 * 1024 * 1024)
    assert [json.loads(line)["n"] for line in tail.lines] == list(range(399_995, 400_000))
    # Bounded by max_bytes: a partial first line is dropped, never half-parsed.
    bounded = read_tail(log, 100_000, 1000)
    assert 0 < len(bounded.lines) <= 1000 // 30
    assert all(line.startswith(b'{"n": ') for line in bounded.lines)
    short = tmp_path / "short.log"
    short.write_text("first\r\n\n\nsecond")  # no trailing newline, blank lines, CRLF
    assert read_tail(short, 10, 1024).lines == [b"first", b"second"]


async def test_missing_empty_stale_and_directory(tmp_path: Path, ctx: RuntimeContext) -> None:
    missing = await KIND.run(_spec(tmp_path / "none.log"), ctx)
    assert missing.status is Status.FAIL
    assert missing.message == f"log file {tmp_path / 'none.log'} does not exist"
    empty = tmp_path / "empty.log"
    empty.write_text("")
    outcome = await KIND.run(_spec(empty), ctx)
    assert outcome.status is Status.FAIL and "only 0 lines (min 1)" in outcome.message
    log = tmp_path / "app.log"
    _app_log(log, 10)
    os.utime(log, (time.time() - 7200, time.time() - 7200))
    stale = await KIND.run(_spec(log, max_age="1h"), ctx)
    assert stale.status is Status.FAIL and "not written for 120 min" in stale.message
    directory = await KIND.run(_spec(tmp_path), ctx)
    assert directory.status is Status.ERROR and directory.reason is Reason.CONFIG


def test_spec_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        _spec(tmp_path, min_share=1.5)
    with pytest.raises(ValueError, match="Extra inputs"):
        _spec(tmp_path, fields={"trace": ["x"]})
