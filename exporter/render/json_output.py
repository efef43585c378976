"""`check --output json`: a versioned envelope (verdict, counts, checks); `json-v0`: the old list.

The shape is documented in docs/cli.md; `OUTPUT_SCHEMA` is its JSON Schema and a test
validates real output against it. A change that removes or renames a field bumps
`SCHEMA_VERSION`; adding a field does not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter import __version__
from exporter.render.summary import SEVERITIES, STATUSES, summarise
from exporter.results import record, sorted_states
from exporter.store import CheckState

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a rendering says about the run besides the checks."""

    source: str
    release: str | None = None
    finished: float | None = None


def envelope(states: Iterable[CheckState], run: RunInfo) -> dict[str, Any]:
    """The JSON document of schema version 1 (see docs/cli.md)."""
    ordered = sorted_states(states)
    summary = summarise(ordered)
    finished = time.time() if run.finished is None else run.finished
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter_version": __version__,
        "generated_at": datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds"),
        "config": run.source,
        "release": run.release,
        "go_live": summary.go_live,
        "verdict": summary.verdict(),
        "blocking": list(summary.blocking),
        "stood_in": dict(summary.stood_in),
        "counts": {
            "total": len(ordered),
            "disabled": summary.disabled,
            "by_status": summary.by_status,
            "by_severity": summary.by_severity,
        },
        "checks": [record(s, finished) for s in ordered],
    }


def to_json(states: Iterable[CheckState], run: RunInfo) -> str:
    """The envelope, indented."""
    return json.dumps(envelope(states, run), indent=2) + "\n"


def to_json_v0(states: Iterable[CheckState], run: RunInfo) -> str:
    """Deprecated (schema 0): the bare list of check records, as before the envelope."""
    finished = run.finished
    return json.dumps([record(s, finished) for s in sorted_states(states)], indent=2) + "\n"


def _counts_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(STATUSES),
            "properties": {s: {"type": "integer", "minimum": 0} for s in STATUSES}}


_CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "item", "section", "title", "severity", "kind", "enabled", "status",
                 "reason", "message", "last_run", "duration_seconds", "stale"],
    "properties": {
        "id": {"type": "string"},
        "item": {"type": "string"},
        "section": {"type": "string"},
        "title": {"type": "string"},
        "severity": {"enum": list(SEVERITIES)},
        "kind": {"type": "string"},
        "enabled": {"type": "boolean"},
        "status": {"enum": list(STATUSES)},
        "reason": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "last_run": {"type": ["number", "null"]},
        "duration_seconds": {"type": ["number", "null"]},
        "stale": {"type": "boolean"},
        "any_of": {"type": "array", "items": {"type": "string"}},
        "satisfied_by": {"type": ["string", "null"]},
        "alternatives_elsewhere": {"type": "array", "items": {"type": "string"}},
    },
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "readiness-exporter check --output json, schema version 1",
    "type": "object",
    "required": ["schema_version", "exporter_version", "generated_at", "config", "release",
                 "go_live", "verdict", "blocking", "counts", "checks"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "exporter_version": {"type": "string"},
        "generated_at": {"type": "string", "format": "date-time"},
        "config": {"type": "string"},
        "release": {"type": ["string", "null"]},
        "go_live": {"type": "boolean"},
        "verdict": {"type": "string"},
        "blocking": {"type": "array", "items": {"type": "string"}},
        "stood_in": {"type": "object", "additionalProperties": {"type": "string"}},
        "counts": {
            "type": "object",
            "required": ["total", "disabled", "by_status", "by_severity"],
            "properties": {
                "total": {"type": "integer", "minimum": 0},
                "disabled": {"type": "integer", "minimum": 0},
                "by_status": _counts_schema(),
                "by_severity": {"type": "object", "additionalProperties": False,
                                "required": list(SEVERITIES),
                                "properties": {s: _counts_schema() for s in SEVERITIES}},
            },
        },
        "checks": {"type": "array", "items": _CHECK_SCHEMA},
    },
}
