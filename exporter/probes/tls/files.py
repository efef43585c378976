"""`tls_file`: certificate files on disk are valid now and not expiring soon (1.2.4).

Reads PEM (single, bundle, chain), DER and PKCS#12 files from files, directories and
recursive globs, afresh on every run (a renewal by atomic symlink swap is seen on the
next run). Files are parsed in worker threads in chunks, so 10,000 files never stall
the event loop. Each certificate exports its dates and an `_info` series, identified
by its SHA-256 fingerprint; a file that cannot be used is an `error` naming the
problem, a certificate that cannot be parsed fails the check naming its file and
position, and neither stops the other files and certificates from being judged.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
    SecretReference,
)
from exporter.probes.tls.certinfo import CERT_PROBLEM_TEXT, CertFacts, label_text
from exporter.probes.tls.loader import (
    PROBLEM_TEXT,
    BadCertificate,
    FileProblem,
    FileResult,
    expand_env,
    find_files,
    load_file,
)

DEFAULT_SUFFIXES = [".crt", ".pem", ".cer", ".der", ".p12", ".pfx"]


class TlsFileCheck(CheckSpec):
    """`kind: tls_file` options."""

    kind: Literal["tls_file"]
    paths: list[str] = Field(
        min_length=1,
        description="files, directories or globs (`**` recursive); `${VAR}` and "
        "`${VAR:-default}` are expanded from the environment at run time",
    )
    suffixes: list[str] = Field(
        default=DEFAULT_SUFFIXES,
        description="file name endings read when a directory is given or a glob matches one",
    )
    warn_days: float = Field(default=30.0, ge=0, description="fail when a certificate "
                             "expires within this many days (seed: 30)")
    ignore_superseded: bool = Field(
        default=False,
        description="judge only the newest certificate per subject within one file "
        "(older ones are still exported)",
    )
    max_file_bytes: int = Field(default=1_048_576, gt=0, description="larger files are "
                                "an error (oversized)")
    pkcs12_password: SecretReference | None = Field(
        default=None, description="password of PKCS#12 files (by reference)")
    min_certificates: int = Field(default=1, ge=0, description="fail when fewer "
                                  "certificates are found")
    chunk_size: int = Field(default=500, gt=0, le=10_000,
                            description="files parsed per worker-thread task")
    parallel_chunks: int = Field(
        default=1, ge=1, le=32,
        description="chunks parsed at once; parsing holds the GIL, so more than 1 only "
        "helps on slow (network) file systems and lengthens event-loop stalls")


CERT_LABELS = ("path", "serial", "subject_cn", "fingerprint_sha256")

NOT_AFTER = MetricFamily(
    "readiness_tls_file_cert_not_after_timestamp_seconds",
    "Certificate notAfter (expiry) as a Unix time, per certificate in the checked files.",
    CERT_LABELS,
)
NOT_BEFORE = MetricFamily(
    "readiness_tls_file_cert_not_before_timestamp_seconds",
    "Certificate notBefore as a Unix time, per certificate in the checked files.",
    CERT_LABELS,
)
INFO = MetricFamily(
    "readiness_tls_file_cert_info",
    "Certificate facts (value 1): issuer CN, key type and size, signature algorithm, "
    "superseded (1 when a newer certificate of the same subject is in the file).",
    (*CERT_LABELS, "issuer_cn", "key_type", "key_size", "signature_algorithm",
     "post_quantum_signature", "superseded"),
)
UNPARSABLE = MetricFamily(
    "readiness_tls_file_unparsable_certificates",
    "Certificates of a file that cannot be parsed, by bounded problem (invalid_version, "
    "duplicate_extension, unsupported_name_type, unsupported_algorithm, malformed).",
    ("path", "problem"),
)
FILE_ERROR = MetricFamily(
    "readiness_tls_file_file_error",
    "1 for each file that could not be used, with the bounded problem.",
    ("path", "problem"),
)
CERT_COUNT = MetricFamily(
    "readiness_tls_file_certificates",
    "Number of certificates found in the checked files.",
)
WARN = MetricFamily(
    "readiness_tls_file_expiry_warning_seconds",
    "The objective: a certificate fails when it expires within this many seconds.",
)


@dataclass
class _Chunk:
    """What one worker task found in its files."""

    certs: int = 0
    measurements: list[Measurement] = field(default_factory=list)
    expired: list[tuple[float, str]] = field(default_factory=list)
    expiring: list[tuple[float, str]] = field(default_factory=list)
    not_yet: list[tuple[float, str]] = field(default_factory=list)
    problems: list[FileResult] = field(default_factory=list)
    unparsable: list[tuple[str, BadCertificate]] = field(default_factory=list)
    soonest: tuple[float, str] | None = None
    superseded: int = 0  # counted in certs, dates not judged (ignore_superseded)


def _superseded(certs: tuple[CertFacts, ...]) -> set[int]:
    newest: dict[bytes, int] = {}
    for index, facts in enumerate(certs):
        best = newest.get(facts.subject)
        if best is None or facts.not_after > certs[best].not_after:
            newest[facts.subject] = index
    return {i for i, facts in enumerate(certs) if newest[facts.subject] != i}


def _scan_chunk(paths: list[str], max_bytes: int, password: bytes | None, now: float,
                warn_seconds: float, ignore_superseded: bool) -> _Chunk:
    chunk = _Chunk()
    out = chunk.measurements
    for path in paths:
        result = load_file(path, max_bytes, password)
        if result.problem is not None:
            chunk.problems.append(result)
            out.append(Measurement(FILE_ERROR.name, 1.0,
                                   {"path": path, "problem": result.problem.value}))
            continue
        _count_unparsable(chunk, path, result.unparsable)
        superseded = _superseded(result.certs) if ignore_superseded else set()
        seen: set[str] = set()
        for index, facts in enumerate(result.certs):
            if facts.fingerprint in seen:  # the same certificate twice in one file
                continue
            seen.add(facts.fingerprint)
            chunk.certs += 1
            labels = {"path": path, "serial": facts.serial, "subject_cn": facts.subject_cn,
                      "fingerprint_sha256": facts.fingerprint}
            out.append(Measurement(NOT_AFTER.name, facts.not_after, labels))
            out.append(Measurement(NOT_BEFORE.name, facts.not_before, labels))
            out.append(Measurement(INFO.name, 1.0, {
                **labels, "issuer_cn": facts.issuer_cn, "key_type": facts.key_type,
                "key_size": facts.key_size, "signature_algorithm": facts.signature_algorithm,
                "post_quantum_signature": "1" if facts.post_quantum_signature else "0",
                "superseded": "1" if index in superseded else "0",
            }))
            if index in superseded:
                chunk.superseded += 1
                continue
            name = f"{_who(facts)} ({path})"
            if facts.not_after <= now:
                chunk.expired.append((facts.not_after, name))
            elif facts.not_before > now:
                chunk.not_yet.append((facts.not_before, name))
            elif facts.not_after <= now + warn_seconds:
                chunk.expiring.append((facts.not_after, name))
            if chunk.soonest is None or facts.not_after < chunk.soonest[0]:
                chunk.soonest = (facts.not_after, name)
    return chunk


def _who(facts: CertFacts) -> str:
    """A certificate's name in a message: its CN, else serial and fingerprint prefix."""
    return facts.subject_cn or f"serial {facts.serial} sha256 {facts.fingerprint[:16]}"


