"""`check --output junit`: what fails in CI is exactly what gates the release.

A critical check that fails is a `<failure>`, one that errors an `<error>`; a warning
or info check that fails or errors is reported in its properties and `<system-out>`,
not as a failure (the job exits 0 for it, so CI must not show it red); disabled and
skipped checks are `<skipped/>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.etree import ElementTree as ET

from exporter.checklist import section_title
from exporter.model import Severity
from exporter.render.json_output import RunInfo
from exporter.render.summary import status_name
from exporter.results import record, sorted_states
from exporter.store import CheckState

_COUNTERS = ("tests", "failures", "errors", "skipped")


def _testcase(suite: ET.Element, state: CheckState, counts: dict[str, int]) -> None:
    rec = record(state)
    case = ET.SubElement(suite, "testcase", classname=f"section.{rec['section']}",
                         name=f"{rec['id']} {rec['title']}",
                         time=f"{rec['duration_seconds'] or 0:.3f}")
    counts["tests"] += 1
    status = status_name(state)
    properties = ET.SubElement(case, "properties")
    for name in ("status", "severity", "reason", "kind", "satisfied_by"):
        if rec[name] is not None:
            ET.SubElement(properties, "property", name=name, value=str(rec[name]))
    critical = state.spec.severity is Severity.CRITICAL
    if not state.spec.enabled or status in ("skipped", "pending"):
        ET.SubElement(case, "skipped", message=rec["message"])
        counts["skipped"] += 1
    elif status == "fail" and critical:
        ET.SubElement(case, "failure", type="critical", message=rec["message"])
        counts["failures"] += 1
    elif status == "error" and critical:
        ET.SubElement(case, "error", type=rec["reason"] or "error", message=rec["message"])
        counts["errors"] += 1
    elif status in ("fail", "error"):
        out = ET.SubElement(case, "system-out")
        out.text = f"{status.upper()} ({rec['severity']}, does not gate): {rec['message']}\n"


def to_junit(states: Iterable[CheckState], run: RunInfo) -> str:
    """JUnit XML: one testsuite per checklist section, one testcase per check."""
    root = ET.Element("testsuites", name="readiness-exporter")
    if run.release:
        root.set("release", run.release)
    suites: dict[str, tuple[ET.Element, dict[str, int]]] = {}
    for state in sorted_states(states):
        section = state.spec.section
        if section not in suites:
            suite = ET.SubElement(root, "testsuite", name=section_title(section))
            suites[section] = (suite, dict.fromkeys(_COUNTERS, 0))
        suite, counts = suites[section]
        _testcase(suite, state, counts)
    totals = dict.fromkeys(_COUNTERS, 0)
    for suite, counts in suites.values():
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")
