"""Parsers for the reports `report` reads: JUnit XML and vulnerability-scan JSON.

Inputs are CI artefacts, so untrusted: XML goes through defusedxml with DTDs, entity
declarations and external references forbidden (an entity-expansion bomb is rejected
before anything is expanded), and the caller bounds the size read.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from cvss import CVSS2, CVSS3, CVSS4  # type: ignore[import-untyped]
from cvss.exceptions import CVSSError  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

SEVERITIES = ("critical", "high", "medium", "low", "unknown")


class ReportError(ValueError):
    """The report cannot be read as the configured format."""


class VulnFormat(StrEnum):
    """Vulnerability report formats."""

    TRIVY = "trivy"
    GRYPE = "grype"
    OSV = "osv"
    PIP_AUDIT = "pip_audit"


@dataclass(frozen=True, slots=True)
class TestCounts:
    """Totals of a JUnit report."""

    tests: int
    failures: int
    errors: int
    skipped: int
    timestamp: float | None  # newest suite timestamp, if the report has one
    properties: tuple[tuple[str, str], ...] = ()  # <property name= value=> pairs

    @property
    def passed(self) -> int:
        return max(self.tests - self.failures - self.errors - self.skipped, 0)


@dataclass(frozen=True, slots=True)
class VulnCounts:
    """Findings per severity (keys of SEVERITIES) of a vulnerability report."""

    format: VulnFormat
    by_severity: dict[str, int]
    timestamp: float | None
    target: str = "dependencies"  # "image" for a container image scan


def parse_timestamp(text: str) -> float | None:
    """ISO 8601 time (naive times are taken as UTC); None when unreadable."""
    value = text.strip()
    if not value:
        return None
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    # Trivy/Go write nanoseconds; Python reads at most microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --------------------------------------------------------------------------- JUnit


def _int_attr(element: Element, name: str) -> int | None:
    raw = element.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(float(raw))
    except ValueError:
        raise ReportError(f"<{element.tag}> attribute {name}={raw!r} is not a number") from None


def _suite_counts(suite: Element) -> tuple[int, int, int, int]:
    cases = suite.findall("testcase")
    counted = (
        len(cases),
        sum(1 for c in cases if c.find("failure") is not None),
        sum(1 for c in cases if c.find("error") is not None),
        sum(1 for c in cases if c.find("skipped") is not None),
    )
    values = []
    for index, name in enumerate(("tests", "failures", "errors", "skipped")):
        attr = _int_attr(suite, name)
        if name == "skipped" and attr is None:
            attr = _int_attr(suite, "skips")
        values.append(counted[index] if attr is None else attr)
    return values[0], values[1], values[2], values[3]


def parse_junit(data: bytes) -> TestCounts:
    """Totals of a JUnit XML report (`testsuites` or `testsuite` root, nested suites)."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ReportError(f"XML refused ({type(exc).__name__}: DTDs and entities are "
                          "not accepted)") from None
    except ParseError as exc:
        raise ReportError(f"not well-formed XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ReportError(f"root element is <{root.tag}>, not <testsuites> or <testsuite>")
    suites = [root] if root.tag == "testsuite" else []
    suites += [s for s in root.iter("testsuite") if s is not root]
    # Count leaf suites only, so nested suites are not counted twice.
    leaves = [s for s in suites if s.find("testsuite") is None]
    totals = [0, 0, 0, 0]
    stamps: list[float] = []
    for suite in leaves:
        for index, value in enumerate(_suite_counts(suite)):
            totals[index] += value
        stamp = parse_timestamp(suite.get("timestamp", ""))
        if stamp is not None:
            stamps.append(stamp)
    if not leaves:
        # A bare <testsuites> with totals and no suites.
        totals = [_int_attr(root, n) or 0 for n in ("tests", "failures", "errors", "skipped")]
    root_stamp = parse_timestamp(root.get("timestamp", ""))
    if root_stamp is not None:
        stamps.append(root_stamp)
    properties = tuple((p.get("name", ""), p.get("value", "").strip())
                       for p in root.iter("property") if p.get("name"))
    return TestCounts(totals[0], totals[1], totals[2], totals[3],
                      max(stamps) if stamps else None, properties)


# --------------------------------------------------------------------------- vulnerabilities

_NAMED = {
    "critical": "critical", "high": "high", "important": "high", "medium": "medium",
    "moderate": "medium", "low": "low", "negligible": "low", "minimal": "low",
    "unknown": "unknown", "none": "unknown", "": "unknown",
}


def _named_severity(value: object) -> str:
    return _NAMED.get(str(value or "").strip().lower(), "unknown")


def _cvss_severity(score: float) -> str:
    """CVSS v3 qualitative rating of a base score."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "unknown"


def detect_format(document: Any) -> VulnFormat:
    """Which scanner wrote this JSON document."""
    if isinstance(document, list):
        return VulnFormat.PIP_AUDIT  # pip-audit before 2.0 wrote a bare list
    if isinstance(document, dict):
        if "SchemaVersion" in document or "Results" in document:
            return VulnFormat.TRIVY
        if "matches" in document:
            return VulnFormat.GRYPE
        if "dependencies" in document:
            return VulnFormat.PIP_AUDIT
        if "results" in document:
            return VulnFormat.OSV
    raise ReportError("not a Trivy, Grype, OSV-Scanner or pip-audit JSON report")


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(f"{where} is not a list")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{where} is not an object")
    return value


def cvss_base_score(kind: str, vector: str) -> float | None:
    """Base score of a CVSS v2, v3.x or v4.0 vector (the `cvss` library), None when the
    vector cannot be read."""
    try:
        if vector.startswith("CVSS:4") or kind == "CVSS_V4":
            return float(CVSS4(vector).base_score)
        if vector.startswith("CVSS:3") or kind == "CVSS_V3":
            return float(CVSS3(vector).base_score)
        if kind == "CVSS_V2" or vector.startswith("AV:"):
            return float(CVSS2(vector).base_score)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


def _target(doc: dict[str, Any], fmt: VulnFormat) -> str:
    """"image" when the report scanned a container image."""
    if fmt is VulnFormat.TRIVY and doc.get("ArtifactType") == "container_image":
        return "image"
    source = doc.get("source")
    if fmt is VulnFormat.GRYPE and isinstance(source, dict) and source.get("type") == "image":
        return "image"
    return "dependencies"


def _trivy(doc: dict[str, Any], counts: Counter[str]) -> float | None:
    for result in _list(doc.get("Results"), "Results"):
        for vuln in _list(_dict(result, "Results[]").get("Vulnerabilities"), "Vulnerabilities"):
            counts[_named_severity(_dict(vuln, "Vulnerabilities[]").get("Severity"))] += 1
    created = doc.get("CreatedAt")
    return parse_timestamp(created) if isinstance(created, str) else None


def _grype(doc: dict[str, Any], counts: Counter[str]) -> float | None:
    for match in _list(doc.get("matches"), "matches"):
        vuln = _dict(_dict(match, "matches[]").get("vulnerability"), "matches[].vulnerability")
        counts[_named_severity(vuln.get("severity"))] += 1
    descriptor = doc.get("descriptor")
    stamp = descriptor.get("timestamp") if isinstance(descriptor, dict) else None
    return parse_timestamp(stamp) if isinstance(stamp, str) else None


def _most_severe(ratings: list[str]) -> str:
    ranked = [s for s in SEVERITIES if s in ratings]
    return ranked[0] if ranked else "unknown"


def _osv_vector_severity(vuln: dict[str, Any]) -> str:
    """Rating from the advisory's CVSS vectors (the base score computed from each
    vector; the most severe counts), "unknown" without a readable vector."""
    ratings = []
    for entry in vuln.get("severity") or []:
        if isinstance(entry, dict) and isinstance(entry.get("score"), str):
            score = cvss_base_score(str(entry.get("type", "")), entry["score"])
            if score is not None:
                ratings.append(_cvss_severity(score))
    return _most_severe(ratings)


def _osv_vuln_severity(vuln: dict[str, Any]) -> str:
    """CVSS vector first; the database's own named rating only without one."""
    from_vector = _osv_vector_severity(vuln)
    if from_vector != "unknown":
        return from_vector
    specific = vuln.get("database_specific")
    if isinstance(specific, dict) and specific.get("severity"):
        return _named_severity(specific["severity"])
    return "unknown"


