"""`secret_scan`: no secret-like values in configuration and code (1.2.2).

With `workload:` it also reads the application's Deployments/StatefulSets and
ConfigMaps through the Kubernetes API (`appenv.literals`): a sensitive variable set as a
literal `value:` (or from a ConfigMap) instead of a Secret reference, a sensitive
ConfigMap key holding a value, or a secret-like ConfigMap value is a finding.

Scans files and globs with the detectors of `secret_detectors` (detect-secrets plugins
and a few of our own). Reports counts per file and detector, never a value; accepted
findings are allow-listed by fingerprint (sha256 of `detector:value`). The work runs in
bounded batches in worker processes (or the thread pool), so the event loop keeps
serving while a large tree is scanned.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import itertools
import multiprocessing
import os
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from stat import S_ISREG
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
)
from exporter.probes.appenv.literals import (
    DEFAULT_SENSITIVE,
    RULES,
    ClusterScan,
    Detectors,
    scan_cluster,
)
from exporter.probes.appenv.reader import open_reader
from exporter.probes.appenv.workload import WorkloadOption
from exporter.probes.secret_detectors import (
    DETECTOR_NAMES,
    Analyzer,
    build,
    candidate_lines,
    fingerprint,
)

DetectorName = Literal[
    "private_key", "aws", "azure_storage", "gcp_api_key", "stripe", "slack", "pagerduty",
    "github", "gitlab", "jwt", "keyword", "high_entropy_base64", "high_entropy_hex",
]
ALL_DETECTORS: list[DetectorName] = list(get_args(DetectorName))
assert tuple(ALL_DETECTORS) == DETECTOR_NAMES
OTHER_FILES = "(other files)"
_MAX_LINE = 4096
_BINARY_SNIFF = 8192


class SecretScanCheck(CheckSpec):
    """`kind: secret_scan` options."""

    kind: Literal["secret_scan"]
    paths: list[str] = Field(default=[], description="files, directories or globs "
                             "(`**` recursive) to scan")
    workload: WorkloadOption = Field(default=None, description="also scan the "
                                         "application's workloads and ConfigMaps through the "
                                         "Kubernetes API")
    sensitive_names: list[str] = Field(default=DEFAULT_SENSITIVE, min_length=1, description=(
        "variable / ConfigMap key patterns (fnmatch, case-insensitive) that must come from a "
        "Secret"))
    not_sensitive_names: list[str] = Field(default=[], description="patterns exempted from "
                                           "sensitive_names (e.g. '*_PUBLIC_KEY')")
    managed_by: list[str] = Field(default=[], description="owner kinds a Secret feeding a "
                                  "sensitive variable must have, e.g. [ExternalSecret] "
                                  "(needs the connection's secrets: metadata); empty: any "
                                  "Secret reference passes")
    exclude: list[str] = Field(default=[], description="glob patterns (matched against the "
                               "path and the file name) to skip")
    detectors: list[DetectorName] = Field(default=ALL_DETECTORS, min_length=1)
    allow: list[str] = Field(default=[], description="fingerprints (hex sha256 of "
                             "`detector:value`) of accepted findings")
    max_findings: int = Field(default=0, ge=0, description="findings tolerated")
    max_files_reported: int = Field(default=20, gt=0, le=1000, description="files named "
                                    "in metrics; the rest are aggregated")
    max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="larger files "
                                "are skipped (and counted)")
    max_files: int = Field(default=100_000, gt=0, description="scan at most this many files")
    require_files: bool = Field(default=True, description="fail when no file matches")
    entropy_base64_limit: float = Field(default=4.5, gt=0, le=8)
    entropy_hex_limit: float = Field(default=3.0, gt=0, le=4)
    batch_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="bytes scanned "
                             "per task")
    isolation: Literal["process", "thread"] = Field(
        default="process", description="run the scan in worker processes (no GIL contention "
        "with the event loop) or in the exporter's thread pool")
    workers: int = Field(default=1, ge=1, le=32, description="worker processes "
                         "(isolation: process)")

    @model_validator(mode="after")
    def _something(self) -> SecretScanCheck:
        if not self.paths and self.workload is None:
            raise ValueError("set paths, workload or both")
        return self

    @field_validator("allow")
    @classmethod
    def _fingerprints(cls, value: list[str]) -> list[str]:
        for item in value:
            if len(item) != 64 or any(c not in "0123456789abcdef" for c in item):
                raise ValueError("allow entries are fingerprints: 64 lowercase hex digits "
                                 "(sha256 of 'detector:value'), never the value itself")
        return value


FINDINGS = MetricFamily("readiness_secret_scan_findings",
                        "Secret-like values found, by file (the first max_files_reported "
                        "files; the rest under '(other files)') and detector.",
                        ("file", "detector"))
BY_DETECTOR = MetricFamily("readiness_secret_scan_detector_findings",
                           "Secret-like values found by each detector (all files).",
                           ("detector",))
ALLOWED = MetricFamily("readiness_secret_scan_allowlisted_findings",
                       "Findings accepted by an allow-list fingerprint.")
FILES = MetricFamily("readiness_secret_scan_files", "Files scanned.")
SKIPPED = MetricFamily("readiness_secret_scan_skipped_files",
                       "Files skipped (binary, larger than max_file_bytes, unreadable).")
BYTES = MetricFamily("readiness_secret_scan_bytes", "Bytes scanned.")
CLUSTER_FINDINGS = MetricFamily(
    "readiness_secret_scan_kubernetes_findings",
    "Findings in the application's workloads and ConfigMaps (workload:), by rule: "
    "literal_env, configmap_env, configmap_key, configmap_value, unmanaged_secret.",
    ("rule",))
METRICS = (FINDINGS, BY_DETECTOR, ALLOWED, FILES, SKIPPED, BYTES, CLUSTER_FINDINGS)


@dataclass
class _Tally:
    """Counts only: values never leave the scanning function."""

    findings: Counter[tuple[str, str]] = field(default_factory=Counter)  # (file, detector)
    allowed: int = 0
    files: int = 0
    skipped: int = 0
    bytes: int = 0

    def add(self, other: _Tally) -> None:
        self.findings.update(other.findings)
        self.allowed += other.allowed
        self.files += other.files
        self.skipped += other.skipped
        self.bytes += other.bytes


def _expand(patterns: list[str], exclude: list[str], limit: int) -> list[tuple[str, int]]:
    """Matching regular files with their sizes, sorted by path, at most `limit`."""
    found: set[str] = set()
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if os.path.isdir(pattern):
            for root, _dirs, files in os.walk(pattern):
                found.update(os.path.join(root, name) for name in files)
        else:
            found.update(glob.glob(pattern, recursive=True))

    def excluded(path: str) -> bool:
        name = os.path.basename(path)
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in exclude)

    out: list[tuple[str, int]] = []
    for path in sorted(found):
        if excluded(path):
            continue
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if S_ISREG(stat.st_mode):
            out.append((path, stat.st_size))
            if len(out) >= limit:
                break
    return out


def _batches(files: list[tuple[str, int]], batch_bytes: int) -> list[list[str]]:
    """Consecutive groups of about `batch_bytes` (and at most 2,000 files)."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path, length in files:
        current.append(path)
        size += length
        if size >= batch_bytes or len(current) >= 2000:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def _scan_file(path: str, detectors: list[tuple[str, Analyzer]], allow: frozenset[str],
               max_bytes: int, tally: _Tally) -> None:
    names = [name for name, _ in detectors]
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            tally.skipped += 1
            return
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError:
        tally.skipped += 1
        return
    if b"\x00" in data[:_BINARY_SNIFF]:
        tally.skipped += 1
        return
    tally.files += 1
    tally.bytes += len(data)
    seen: set[str] = set()  # values already counted in this file (any detector)
    for segment in candidate_lines(data, names, _MAX_LINE):
        for name, analyze in detectors:
            for value in analyze(path, segment):
                if value in seen:
                    continue
                seen.add(value)
                if fingerprint(name, value) in allow:
                    tally.allowed += 1
                else:
                    tally.findings[(path, name)] += 1


