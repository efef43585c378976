"""`report`: CI artefacts as checks: JUnit test reports and vulnerability scans (1.1.x).

Reads every file of the newest run a path or glob matches (`report_runs`), or fetches a
URL (one report), then applies the rules of its format to all of them
(`report_verdict`): tests (0 failures/errors, at least `min_tests`), or findings per
severity against `max_findings`. Each report's own timestamp (else the file time or
HTTP Last-Modified) must be younger than `max_age`, and with a release to bind to, each
report must name it.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Literal

from pydantic import Field, model_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretReference,
)
from exporter.probes.report_formats import (
    ReportError,
    TestCounts,
    VulnCounts,
    VulnFormat,
    parse_junit,
    parse_vulnerabilities,
)
from exporter.probes.report_runs import (
    NoReport,
    ReportFile,
    RunBy,
    RunConfigError,
    RunSelection,
    newest_run,
)
from exporter.probes.report_verdict import ALLOWED, MAX_AGE, METRICS, ParsedReport, judge
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
                             description="file or glob (`**` allowed); every file of the "
                             "newest run is read")
    run_by: RunBy = Field(default="directory", description="what makes a run: `directory` "
                          "(files beside the newest match), `run_id` (same run_id_pattern "
                          "group), `mtime_window` (modified within run_window of the newest)")
    run_id_pattern: str | None = Field(default=None, min_length=1, description="run_by "
                                       "run_id: regular expression searched in the path; "
                                       "its first group (else the match) is the run id")
    run_window: Duration = Field(default=1800.0, gt=0, description="run_by mtime_window: "
                                 "files modified this long before the newest belong to its run")
    max_files: int = Field(default=500, gt=0, description="more files in one run is an error")
    release: str | None = Field(default=None, min_length=1, description="release each report "
                                "must name (default: settings.release; unset: not required)")
    require_release: bool = Field(default=False, description="error unless a release is "
                                  "known (release or settings.release) to bind to")
    release_properties: list[str] = Field(
        default=["release", "version", "app.version", "release.version"], min_length=1,
        description="JUnit <property> names whose value may name the release")
    require_image_scan: bool = Field(default=False, description="vulnerabilities: the run "
                                     "must include a container image scan (Trivy or Grype)")
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
        default="critical", description="severity given to findings without one (all "
        "pip-audit findings): unrated counts as critical unless set otherwise")
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
        if self.run_by == "run_id":
            if self.run_id_pattern is None:
                raise ValueError("run_by run_id needs run_id_pattern")
            try:
                re.compile(self.run_id_pattern)
            except re.error as exc:
                raise ValueError(f"run_id_pattern is not a regular expression: {exc}") from None
        return self


class _Missing(Exception):
    """No report exists (the check fails: nothing shows the item is done)."""


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


def _parse_all(spec: ReportCheck, files: list[ReportFile]) -> list[ParsedReport]:
    parsed = []
    for report in files:
        try:
            counts = _parse(spec, report.data)
        except ReportError as exc:
            raise ReportError(f"{report.path}: {exc}") from None
        produced = counts.timestamp if counts.timestamp is not None else report.mtime
        parsed.append(ParsedReport(report.path, produced, counts))
    return parsed


async def _read_run(spec: ReportCheck, ctx: ProbeContext) -> list[ReportFile]:
    if spec.path is not None:
        selection = RunSelection(spec.path, spec.run_by, spec.run_id_pattern, spec.run_window,
                                 spec.max_bytes, spec.max_files)
        return await ctx.run_blocking(newest_run, selection)
    data, modified, origin = await _fetch(spec, ctx)
    return [ReportFile(origin, modified, data)]


def objectives(spec: ReportCheck) -> tuple[Measurement, ...]:
    """The maximum age and the findings allowed per severity: from the configuration, so
    exported also when the run errors (issue 13)."""
    kept = [] if spec.max_age is None else [Measurement(MAX_AGE.name, spec.max_age)]
    if spec.format != "junit":  # every scanner format judges findings per severity
        kept += [Measurement(ALLOWED.name, float(allowed), {"severity": severity})
                 for severity, allowed in spec.max_findings.items()]
    return tuple(kept)


async def run(spec: ReportCheck, ctx: ProbeContext) -> Outcome:
    """Read every report of the newest run and apply the rules to all of them."""
    try:
        files = await _read_run(spec, ctx)
        parsed = await ctx.run_blocking(_parse_all, spec, files)
    except (_Missing, NoReport) as exc:
        return Outcome.failed(str(exc), objectives(spec))
    except ProbeError as exc:  # the objectives are kept beside the error
        return exc.with_measurements(objectives(spec)).outcome()
    except RunConfigError as exc:
        return Outcome.errored(Reason.CONFIG, str(exc), objectives(spec))
    except ReportError as exc:
        return Outcome.errored(Reason.PROTOCOL, str(exc), objectives(spec))
    release = spec.release if spec.release is not None else ctx.release
    if release is None and spec.require_release:
        return Outcome.errored(Reason.CONFIG, "release being deployed is unknown: set "
                               "settings.release, or release on the check", objectives(spec))
    return judge(spec, parsed, release, ctx.now())


KIND = ProbeKind(
    name="report",
    spec=ReportCheck,
    run=run,
    summary="Every JUnit or vulnerability-scan report (Trivy, Grype, OSV-Scanner, "
    "pip-audit) of the newest CI run passes its rules, is younger than max_age and names "
    "the release.",
    metrics=METRICS,
)