def _osv(doc: dict[str, Any], counts: Counter[str]) -> float | None:
    for result in _list(doc.get("results"), "results"):
        for package in _list(_dict(result, "results[]").get("packages"), "packages"):
            package = _dict(package, "packages[]")
            vulns = {v.get("id"): v for v in _list(package.get("vulnerabilities"),
                                                    "vulnerabilities") if isinstance(v, dict)}
            groups = _list(package.get("groups"), "groups")
            if not groups:  # no grouping: one finding per advisory
                for vuln in vulns.values():
                    counts[_osv_vuln_severity(vuln)] += 1
                continue
            for group in groups:
                group = _dict(group, "groups[]")
                raw = group.get("max_severity")
                try:
                    severity = _cvss_severity(float(raw)) if raw not in (None, "") else ""
                except (TypeError, ValueError):
                    severity = ""
                members = [vulns[i] for i in _list(group.get("ids"), "ids") if i in vulns]
                # The advisories' CVSS vectors count too (the most severe wins) ...
                scored = [_osv_vector_severity(v) for v in members]
                severity = _most_severe([severity, *scored])
                if severity == "unknown":
                    # ... and their named ratings (GHSA database_specific) only without any.
                    severity = _most_severe([_osv_vuln_severity(v) for v in members])
                counts[severity] += 1
    return None


def _pip_audit(doc: Any, counts: Counter[str], unknown_as: str) -> float | None:
    deps = doc if isinstance(doc, list) else _dict(doc, "report").get("dependencies")
    for dep in _list(deps, "dependencies"):
        for _vuln in _list(_dict(dep, "dependencies[]").get("vulns"), "vulns"):
            counts[unknown_as] += 1
    return None


def parse_vulnerabilities(data: bytes, fmt: VulnFormat | None,
                          unknown_as: str = "unknown") -> VulnCounts:
    """Findings per severity. `unknown_as` is where findings without a rating go
    (every pip-audit finding, and unrated ones of the other formats)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"not JSON: {exc}") from None
    fmt = fmt or detect_format(document)
    counts: Counter[str] = Counter()
    if fmt is VulnFormat.PIP_AUDIT:
        stamp = _pip_audit(document, counts, unknown_as)
    else:
        doc = _dict(document, "report")
        parser = {VulnFormat.TRIVY: _trivy, VulnFormat.GRYPE: _grype, VulnFormat.OSV: _osv}[fmt]
        stamp = parser(doc, counts)
        if unknown_as != "unknown" and counts["unknown"]:
            counts[unknown_as] += counts.pop("unknown")
        target = _target(doc, fmt)
        return VulnCounts(fmt, {s: counts[s] for s in SEVERITIES}, stamp, target)
    return VulnCounts(fmt, {s: counts[s] for s in SEVERITIES}, stamp)