@lru_cache(maxsize=8)
def _detectors(names: tuple[str, ...], base64_limit: float,
               hex_limit: float) -> list[tuple[str, Analyzer]]:
    return build(names, base64_limit, hex_limit)


def _scan_files(paths: list[str], names: tuple[str, ...], base64_limit: float,
                hex_limit: float, allow: frozenset[str], max_file_bytes: int) -> _Tally:
    """Scan one batch (in a worker thread or process); only counts come back."""
    tally = _Tally()
    detectors = _detectors(names, base64_limit, hex_limit)
    for path in paths:
        _scan_file(path, detectors, allow, max_file_bytes, tally)
    return tally


def _human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


async def scan(spec: SecretScanCheck, ctx: ProbeContext) -> tuple[_Tally, int]:
    """Scan every matching file in bounded batches; (tally, files matched).

    `isolation: process` lists and scans in spawned worker processes, so neither the
    directory walk nor the regex work competes with the event loop for the GIL;
    `thread` uses the exporter's thread pool, one batch at a time.
    """
    args = (tuple(spec.detectors), spec.entropy_base64_limit, spec.entropy_hex_limit,
            frozenset(spec.allow), spec.max_file_bytes)
    total = _Tally()
    if spec.isolation == "thread":
        files = await ctx.run_blocking(_expand, spec.paths, spec.exclude, spec.max_files)
        for batch in _batches(files, spec.batch_bytes):
            total.add(await ctx.run_blocking(_scan_files, batch, *args))
        return total, len(files)
    pool = ProcessPoolExecutor(max_workers=spec.workers,
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        # Submitting starts the worker processes (spawn, slow): done from a thread.
        listing = await ctx.run_blocking(pool.submit, _expand, spec.paths, spec.exclude,
                                         spec.max_files)
        files = await asyncio.wrap_future(listing)
        batches = iter(_batches(files, spec.batch_bytes))
        pending: list[Future[_Tally]] = []
        for batch in itertools.islice(batches, 2 * spec.workers):
            pending.append(await ctx.run_blocking(pool.submit, _scan_files, batch, *args))
        while pending:
            total.add(await asyncio.wrap_future(pending.pop(0)))
            following = next(batches, None)
            if following is not None:
                pending.append(pool.submit(_scan_files, following, *args))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    await ctx.run_blocking(pool.shutdown, True)
    return total, len(files)


async def _files(spec: SecretScanCheck, ctx: ProbeContext
                 ) -> tuple[bool, str, list[Measurement]]:
    """(failing, message, measurements) of the file part."""
    tally, matched = await scan(spec, ctx)
    if matched == 0 and spec.require_files:
        return True, f"no file matches {', '.join(spec.paths)}: nothing was scanned", []
    per_file: Counter[str] = Counter()
    per_detector: Counter[str] = Counter()
    for (path, detector), count in tally.findings.items():
        per_file[path] += count
        per_detector[detector] += count
    shown = {path for path, _ in per_file.most_common(spec.max_files_reported)}
    grouped: Counter[tuple[str, str]] = Counter()
    for (path, detector), count in tally.findings.items():
        grouped[(path if path in shown else OTHER_FILES, detector)] += count
    measurements = [Measurement(FINDINGS.name, float(count), {"file": f, "detector": d})
                    for (f, d), count in sorted(grouped.items())]
    measurements += [Measurement(BY_DETECTOR.name, float(per_detector[d]), {"detector": d})
                     for d in spec.detectors]
    measurements += [Measurement(ALLOWED.name, float(tally.allowed)),
                     Measurement(FILES.name, float(tally.files)),
                     Measurement(SKIPPED.name, float(tally.skipped)),
                     Measurement(BYTES.name, float(tally.bytes))]
    total = sum(per_file.values())
    scanned = f"{tally.files} files ({_human_bytes(tally.bytes)})"
    extras = []
    if tally.allowed:
        extras.append(f"{tally.allowed} allow-listed")
    if tally.skipped:
        extras.append(f"{tally.skipped} skipped")
    tail = f"; {', '.join(extras)}" if extras else ""
    if total > spec.max_findings:
        worst = ", ".join(
            f"{path} ({', '.join(f'{d} {c}' for (p, d), c in sorted(tally.findings.items()) if p == path)})"  # noqa: E501
            for path, _ in per_file.most_common(3))
        more = f" and {len(per_file) - 3} more files" if len(per_file) > 3 else ""
        return True, (f"{total} secret-like value(s) in {len(per_file)} of {scanned}: "
                      f"{worst}{more}{tail}"), measurements
    found = f"{total} tolerated finding(s)" if total else "no secret-like values"
    return False, f"{found} in {scanned}{tail}", measurements


def _cluster_message(result: ClusterScan, where: str) -> str:
    scanned = (f"{result.templates} workload(s) and {result.config_maps} ConfigMap(s) of "
               f"{where}")
    allowed = f"; {result.allowed} allow-listed" if result.allowed else ""
    if not result.findings:
        return f"no sensitive literal and no secret-like ConfigMap value in {scanned}{allowed}"
    shown = "; ".join(f.where for f in result.findings[:5])
    more = f" and {len(result.findings) - 5} more" if len(result.findings) > 5 else ""
    return (f"{len(result.findings)} finding(s) in {scanned}: {shown}{more} (use "
            f"valueFrom.secretKeyRef or envFrom.secretRef){allowed}")


async def run(spec: SecretScanCheck, ctx: ProbeContext) -> Outcome:
    """Scan the files and the cluster; findings are compared with `max_findings`."""
    parts: list[str] = []
    measurements: list[Measurement] = []
    failing = False
    if spec.paths:
        failing, message, measurements = await _files(spec, ctx)
        parts.append(message)
    if spec.workload is not None:
        reader = await open_reader(ctx, spec.workload)
        detectors = Detectors(tuple(spec.detectors), spec.entropy_base64_limit,
                              spec.entropy_hex_limit, frozenset(spec.allow))
        result = await scan_cluster(ctx, reader, spec.sensitive_names,
                                    spec.not_sensitive_names, detectors, spec.managed_by)
        measurements += [Measurement(CLUSTER_FINDINGS.name, float(result.count(rule)),
                                     {"rule": rule}) for rule in RULES]
        failing = failing or len(result.findings) > spec.max_findings
        parts.append(_cluster_message(result, spec.workload.where()))
    message = "; ".join(parts)
    if failing:
        return Outcome.failed(message, tuple(measurements))
    return Outcome.passed(message, tuple(measurements))


KIND = ProbeKind(
    name="secret_scan",
    spec=SecretScanCheck,
    run=run,
    summary="No secret-like values (cloud keys, tokens, private keys, JWTs, literal "
    "passwords, high-entropy strings) in the configured files, and (workload:) no sensitive "
    "variable set as a literal in the application's workloads or kept in its ConfigMaps; "
    "counts and names only, never values.",
    metrics=METRICS,
)
