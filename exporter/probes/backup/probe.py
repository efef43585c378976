"""`backup`: the newest backup is fresh, not empty, not shrunk, encrypted (2.3.3, 3.1.4, 10.1).

The source is a directory (or glob), pgBackRest `info` JSON or an S3 prefix. With
`newer_than`, the newest backup must have completed after the newest item of a
reference source (10.1.3: model artifacts backed up after the newest trained model).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
)
from exporter.probes.backup.common import human_bytes, human_duration
from exporter.probes.backup.sources import (
    BackupItem,
    BackupSource,
    DirectorySource,
    Listing,
    describe,
    list_backups,
)

COMPLETION = MetricFamily(
    "readiness_backup_last_completion_timestamp_seconds",
    "Completion time of the newest backup found.",
)
SIZE = MetricFamily("readiness_backup_last_size_bytes", "Size of the newest backup.")
PREVIOUS_SIZE = MetricFamily(
    "readiness_backup_previous_size_bytes", "Size of the backup before the newest one."
)
ENCRYPTED = MetricFamily(
    "readiness_backup_encrypted",
    "1 when the newest backup is in an accepted encrypted format, 0 otherwise.",
)
FORMAT = MetricFamily(
    "readiness_backup_format_info",
    "Format of the newest backup recognised from its first bytes (value 1).",
    ("format",),
)
COUNT = MetricFamily("readiness_backup_backups_found",
                     "Number of backups found in the source.")
MAX_AGE = MetricFamily(
    "readiness_backup_max_age_seconds",
    "Accepted age of the newest backup: max_age (the backup interval) plus "
    "expected_duration (a backup run in progress).",
)
CHECKSUM_OK = MetricFamily(
    "readiness_backup_checksum_ok",
    "1 when the newest backup matches its checksum sidecar, 0 when not or missing.",
)
TYPE_COMPLETION = MetricFamily(
    "readiness_backup_type_last_completion_timestamp_seconds",
    "pgBackRest: completion time of the newest backup of each type (full, diff, incr).",
    ("type",),
)
REFERENCE = MetricFamily(
    "readiness_backup_reference_timestamp_seconds",
    "Newest item of the reference source (newer_than); the backup must be newer.",
)


class BackupCheck(CheckSpec):
    """`kind: backup` options."""

    kind: Literal["backup"]
    source: BackupSource = Field(description="where the backups are")
    max_age: Duration | None = Field(
        default=None, gt=0,
        description="the backup interval: the newest backup must be younger than this "
        "plus expected_duration (e.g. 6h)",
    )
    expected_duration: Duration = Field(
        default=0.0, ge=0,
        description="how long one backup run may take; added to max_age so a backup in "
        "progress does not turn the check red (e.g. 1h)",
    )
    min_size: int = Field(default=1, ge=0, description="bytes; smaller counts as empty")
    max_shrink: float | None = Field(
        default=0.5, ge=0, le=1,
        description="fail when the newest backup is smaller than the previous one by more "
        "than this share (0.5 = half); null disables",
    )
    require_encrypted: bool = Field(
        default=False, description="the newest backup must be in an accepted encrypted format"
    )
    newer_than: BackupSource | None = Field(
        default=None,
        description="a reference source; the newest backup must be newer than its newest "
        "item",
    )


def accepted_age(spec: BackupCheck) -> float | None:
    """Oldest accepted age of the newest backup: interval plus expected run time."""
    return None if spec.max_age is None else spec.max_age + spec.expected_duration


def _checksummed(spec: BackupCheck) -> DirectorySource | None:
    """The directory source when it verifies checksum sidecars."""
    source = spec.source
    if isinstance(source, DirectorySource) and source.checksum != "none":
        return source
    return None


def _listing_measurements(spec: BackupCheck, listing: Listing,
                          ref_item: BackupItem | None) -> list[Measurement]:
    """Facts known before the newest backup is looked at."""
    measurements = [Measurement(COUNT.name, float(listing.count))]
    measurements += [Measurement(TYPE_COMPLETION.name, when, {"type": kind})
                     for kind, when in sorted(listing.by_type.items())]
    limit = accepted_age(spec)
    if limit is not None:
        measurements.append(Measurement(MAX_AGE.name, limit))
    if ref_item is not None:
        measurements.append(Measurement(REFERENCE.name, ref_item.completed))
    return measurements


def _newest_measurements(spec: BackupCheck, newest: BackupItem,
                         previous: BackupItem | None) -> list[Measurement]:
    """Facts of the newest backup (and the size of the one before)."""
    measurements = [Measurement(COMPLETION.name, newest.completed),
                    Measurement(SIZE.name, float(newest.size))]
    if previous is not None:
        measurements.append(Measurement(PREVIOUS_SIZE.name, float(previous.size)))
    if newest.format is not None:
        measurements += [
            Measurement(ENCRYPTED.name, 1.0 if newest.format.encrypted else 0.0),
            Measurement(FORMAT.name, 1.0, {"format": newest.format.name}),
        ]
    if _checksummed(spec) is not None:
        measurements.append(Measurement(CHECKSUM_OK.name, 1.0 if newest.checksum_ok else 0.0))
    return measurements


def _content_problems(spec: BackupCheck, newest: BackupItem,
                      previous: BackupItem | None) -> list[str]:
    """Size, shrink, encryption and checksum problems of the newest backup."""
    problems: list[str] = []
    if newest.size < spec.min_size:
        problems.append(f"is empty ({newest.size} bytes)")
    if (spec.max_shrink is not None and previous is not None and previous.size > 0
            and newest.size < previous.size * (1 - spec.max_shrink)):
        share = 1 - newest.size / previous.size
        problems.append(f"shrank {share:.0%} against the previous backup "
                        f"({human_bytes(previous.size)} -> {human_bytes(newest.size)})")
    if spec.require_encrypted and not (newest.format and newest.format.encrypted):
        shown = newest.format.name if newest.format else "not inspected"
        problems.append(f"is not encrypted (format {shown})")
    checksummed = _checksummed(spec)
    if checksummed is not None:
        if newest.checksum_ok is None:
            problems.append(f"has no {checksummed.checksum} sidecar")
        elif not newest.checksum_ok:
            problems.append(f"does not match its {checksummed.checksum} sidecar")
    return problems


def _timing_problems(spec: BackupCheck, newest: BackupItem, age: float,
                     ref_item: BackupItem | None) -> list[str]:
    """Age and newer-than-reference problems of the newest backup."""
    problems: list[str] = []
    limit = accepted_age(spec)
    if limit is not None and age > limit:
        allowance = (f" = {human_duration(spec.max_age or 0)} interval + "
                     f"{human_duration(spec.expected_duration)} expected duration"
                     if spec.expected_duration else "")
        problems.append(f"is {human_duration(age)} old (max {human_duration(limit)}"
                        f"{allowance})")
    # no reference item: nothing trained yet, nothing to be newer than
    if ref_item is not None and newest.completed <= ref_item.completed:
        problems.append(f"is older than {ref_item.name} "
                        f"(by {human_duration(ref_item.completed - newest.completed)})")
    return problems


async def run(spec: BackupCheck, ctx: ProbeContext) -> Outcome:
    """Find the newest backup and judge it."""
    try:
        listing = await list_backups(spec.source, ctx, request_timeout=spec.timeout)
        reference = (await list_backups(spec.newer_than, ctx, option_path="newer_than",
                                        request_timeout=spec.timeout)
                     if spec.newer_than is not None else None)
    except ProbeError as exc:  # the objective is kept beside the error
        limit = accepted_age(spec)
        kept = [] if limit is None else [Measurement(MAX_AGE.name, limit)]
        return exc.with_measurements(kept).outcome()

    ref_item = reference.latest if reference is not None else None
    measurements = _listing_measurements(spec, listing, ref_item)
    newest = listing.latest
    if newest is None:
        return Outcome.failed(f"no backups found in {describe(spec.source)}",
                              tuple(measurements))
    previous = listing.previous
    measurements += _newest_measurements(spec, newest, previous)
    age = ctx.now() - newest.completed
    problems = (_timing_problems(spec, newest, age, ref_item)
                + _content_problems(spec, newest, previous))
    summary = f"newest backup {newest.name}"
    if problems:
        return Outcome.failed(f"{summary} " + "; ".join(problems), tuple(measurements))
    fmt = f", {newest.format.name}" if newest.format else ""
    return Outcome.passed(
        f"{summary}: {human_duration(age)} old, {human_bytes(newest.size)}{fmt}",
        tuple(measurements),
    )


KIND = ProbeKind(
    name="backup",
    spec=BackupCheck,
    run=run,
    summary="Newest backup (directory, pgBackRest, S3) is fresh, non-empty, not shrunk, "
    "encrypted.",
    metrics=(COMPLETION, SIZE, PREVIOUS_SIZE, ENCRYPTED, FORMAT, COUNT, MAX_AGE, CHECKSUM_OK,
             REFERENCE, TYPE_COMPLETION),
)
