"""`report`: CI artefacts as checks: JUnit test reports and vulnerability scans (1.1.x).

Reads the newest file matching a path or glob, or fetches a URL, then applies the
rules of its format: tests (0 failures/errors, at least `min_tests`), or findings per
severity against `max_findings`. The report's own timestamp (else the file time or
HTTP Last-Modified) must be younger than `max_age`.
"""

from __future__ import annotations

import glob
import os
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Findings,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretReference,
)
from exporter.probes.report_formats import (
    SEVERITIES,
    ReportError,
    TestCounts,
    VulnCounts,
    VulnFormat,
    parse_junit,
    parse_vulnerabilities,
)
from exporter.transport.base import request_budget
from exporter.transport.http import HTTP, HttpOptions, reject_credentials
from exporter.transport.http_auth import HttpUrl, credential_headers
from exporter.transport.tls import TlsClientOptions

Format = Literal["junit", "trivy", "grype", "osv", "pip_audit", "vulnerabilities"]
SeverityName = Literal["critical", "high", "medium", "low", "unknown"]


class ReportCheck(CheckSpec):
    """`kind: report` options."""

    kind: Literal["report"]
    format: Format = Field(description="junit, trivy, grype, osv, pip_audit, or "
                           "vulnerabilities (any of the four scanners, detected)")
    path: str | None = Field(default=None, min_length=1,
                             description="file or glob (`**` allowed); the newest match is read")
    url: HttpUrl | None = Field(default=None, description="fetch the report over HTTP instead")
    bearer_token: SecretReference | None = Field(
        default=None, description="token sent as `Authorization: Bearer` to `url`")
    tls: TlsClientOptions = Field(default_factory=TlsClientOptions,
                                  description="TLS client options for an https:// url "
                                  "(ca_file, cert_file, key_file, server_name, "
                                  "insecure_skip_verify)")
    max_age: Duration | None = Field(default=7 * 86400.0, gt=0,
                                     description="report must be younger (null: no limit)")
    min_tests: int = Field(default=1, ge=0, description="junit: at least this many tests")
    max_failures: int = Field(default=0, ge=0, description="junit: failures + errors allowed")
    max_findings: dict[SeverityName, int] = Field(
        default={"critical": 0}, description="vulnerabilities: allowed findings per severity")
    unknown_as: SeverityName = Field(
        default="unknown", description="severity given to findings without one (all "
        "pip-audit findings)")
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="larger reports "
                           "are refused")

    @model_validator(mode="after")
    def _one_source(self) -> ReportCheck:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path or url")
        if self.bearer_token is not None and self.url is None:
            raise ValueError("bearer_token is only used with url")
        if "tls" in self.model_fields_set and self.url is None:
            raise ValueError("tls is only used with url")
        return self


TESTS = MetricFamily("readiness_report_tests",
                     "Test cases in the newest JUnit report, by result.", ("result",))
FINDINGS = MetricFamily("readiness_report_vulnerabilities",
                        "Findings in the newest vulnerability report, by severity.",
                        ("severity",))
ALLOWED = MetricFamily("readiness_report_vulnerabilities_allowed",
                       "Findings allowed per severity (the objective beside the count).",
                       ("severity",))
TIMESTAMP = MetricFamily("readiness_report_timestamp_seconds",
                         "When the report was produced (its own timestamp, else file or "
                         "Last-Modified time).")
MAX_AGE = MetricFamily("readiness_report_max_age_seconds",
                       "Maximum accepted report age (the objective).")
METRICS = (TESTS, FINDINGS, ALLOWED, TIMESTAMP, MAX_AGE)


class _Missing(Exception):
    """No report exists (the check fails: nothing shows the item is done)."""


