"""Check results as plain records, and their renderings: table, JSON, JUnit XML."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree as ET

from exporter.store import CheckState
from exporter.web.sections import section_key, section_title


def record(state: CheckState, now: float | None = None,
           stale_after_intervals: float = 3.0) -> dict[str, Any]:
    """The public fields of one check's result (the `json` output and `/api/v1/checks`)."""
    spec, outcome = state.spec, state.outcome
    now = time.time() if now is None else now
    return {
        "id": spec.id,
        "item": spec.item_id,
        "section": spec.section,
        "title": spec.title,
        "severity": spec.severity.value,
        "kind": spec.kind,
        "enabled": spec.enabled,
        "status": outcome.status.value if outcome else "pending",
        "reason": outcome.reason.value if outcome and outcome.reason else None,
        "message": outcome.message if outcome else "not run yet",
        "last_run": state.last_run,
        "duration_seconds": state.duration,
        "stale": bool(spec.enabled and state.last_run is not None
                      and not state.is_fresh(now, stale_after_intervals)),
    }


def sorted_states(states: Iterable[CheckState]) -> list[CheckState]:
    """By section (numerically), then by id."""
    return sorted(states, key=lambda s: (section_key(s.spec.section), s.spec.id))


def to_json(states: Iterable[CheckState]) -> str:
    """A JSON list of records."""
    return json.dumps([record(s) for s in sorted_states(states)], indent=2) + "\n"


def to_table(states: Iterable[CheckState]) -> str:
    """A plain-text table grouped by checklist section."""
    lines: list[str] = []
    current: str | None = None
    for state in sorted_states(states):
        rec = record(state)
        if rec["section"] != current:
            current = rec["section"]
            lines.append("")
            lines.append(section_title(current))
        status = rec["status"].upper() + (f"/{rec['reason']}" if rec["reason"] else "")
        lines.append(f"  {status:<16} {rec['id']:<22} {rec['severity']:<8} {rec['title']}")
        lines.append(f"  {'':<16} {rec['message']}")
    return "\n".join(lines).lstrip("\n") + "\n"


def to_junit(states: Iterable[CheckState]) -> str:
    """JUnit XML: one testsuite per section, one testcase per check."""
    root = ET.Element("testsuites", name="readiness-exporter")
    suites: dict[str, ET.Element] = {}
    counts: dict[str, dict[str, int]] = {}
    for state in sorted_states(states):
        rec = record(state)
        section = rec["section"]
        if section not in suites:
            suites[section] = ET.SubElement(root, "testsuite", name=section_title(section))
            counts[section] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        case = ET.SubElement(suites[section], "testcase", classname=f"section.{section}",
                             name=f"{rec['id']} {rec['title']}",
                             time=f"{rec['duration_seconds'] or 0:.3f}")
        counts[section]["tests"] += 1
        status = rec["status"]
        if status == "fail":
            ET.SubElement(case, "failure", type=rec["severity"], message=rec["message"])
            counts[section]["failures"] += 1
        elif status == "error":
            ET.SubElement(case, "error", type=rec["reason"] or "error", message=rec["message"])
            counts[section]["errors"] += 1
        elif status in ("skipped", "pending"):
            ET.SubElement(case, "skipped", message=rec["message"])
            counts[section]["skipped"] += 1
    for section, suite in suites.items():
        for key, value in counts[section].items():
            suite.set(key, str(value))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
