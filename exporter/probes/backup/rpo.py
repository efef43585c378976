"""`rpo`: per recovery scenario, the newest restorable moment is within the RPO (10.2).

A scenario's recovery point is the newest of its sources: the newest backup of a
`backup` source, the last archived WAL segment (`pg_stat_archiver`, for point-in-time
recovery) or "now" while a synchronous standby is streaming (an RPO of 0). With
`rto_target`, the newest successful drill of the scenario gives the measured RTO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    PostgresConnectionName,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.backup import locality, wal
from exporter.probes.backup import records as rec
from exporter.probes.backup import signed_records as signed
from exporter.probes.backup.common import DRILL_DURATION, RTO_TARGET, human_duration
from exporter.probes.backup.records import DrillStore
from exporter.probes.backup.sources import BackupSource, list_backups
from exporter.transport.postgres import database

RECOVERY_POINT = MetricFamily(
    "readiness_recovery_point_timestamp_seconds",
    "Newest moment the scenario can be restored to (newest of its sources).",
    ("scenario",),
)
RPO_TARGET = MetricFamily(
    "readiness_rpo_target_seconds",
    "Recovery point objective of the scenario (from the configuration).",
    ("scenario",),
)
RPO = MetricFamily(
    "readiness_rpo_seconds",
    "Measured recovery point gap of the scenario: now minus its recovery point.",
    ("scenario",),
)
SOURCE_POINT = MetricFamily(
    "readiness_recovery_point_source_timestamp_seconds",
    "Recovery point offered by one source of the scenario.",
    ("scenario", "source"),
)


class _Point(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,40}$",
                             description="source label (default: type and position)")


class BackupPoint(_Point):
    """The newest backup of a `backup` source is a recovery point."""

    type: Literal["backup"]
    source: BackupSource


class WalArchivePoint(_Point):
    """The newest archived WAL segment (point-in-time recovery): read from the archive
    itself (`directory`), or as the server reports it (`pg_stat_archiver`)."""

    type: Literal["wal_archive"]
    directory: Path | None = Field(
        default=None, description="the WAL archive: archive_command's target directory or a "
        "pgBackRest posix repository's archive/<stanza>; the newest segment file under it "
        "(by mtime) is the recovery point. Default: pg_stat_archiver.last_archived_time of "
        "connection")


class SyncReplicationPoint(_Point):
    """While enough synchronous standbys stream, no committed data can be lost."""

    type: Literal["sync_replication"]
    min_standbys: int = Field(default=1, ge=1)


PointSource = Annotated[BackupPoint | WalArchivePoint | SyncReplicationPoint,
                        Field(discriminator="type")]


class RpoCheck(CheckSpec):
    """`kind: rpo` options."""

    kind: Literal["rpo"]
    scenario: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    rpo_target: Duration = Field(ge=0, description="maximum data loss, e.g. 6h (0 allowed)")
    sources: list[PointSource] = Field(min_length=1)
    expected_duration: Duration = Field(
        default=0.0, ge=0,
        description="how long one backup run takes: while the next backup runs, a gap up "
        "to rpo_target plus this passes (the recovery point is that of the last backup)")
    connection: PostgresConnectionName | None = Field(
        default=None, description="postgres connection (wal_archive, sync_replication)")
    off_cluster: bool = Field(
        default=False, description="the scenario loses the whole cluster: every source must "
        "live outside it (no local path, no production database, no in-cluster service)")
    cluster_hosts: list[str] = Field(
        default=[], description="off_cluster: host names inside the cluster besides "
        "*.svc/*.cluster.local/loopback, e.g. the production database's host")
    rto_target: Duration | None = Field(
        default=None, gt=0, description="also require a successful drill within this time")
    max_drill_age: Duration | None = Field(
        default=None, gt=0,
        description="the drill that measured the RTO must be younger than this (e.g. 30d)")
    keyring: Path | None = Field(
        default=None, description="drill_records: accept only records signed by a key of "
        "this attestation keyring allowed to sign for signer_role")
    signer_role: str = Field(default="DevOps Lead", min_length=1,
                             description="keyring role whose keys may sign drill records")
    drill_scenario: str | None = Field(
        default=None, description="drill scenario giving the measured RTO (default: scenario)")
    drill_records: Path | None = Field(
        default=None, description="JSON lines drill records (default: the exporter's own "
        "restore drill results in its state_dir)")

    @model_validator(mode="after")
    def _needs_connection(self) -> RpoCheck:
        needs = any(s.type == "sync_replication" or (
            isinstance(s, WalArchivePoint) and s.directory is None) for s in self.sources)
        if self.enabled and self.connection is None and needs:
                raise ValueError("sync_replication and wal_archive sources without directory need "
                             "connection")
        return self


async def _wal_point(con: asyncpg.Connection) -> tuple[float | None, str]:
    row = await con.fetchrow(
        "SELECT current_setting('archive_mode') AS mode, last_archived_time, "
        "last_failed_time FROM pg_stat_archiver")
    if row["mode"] == "off":
        return None, "archive_mode is off"
    archived = row["last_archived_time"]
    failed = row["last_failed_time"]
    note = ""
    if failed is not None and (archived is None or failed > archived):
        note = "WAL archiving is failing"
    return (archived.timestamp() if archived is not None else None), note


async def _sync_point(con: asyncpg.Connection, spec: SyncReplicationPoint,
                      now: float) -> tuple[float | None, str]:
    count = await con.fetchval(
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
        "AND sync_state IN ('sync', 'quorum')")
    if count >= spec.min_standbys:
        return now, ""
    return None, f"{count} synchronous standby(s) streaming (need {spec.min_standbys})"


async def _point(source: BackupPoint | WalArchivePoint | SyncReplicationPoint,
                 spec: RpoCheck, ctx: ProbeContext, now: float) -> tuple[float | None, str]:
    if isinstance(source, BackupPoint):
        listing = await list_backups(source.source, ctx)
        latest = listing.latest
        return (latest.completed, "") if latest is not None else (None, "no backups")
    if isinstance(source, WalArchivePoint) and source.directory is not None:
        return await ctx.run_blocking(wal.newest_segment, source.directory)
    assert spec.connection is not None
    client = await database(ctx, spec.connection)  # opening is classified too (connect...)
    if isinstance(source, WalArchivePoint):
        return await client.run(_wal_point)
    return await client.run(lambda con: _sync_point(con, source, now))


async def _measured_rto(spec: RpoCheck, ctx: ProbeContext) -> rec.DrillRecord | None:
    scenario = spec.drill_scenario or spec.scenario
    if spec.drill_records is not None:
        found, _bad, _unsigned = await signed.read_file_records(
            ctx, spec.drill_records, scenario, spec.keyring, spec.signer_role,
            f"checks (id {spec.id}).keyring")
    else:
        found = await ctx.run_blocking(DrillStore(ctx.state_dir).read, scenario)
    return rec.newest(found, success=True)


def _source_label(source: BackupPoint | WalArchivePoint | SyncReplicationPoint,
                  index: int) -> str:
    return source.name or f"{source.type}{index}"


def in_cluster(spec: RpoCheck) -> list[str]:
    """off_cluster: why each source would be lost with the cluster (empty: all survive)."""
    reasons = []
    for index, source in enumerate(spec.sources, 1):
        label = _source_label(source, index)
        if isinstance(source, BackupPoint):
            why = locality.backup_reason(source.source, spec.cluster_hosts)
        elif isinstance(source, WalArchivePoint) and source.directory is not None:
            why = f"{source.directory} is a local path on the node"
        else:
            why = "it reads the production database, which is lost with the cluster"
        if why is not None:
            reasons.append(f"source {label}: {why}")
    return reasons


async def run(spec: RpoCheck, ctx: ProbeContext) -> Outcome:
    """Compute the recovery point of the scenario and compare the gap with the RPO."""
    labels = {"scenario": spec.scenario}
    measurements = [Measurement(RPO_TARGET.name, spec.rpo_target, labels)]
    if spec.off_cluster and (reasons := in_cluster(spec)):
        return Outcome.errored(Reason.CONFIG, f"{spec.scenario}: off_cluster needs a source "
                               "outside the cluster (e.g. s3 on another site); "
                               + "; ".join(reasons), tuple(measurements))
    points: list[float] = []
    notes: list[str] = []
    errors: list[ProbeError] = []
    now = ctx.now()
    for index, source in enumerate(spec.sources, 1):
        label = _source_label(source, index)
        try:
            point, note = await _point(source, spec, ctx, now)
        except ProbeError as exc:
            errors.append(exc)
            notes.append(f"{label}: {exc.message}")
            continue
        if note:
            notes.append(f"{label}: {note}")
        if point is not None:
            points.append(point)
            measurements.append(Measurement(SOURCE_POINT.name, point,
                                            {**labels, "source": label}))
    if not points and errors:
        return Outcome.errored(errors[0].reason, "; ".join(notes), tuple(measurements))

    problems: list[str] = []
    if points:
        point = max(points)
        gap = max(0.0, now - point)
        measurements += [Measurement(RECOVERY_POINT.name, point, labels),
                         Measurement(RPO.name, gap, labels)]
        allowance = (f" + {human_duration(spec.expected_duration)} expected backup duration"
                     if spec.expected_duration else "")
        if gap > spec.rpo_target + spec.expected_duration:
            problems.append(f"recovery point is {human_duration(gap)} old (RPO "
                            f"{human_duration(spec.rpo_target)}{allowance})")
        summary = f"recovery point {human_duration(gap)} old (RPO " \
                  f"{human_duration(spec.rpo_target)})"
    else:
        problems.append("no recovery point")
        summary = ""

    if spec.rto_target is not None:
        measurements.append(Measurement(RTO_TARGET.name, spec.rto_target, labels))
        try:
            drill = await _measured_rto(spec, ctx)
        except ProbeError as exc:
            return Outcome.errored(exc.reason, exc.message, tuple(measurements))
        drill_age = now - drill.finished if drill is not None else 0.0
        if drill is None:
            problems.append("no successful drill measured the RTO")
        elif spec.max_drill_age is not None and drill_age > spec.max_drill_age:
            measurements.append(Measurement(DRILL_DURATION.name, drill.duration, labels))
            problems.append(f"the drill that measured the RTO is {human_duration(drill_age)} "
                            f"old (max_drill_age {human_duration(spec.max_drill_age)})")
        else:
            measurements.append(Measurement(DRILL_DURATION.name, drill.duration, labels))
            if drill.duration > spec.rto_target:
                problems.append(f"measured RTO {human_duration(drill.duration)} exceeds "
                                f"{human_duration(spec.rto_target)}")
            else:
                summary += f", measured RTO {human_duration(drill.duration)} (target " \
                           f"{human_duration(spec.rto_target)})"

    detail = f" [{'; '.join(notes)}]" if notes else ""
    if problems:
        return Outcome.failed(f"{spec.scenario}: " + "; ".join(problems) + detail,
                              tuple(measurements))
    return Outcome.passed(f"{spec.scenario}: {summary}{detail}", tuple(measurements))


KIND = ProbeKind(
    name="rpo",
    spec=RpoCheck,
    run=run,
    summary="Recovery point of a scenario (backups, WAL archive, synchronous replication) "
    "within its RPO; optionally the measured RTO within its target.",
    metrics=(RECOVERY_POINT, RPO_TARGET, RPO, SOURCE_POINT, RTO_TARGET, DRILL_DURATION),
)
