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
    BackupSource,
    DirectorySource,
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
COUNT = MetricFamily("readiness_backup_count", "Number of backups found in the source.")
MAX_AGE = MetricFamily(
    "readiness_backup_max_age_seconds", "Configured maximum age of the newest backup."
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
        default=None, gt=0, description="the newest backup must be younger (e.g. 6h)"
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


async def run(spec: BackupCheck, ctx: ProbeContext) -> Outcome:
    """Find the newest backup and judge it."""
    try:
        listing = await list_backups(spec.source, ctx, request_timeout=spec.timeout)
        reference = (await list_backups(spec.newer_than, ctx, option_path="newer_than",
                                        request_timeout=spec.timeout)
                     if spec.newer_than is not None else None)
    except ProbeError as exc:
        return Outcome.errored(exc.reason, exc.message)

    measurements = [Measurement(COUNT.name, float(listing.count))]
    measurements += [Measurement(TYPE_COMPLETION.name, when, {"type": kind})
                     for kind, when in sorted(listing.by_type.items())]
    if spec.max_age is not None:
        measurements.append(Measurement(MAX_AGE.name, spec.max_age))
    ref_item = reference.latest if reference is not None else None
    if ref_item is not None:
        measurements.append(Measurement(REFERENCE.name, ref_item.completed))

    newest = listing.latest
    if newest is None:
        return Outcome.failed(f"no backups found in {describe(spec.source)}",
                              tuple(measurements))

    measurements += [Measurement(COMPLETION.name, newest.completed),
                     Measurement(SIZE.name, float(newest.size))]
    previous = listing.previous
    if previous is not None:
        measurements.append(Measurement(PREVIOUS_SIZE.name, float(previous.size)))
    if newest.format is not None:
        measurements += [
            Measurement(ENCRYPTED.name, 1.0 if newest.format.encrypted else 0.0),
            Measurement(FORMAT.name, 1.0, {"format": newest.format.name}),
        ]
    checksummed = isinstance(spec.source, DirectorySource) and spec.source.checksum != "none"
    if checksummed:
        measurements.append(Measurement(CHECKSUM_OK.name, 1.0 if newest.checksum_ok else 0.0))

    age = ctx.now() - newest.completed
    problems: list[str] = []
    if spec.max_age is not None and age > spec.max_age:
        problems.append(f"is {human_duration(age)} old (max {human_duration(spec.max_age)})")
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
    if checksummed:
        assert isinstance(spec.source, DirectorySource)
        if newest.checksum_ok is None:
            problems.append(f"has no {spec.source.checksum} sidecar")
        elif not newest.checksum_ok:
            problems.append(f"does not match its {spec.source.checksum} sidecar")
    if spec.newer_than is not None:
        if ref_item is None:
            pass  # nothing to be newer than: nothing trained yet
        elif newest.completed <= ref_item.completed:
            problems.append(f"is older than {ref_item.name} "
                            f"(by {human_duration(ref_item.completed - newest.completed)})")

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
