"""Judging the files of one report run: totals, per-file age and release, the verdict.

Counts are summed over every file of the run (a failure in any file fails the run).
Each file must be younger than `max_age` and, when a release is required, name it (a
JUnit property, its file name or a sidecar file, see `report_runs.names_release`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.model import Measurement, MetricFamily, Outcome
from exporter.probes.report_formats import SEVERITIES, TestCounts, VulnCounts
from exporter.probes.report_runs import names_release
from exporter.probes.wording import shortened

if TYPE_CHECKING:
    from exporter.probes.report import ReportCheck

_LIST_IN_MESSAGE = 3

TESTS = MetricFamily("readiness_report_tests",
                     "Test cases in the newest run's JUnit reports, by result.", ("result",))
FINDINGS = MetricFamily("readiness_report_vulnerabilities",
                        "Findings in the newest run's vulnerability reports, by severity.",
                        ("severity",))
ALLOWED = MetricFamily("readiness_report_vulnerabilities_allowed",
                       "Findings allowed per severity (the objective beside the count).",
                       ("severity",))
TIMESTAMP = MetricFamily("readiness_report_timestamp_seconds",
                         "When the oldest report of the newest run was produced (its own "
                         "timestamp, else file or Last-Modified time).")
MAX_AGE = MetricFamily("readiness_report_max_age_seconds",
                       "Maximum accepted report age (the objective).")
FILES = MetricFamily("readiness_report_files",
                     "Report files in the newest run (all of them are judged).")
RELEASE_NAMED = MetricFamily(
    "readiness_report_release_named",
    "1 when every report of the run names the release being deployed, else 0 (only when "
    "a release is required).")
IMAGE_SCANS = MetricFamily("readiness_report_image_scans",
                           "Container image scan reports in the newest run.")
METRICS = (TESTS, FINDINGS, ALLOWED, TIMESTAMP, MAX_AGE, FILES, RELEASE_NAMED, IMAGE_SCANS)


@dataclass(frozen=True, slots=True)
class ParsedReport:
    """One report of the run with where it came from and when it was produced."""

    origin: str  # path or URL
    produced: float | None
    counts: TestCounts | VulnCounts


def _short(items: list[str]) -> str:
    return shortened(items, _LIST_IN_MESSAGE)


def _label(report: ParsedReport) -> str:
    return Path(report.origin).name if "://" not in report.origin else report.origin


def _junit(spec: ReportCheck, reports: list[ParsedReport],
           measurements: list[Measurement], problems: list[str]) -> str:
    counts = [r.counts for r in reports if isinstance(r.counts, TestCounts)]
    tests = sum(c.tests for c in counts)
    failures = sum(c.failures for c in counts)
    errors = sum(c.errors for c in counts)
    skipped = sum(c.skipped for c in counts)
    passed = sum(c.passed for c in counts)
    for result, value in (("passed", passed), ("failed", failures), ("errored", errors),
                          ("skipped", skipped)):
        measurements.append(Measurement(TESTS.name, float(value), {"result": result}))
    if failures + errors > spec.max_failures:
        failing = [_label(r) for r in reports if isinstance(r.counts, TestCounts)
                   and r.counts.failures + r.counts.errors]
        problems.append(f"{failures + errors} failed or errored (max {spec.max_failures}) "
                        f"in {_short(failing)}")
    if tests < spec.min_tests:
        problems.append(f"{tests} tests (min {spec.min_tests})")
    return f"{tests} tests, {failures} failed, {errors} errors, {skipped} skipped"


def _vulns(spec: ReportCheck, reports: list[ParsedReport],
           measurements: list[Measurement], problems: list[str]) -> str:
    counts = [r.counts for r in reports if isinstance(r.counts, VulnCounts)]
    totals = {s: sum(c.by_severity[s] for c in counts) for s in SEVERITIES}
    for severity in SEVERITIES:
        measurements.append(Measurement(FINDINGS.name, float(totals[severity]),
                                        {"severity": severity}))
    for severity, allowed in spec.max_findings.items():
        measurements.append(Measurement(ALLOWED.name, float(allowed), {"severity": severity}))
        if totals[severity] > allowed:
            problems.append(f"{totals[severity]} {severity} (max {allowed})")
    images = sum(1 for c in counts if c.target == "image")
    measurements.append(Measurement(IMAGE_SCANS.name, float(images)))
    if spec.require_image_scan and not images:
        problems.append("no container image scan in the run (require_image_scan: a Trivy "
                        "or Grype report of an image)")
    formats = sorted({c.format.value for c in counts})
    shown = ", ".join(f"{totals[s]} {s}" for s in SEVERITIES if totals[s])
    return f"{'/'.join(formats)}: {shown or 'no findings'}"


def _release_problem(reports: list[ParsedReport], release: str,
                     properties: list[str]) -> str | None:
    unnamed = []
    for report in reports:
        values: tuple[str, ...] = ()
        if isinstance(report.counts, TestCounts):
            values = tuple(v for k, v in report.counts.properties if k in properties)
        if names_release(report.origin, release, values) is None:
            unnamed.append(_label(report))
    if not unnamed:
        return None
    return (f"{_short(unnamed)} not for release {release} (name it in a JUnit property "
            f"{'/'.join(properties)}, the file or directory name, or a `<file>.release` "
            "sidecar)")


def _age_problems(spec: ReportCheck, reports: list[ParsedReport], now: float) -> list[str]:
    if spec.max_age is None:
        return []
    undated = [_label(r) for r in reports if r.produced is None]
    old = [r for r in reports if r.produced is not None and now - r.produced > spec.max_age]
    problems = []
    if undated:
        problems.append(f"no timestamp and no file time: {_short(undated)}")
    if old:
        age = (now - min(r.produced for r in old if r.produced is not None)) / 3600
        verb = "is" if len(old) == 1 else "are up to"
        problems.append(f"{_short([_label(r) for r in old])} {verb} {age:.1f} h old "
                        f"(max {spec.max_age / 3600:.1f} h)")
    return problems


def judge(spec: ReportCheck, reports: list[ParsedReport], release: str | None,
          now: float) -> Outcome:
    """The verdict over every report of the run."""
    measurements: list[Measurement] = [Measurement(FILES.name, float(len(reports)))]
    stamps = [r.produced for r in reports if r.produced is not None]
    if stamps:
        measurements.append(Measurement(TIMESTAMP.name, min(stamps)))
    if spec.max_age is not None:
        measurements.append(Measurement(MAX_AGE.name, spec.max_age))
    problems: list[str] = []
    if spec.format == "junit":
        summary = _junit(spec, reports, measurements, problems)
    else:
        summary = _vulns(spec, reports, measurements, problems)
    problems += _age_problems(spec, reports, now)
    release_text = ""
    if release is not None:
        unnamed = _release_problem(reports, release, spec.release_properties)
        measurements.append(Measurement(RELEASE_NAMED.name, 0.0 if unnamed else 1.0))
        if unnamed:
            problems.append(unnamed)
        else:
            release_text = f", release {release}"
    where = _label(reports[0]) if len(reports) == 1 else f"{len(reports)} reports"
    message = f"{where}: {summary}"
    if problems:
        return Outcome.failed(f"{message}; " + "; ".join(problems), tuple(measurements))
    return Outcome.passed(f"{message}{release_text}", tuple(measurements))