def _newest(pattern: str, max_bytes: int) -> tuple[bytes, float, str]:
    matches = glob.glob(os.path.expanduser(pattern), recursive=True)
    files = []
    for name in matches:
        try:
            stat = os.stat(name)
        except OSError:
            continue
        if os.path.isfile(name):
            files.append((stat.st_mtime, name, stat.st_size))
    if not files:
        raise _Missing(f"no report matches {pattern}")
    mtime, name, size = max(files)
    if size > max_bytes:
        raise ReportError(f"{name} is {size} bytes, over max_bytes {max_bytes}")
    with open(name, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ReportError(f"{name} is over max_bytes {max_bytes}")
    return data, mtime, name


async def _fetch(spec: ReportCheck, ctx: ProbeContext) -> tuple[bytes, float | None, str]:
    """GET the report through the HTTP transport; `ProbeError` for transport failures."""
    assert spec.url is not None
    headers = credential_headers(bearer_token=spec.bearer_token)
    client = await ctx.client(HTTP, HttpOptions(tls=spec.tls))
    response = await client.request("GET", spec.url, budget=request_budget(spec.timeout),
                                    headers=headers, max_body_bytes=spec.max_bytes,
                                    limit_option="max_bytes")
    if response.status == 404:
        raise _Missing(f"no report at {spec.url} (HTTP 404)")
    if response.status in (401, 403):
        raise reject_credentials(spec.url, response.status)
    if response.status != 200:
        raise ProbeError(Reason.PROTOCOL, f"report URL answered HTTP {response.status}")
    modified: float | None = None
    if "Last-Modified" in response.headers:
        try:
            modified = parsedate_to_datetime(response.headers["Last-Modified"]).timestamp()
        except (TypeError, ValueError):
            modified = None
    return response.body, modified, spec.url


def _parse(spec: ReportCheck, data: bytes) -> TestCounts | VulnCounts:
    if spec.format == "junit":
        return parse_junit(data)
    fmt = None if spec.format == "vulnerabilities" else VulnFormat(spec.format)
    return parse_vulnerabilities(data, fmt, spec.unknown_as)


def _age_problem(spec: ReportCheck, produced: float | None, now: float) -> str | None:
    if spec.max_age is None:
        return None
    if produced is None:
        return "report has no timestamp and no file time"
    age = now - produced
    if age > spec.max_age:
        return f"report is {age / 3600:.1f} h old (max {spec.max_age / 3600:.1f} h)"
    return None


async def run(spec: ReportCheck, ctx: ProbeContext) -> Outcome:
    """Read the newest report and apply its rules."""
    file_time: float | None
    try:
        if spec.path is not None:
            data, file_time, origin = await ctx.run_blocking(_newest, spec.path, spec.max_bytes)
        else:
            data, file_time, origin = await _fetch(spec, ctx)
        parsed = await ctx.run_blocking(_parse, spec, data)
    except _Missing as exc:
        return Outcome.failed(str(exc))
    except ProbeError as exc:  # the objective is kept beside the error
        objective = [] if spec.max_age is None else [Measurement(MAX_AGE.name, spec.max_age)]
        return exc.with_measurements(objective).outcome()
    except ReportError as exc:
        return Outcome.errored(Reason.PROTOCOL, str(exc))

    name = Path(origin).name if spec.path is not None else origin
    produced = parsed.timestamp if parsed.timestamp is not None else file_time
    findings = Findings()
    if produced is not None:
        findings.measure(TIMESTAMP, produced)
    if spec.max_age is not None:
        findings.measure(MAX_AGE, spec.max_age)
    if isinstance(parsed, TestCounts):
        summary = _judge_tests(spec, parsed, findings)
    else:
        summary = _judge_findings(spec, parsed, findings)
    age = _age_problem(spec, produced, ctx.now())
    if age:
        findings.problem(age)
    message = f"{name}: {summary}"
    measurements = tuple(findings.measurements)
    if findings.failed:
        return Outcome.failed(f"{message}; " + "; ".join(findings.problems), measurements)
    return Outcome.passed(message, measurements)


def _judge_tests(spec: ReportCheck, parsed: TestCounts, findings: Findings) -> str:
    """JUnit rules; returns the summary."""
    for result, value in (("passed", parsed.passed), ("failed", parsed.failures),
                          ("errored", parsed.errors), ("skipped", parsed.skipped)):
        findings.measure(TESTS, value, result=result)
    if parsed.failures + parsed.errors > spec.max_failures:
        findings.problem(f"{parsed.failures + parsed.errors} failed or errored "
                         f"(max {spec.max_failures})")
    if parsed.tests < spec.min_tests:
        findings.problem(f"{parsed.tests} tests (min {spec.min_tests})")
    return (f"{parsed.tests} tests, {parsed.failures} failed, {parsed.errors} errors, "
            f"{parsed.skipped} skipped")


def _judge_findings(spec: ReportCheck, parsed: VulnCounts, findings: Findings) -> str:
    """Vulnerability rules; returns the summary."""
    for severity in SEVERITIES:
        findings.measure(FINDINGS, parsed.by_severity[severity], severity=severity)
    for severity, allowed in spec.max_findings.items():
        findings.measure(ALLOWED, allowed, severity=severity)
        if parsed.by_severity[severity] > allowed:
            findings.problem(f"{parsed.by_severity[severity]} {severity} (max {allowed})")
    shown = ", ".join(f"{parsed.by_severity[s]} {s}" for s in SEVERITIES
                      if parsed.by_severity[s])
    return f"{parsed.format.value}: {shown or 'no findings'}"


KIND = ProbeKind(
    name="report",
    spec=ReportCheck,
    run=run,
    summary="Newest JUnit or vulnerability-scan report (Trivy, Grype, OSV-Scanner, "
    "pip-audit) passes its rules and is younger than max_age.",
    metrics=METRICS,
)
