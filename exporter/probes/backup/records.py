"""Drill records: written by the exporter's own drills, or by other tooling.

A record is `scenario, started, finished, success` (+ optional `detail`). The exporter's
own drills append JSON lines to `<state_dir>/restore-drills.jsonl` (flushed and fsynced,
so a result survives a restart); a running drill leaves a marker file that the next
start uses to record an interrupted drill and clean up after it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.model import ProbeError, Reason
from exporter.probes.backup.common import slug

STORE_NAME = "restore-drills.jsonl"
MARKER_DIR = "restore-drills-running"


@dataclass(frozen=True, slots=True)
class DrillRecord:
    """One drill: when it started and finished (epoch seconds) and whether it worked."""

    scenario: str
    started: float
    finished: float
    success: bool
    detail: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


def parse_time(value: Any) -> float:
    """Epoch seconds from a number or an ISO 8601 string (`Z` allowed; naive = UTC)."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError("not a time")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def record_from_mapping(data: Any) -> DrillRecord:
    """A record from a decoded JSON object; `ValueError` when a field is missing or bad."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    try:
        success = data["success"]
        if not isinstance(success, bool):
            raise ValueError("success is not true/false")
        return DrillRecord(
            scenario=str(data["scenario"]),
            started=parse_time(data["started"]),
            finished=parse_time(data["finished"]),
            success=success,
            detail=str(data.get("detail", ""))[:200],
        )
    except KeyError as exc:
        raise ValueError(f"missing {exc.args[0]}") from None


def jsonl_lines(path: Path) -> Iterator[str]:
    """The non-blank lines of a JSON lines file; none when the file is missing.

    Blocking. Raises `ProbeError(config)` when the file cannot be read.
    """
    try:
        handle = path.open("r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ProbeError(Reason.CONFIG, f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for line in handle:
            if line.strip():
                yield line


def read_jsonl(path: Path, scenario: str) -> tuple[list[DrillRecord], int]:
    """Records of `scenario` in a JSON lines file, and how many lines were unreadable.

    Blocking. Raises `ProbeError(config)` when the file cannot be read; a missing file
    reads as no records.
    """
    records: list[DrillRecord] = []
    bad = 0
    for line in jsonl_lines(path):
        try:
            record = record_from_mapping(json.loads(line))
        except ValueError:  # JSONDecodeError is a ValueError
            bad += 1
            continue
        if record.scenario == scenario:
            records.append(record)
    return records, bad


_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def quote_table(name: str) -> str:
    """`schema.table` -> `"schema"."table"`; `ValueError` on anything else."""
    if not _TABLE_RE.match(name):
        raise ValueError(f"{name!r} is not a table name (schema.table)")
    return ".".join(f'"{part}"' for part in name.split("."))


async def read_table(pool: Any, table: str, scenario: str) -> list[DrillRecord]:
    """Records of `scenario` from a PostgreSQL table (scenario, started, finished, success)."""
    sql = (f"SELECT started, finished, success FROM {quote_table(table)} "
           "WHERE scenario = $1 AND finished IS NOT NULL ORDER BY finished DESC LIMIT 100")
    rows = await pool.fetch(sql, scenario)
    return [DrillRecord(scenario, parse_time(row["started"]), parse_time(row["finished"]),
                        bool(row["success"])) for row in rows]


class DrillStore:
    """The exporter's own drill results, in `state_dir` (JSON lines, append only)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STORE_NAME
        self.markers = state_dir / MARKER_DIR

    def append(self, record: DrillRecord) -> None:
        """Append one record durably (blocking)."""
        line = json.dumps(asdict(record), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read(self, scenario: str) -> list[DrillRecord]:
        """Records of `scenario` (blocking)."""
        return read_jsonl(self.path, scenario)[0]

    def marker_path(self, scenario: str) -> Path:
        return self.markers / f"{slug(scenario)}.json"

    def write_marker(self, scenario: str, data: dict[str, Any]) -> None:
        """Record that a drill is running (and its phase), atomically (blocking)."""
        self.markers.mkdir(parents=True, exist_ok=True)
        target = self.marker_path(scenario)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({"scenario": scenario, **data}), encoding="utf-8")
        os.replace(tmp, target)

    def read_marker(self, scenario: str) -> dict[str, Any] | None:
        """The running-drill marker left for `scenario`, if any (blocking)."""
        try:
            data = json.loads(self.marker_path(scenario).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_marker(self, scenario: str) -> None:
        """Remove the running-drill marker (blocking)."""
        self.marker_path(scenario).unlink(missing_ok=True)


def newest(records: Iterable[DrillRecord], *, success: bool | None = None) -> DrillRecord | None:
    """The record that finished last (optionally only successful / failed ones)."""
    chosen = [r for r in records if success is None or r.success is success]
    return max(chosen, key=lambda r: r.finished, default=None)