def _count_unparsable(chunk: _Chunk, path: str, bad: tuple[BadCertificate, ...]) -> None:
    by_problem: dict[str, int] = {}
    for item in bad:
        chunk.unparsable.append((path, item))
        by_problem[item.problem.value] = by_problem.get(item.problem.value, 0) + 1
    for problem, count in by_problem.items():
        chunk.measurements.append(Measurement(UNPARSABLE.name, float(count),
                                              {"path": path, "problem": problem}))


def _unparsable_text(bad: list[tuple[str, BadCertificate]], limit: int = 3) -> str:
    shown = ", ".join(f"{path} certificate #{item.position} ({CERT_PROBLEM_TEXT[item.problem]})"
                      for path, item in bad[:limit])
    more = len(bad) - limit
    return f"cannot be parsed: {shown}" + (f" and {more} more" if more > 0 else "")


def _names(items: list[tuple[float, str]], limit: int = 3) -> str:
    items.sort()
    shown = ", ".join(name for _, name in items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d"


async def run(spec: TlsFileCheck, ctx: ProbeContext) -> Outcome:
    """Scan the configured certificate files."""
    warn_seconds = spec.warn_days * 86400.0
    base = (Measurement(WARN.name, warn_seconds),)
    try:
        patterns = [expand_env(p, os.environ) for p in spec.paths]
    except KeyError as exc:
        return Outcome.errored(Reason.CONFIG, f"environment variable {exc.args[0]} used in "
                               "paths is not set", base)
    password: bytes | None = None
    if spec.pkcs12_password is not None:
        try:
            password = spec.pkcs12_password.resolve().get_secret_value().encode()
        except LookupError as exc:
            return Outcome.errored(Reason.CONFIG, f"pkcs12_password: {exc}", base)

    suffixes = tuple(s.lower() for s in spec.suffixes)
    files, missing = await ctx.run_blocking(find_files, patterns, suffixes)
    now = ctx.now()
    chunks = [files[i : i + spec.chunk_size] for i in range(0, len(files), spec.chunk_size)]
    gate = asyncio.Semaphore(spec.parallel_chunks)

    async def scan(chunk: list[str]) -> _Chunk:
        async with gate:
            return await ctx.run_blocking(_scan_chunk, chunk, spec.max_file_bytes, password,
                                          now, warn_seconds, spec.ignore_superseded)

    results = await asyncio.gather(*(scan(chunk) for chunk in chunks))

    total = _Chunk()
    measurements: list[Measurement] = list(base)
    for path in missing:
        problem = FileResult(path, problem=FileProblem.MISSING)
        total.problems.append(problem)
        measurements.append(Measurement(FILE_ERROR.name, 1.0,
                                        {"path": path, "problem": FileProblem.MISSING.value}))
    for part in results:
        total.certs += part.certs
        measurements.extend(part.measurements)
        total.expired += part.expired
        total.expiring += part.expiring
        total.not_yet += part.not_yet
        total.problems += part.problems
        total.unparsable += part.unparsable
        total.superseded += part.superseded
        if part.soonest and (total.soonest is None or part.soonest[0] < total.soonest[0]):
            total.soonest = part.soonest
    measurements.append(Measurement(CERT_COUNT.name, float(total.certs)))
    return _verdict(spec, total, now, len(files), tuple(measurements))


def _verdict(spec: TlsFileCheck, total: _Chunk, now: float, n_files: int,
             measurements: tuple[Measurement, ...]) -> Outcome:
    failures = []
    if total.unparsable:
        failures.append(_unparsable_text(total.unparsable))
    if total.expired:
        failures.append(f"expired: {_names(total.expired)}")
    if total.not_yet:
        failures.append(f"not yet valid: {_names(total.not_yet)}")
    if total.expiring:
        soon = min(total.expiring)[0]
        failures.append(f"expiring within {spec.warn_days:g} d: {_names(total.expiring)} "
                        f"(first in {_days(soon - now)})")
    problem_text = ""
    if total.problems:
        first = total.problems[:3]
        shown = "; ".join(f"{p.path} {PROBLEM_TEXT[p.problem]}" for p in first
                          if p.problem is not None)
        more = len(total.problems) - len(first)
        problem_text = shown + (f"; and {more} more bad files" if more > 0 else "")
    if failures:
        message = "; ".join(failures + ([problem_text] if problem_text else []))
        return Outcome.failed(message, measurements)
    if total.problems:
        reason = (Reason.CONFIG if all(p.problem in _CONFIG_PROBLEMS for p in total.problems)
                  else Reason.PROTOCOL)
        return Outcome.errored(reason, problem_text, measurements)
    if total.certs < spec.min_certificates:
        return Outcome.failed(f"found {total.certs} certificates in {n_files} files, "
                              f"expected at least {spec.min_certificates}", measurements)
    if total.soonest is None:
        return Outcome.passed("no certificates to check", measurements)
    expiry, name = total.soonest
    return Outcome.passed(_pass_text(spec, total, n_files) + f"; next expiry "
                          f"{label_text(name)} in {_days(expiry - now)}", measurements)


def _pass_text(spec: TlsFileCheck, total: _Chunk, n_files: int) -> str:
    """What a pass may claim: dates were judged (chains are not verified here), and
    superseded certificates were not judged at all."""
    judged = total.certs - total.superseded
    text = (f"{judged} certificates in {n_files} files within their validity dates, none "
            f"expiring within {spec.warn_days:g} d (dates only; chains not verified)")
    if total.superseded:
        text += f"; {total.superseded} superseded not judged (ignore_superseded)"
    return text


_CONFIG_PROBLEMS = {FileProblem.MISSING, FileProblem.NOT_REGULAR, FileProblem.UNREADABLE,
                    FileProblem.OVERSIZED, FileProblem.PKCS12_UNOPENED}

KIND = ProbeKind(
    name="tls_file",
    spec=TlsFileCheck,
    run=run,
    summary="Certificate files (PEM, DER, PKCS#12) are valid and not expiring within "
    "warn_days; exports dates and facts per certificate.",
    metrics=(NOT_AFTER, NOT_BEFORE, INFO, UNPARSABLE, FILE_ERROR, CERT_COUNT, WARN),
)
