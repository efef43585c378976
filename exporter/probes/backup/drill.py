"""`restore_drill`: a restore (or failover) was proven recently and within the RTO.

Record mode reads drill results written by other tooling (JSON lines or a PostgreSQL
table). Run mode runs a PostgreSQL restore drill itself when one is due: newest backup
of a `directory` source -> (age decrypt, decompress) -> scratch database on the drill server ->
verification -> drop; the result is appended to `<state_dir>/restore-drills.jsonl`.
The drill runs in the background so a check run never waits for it; each check run
reports the stored results and the phase of a running drill.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncpg
from pydantic import Field, model_validator

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
    SecretReference,
)
from exporter.probes.backup import encryption, lease, restore
from exporter.probes.backup import records as rec
from exporter.probes.backup import signed_records as signed
from exporter.probes.backup.common import DRILL_DURATION, RTO_TARGET, human_duration, slug
from exporter.probes.backup.lease import DrillLease
from exporter.probes.backup.records import DrillRecord, DrillStore
from exporter.probes.backup.restore import PHASES, DrillFailure, Verification
from exporter.probes.backup.sources import BackupSource, DirectorySource, list_backups
from exporter.transport.postgres import PgClient, server_identity
from exporter.transport.postgres import database as pg_database

log = logging.getLogger("readiness.backup.drill")

IDENTITY_DIR = "restore-drills-tmp"

LAST_SUCCESS = MetricFamily(
    "readiness_restore_drill_last_success_timestamp_seconds",
    "When the newest successful drill of the scenario finished.",
    ("scenario",),
)
LAST_RUN = MetricFamily(
    "readiness_restore_drill_last_run_timestamp_seconds",
    "When the newest drill of the scenario finished, successful or not.",
    ("scenario",),
)
LAST_RESULT = MetricFamily(
    "readiness_restore_drill_last_result_success",
    "1 when the newest drill of the scenario succeeded, 0 when it failed.",
    ("scenario",),
)
MAX_AGE = MetricFamily(
    "readiness_restore_drill_max_age_seconds",
    "Configured maximum age of the newest successful drill.",
    ("scenario",),
)
PHASE = MetricFamily(
    "readiness_restore_drill_phase",
    "Phase of the exporter's own drill (run mode): 1 for the current phase, 0 otherwise.",
    ("scenario", "phase"),
)


class RestoreDrillCheck(CheckSpec):
    """`kind: restore_drill` options."""

    kind: Literal["restore_drill"]
    mode: Literal["record", "run"] = Field(
        default="record", description="read results of other tooling, or run the drill")
    scenario: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                          description="scenario name (a metric label)")
    max_age: Duration = Field(default=30 * 86400.0, gt=0,
                              description="the newest successful drill must be younger")
    rto_target: Duration | None = Field(
        default=None, gt=0, description="the newest successful drill must not take longer")
    fail_on_last_failure: bool = Field(
        default=True, description="fail when the newest drill failed, even if an older "
        "one within max_age succeeded")
    # record mode
    records_file: Path | None = Field(default=None, description="JSON lines file of records")
    records_table: str | None = Field(
        default=None, description="PostgreSQL table (scenario, started, finished, success)")
    records_connection: PostgresConnectionName | None = Field(
        default=None, description="postgres connection holding records_table")
    keyring: Path | None = Field(
        default=None, description="records_file: accept only records signed by a key of "
        "this attestation keyring allowed to sign for signer_role")
    signer_role: str = Field(default="DevOps Lead", min_length=1,
                             description="keyring role whose keys may sign drill records")
    # run mode
    source: BackupSource | None = Field(
        default=None, description="backup source whose newest backup is restored (directory)")
    connection: PostgresConnectionName | None = Field(
        default=None, description="postgres connection to the drill server (maintenance db)")
    production_connections: list[PostgresConnectionName] = Field(
        default=[], description="connections the drill must never target; a drill server "
        "that is the same cluster as one of them is refused")
    every: Duration = Field(default=86400.0, gt=0, description="start a drill this often")
    drill_timeout: Duration = Field(default=4 * 3600.0, gt=0,
                                    description="a drill running longer is stopped and failed")
    scratch_prefix: str = Field(
        default="readiness_drill_", pattern=r"^[a-z_][a-z0-9_]{2,30}$",
        description="scratch databases are named <prefix><scenario>_<time>")
    age_identity: SecretReference | None = Field(
        default=None, description="age identity for encrypted backups ({file: path} is "
        "passed to age as is; an env reference is written to a 0600 temp file)")
    jobs: int = Field(default=1, ge=1, le=64, description="pg_restore -j for unencrypted "
                      "custom/directory dumps")
    bin_dir: Path | None = Field(default=None, description="where pg_restore/psql are")
    verify: Verification = Verification()
    lease: DrillLease | None = Field(
        default=None, description="run the drill only on the replica holding this "
        "Kubernetes Lease (several replicas); the others report skipped")

    @model_validator(mode="after")
    def _mode_fields(self) -> RestoreDrillCheck:
        if self.mode == "record":
            if (self.records_file is None) == (self.records_table is None):
                raise ValueError("record mode needs exactly one of records_file or "
                                 "records_table")
            if self.records_table is not None:
                if self.records_connection is None:
                    raise ValueError("records_table needs records_connection")
                rec.quote_table(self.records_table)
            if self.lease is not None:
                raise ValueError("lease applies to run mode only")
        elif self.enabled:
            if self.source is None or self.connection is None:
                raise ValueError("run mode needs source and connection")
            if not isinstance(self.source, DirectorySource):
                raise ValueError("run mode restores from a directory source")
            if self.connection in self.production_connections:
                raise ValueError(f"connection {self.connection!r} is listed in "
                                 "production_connections: a drill never targets production")
        return self


# --------------------------------------------------------------------------- running drills


@dataclass
class _Running:
    task: asyncio.Task[DrillRecord] | None = None
    phase: str = "prepare"
    database: str = ""


@dataclass
class _State:
    running: dict[tuple[str, str], _Running] = field(default_factory=dict)
    recovered: set[tuple[str, str]] = field(default_factory=set)


_STATE = _State()


def running_drill(state_dir: Path, scenario: str) -> asyncio.Task[DrillRecord] | None:
    """The drill task running in this process for `scenario`, if any (tests await it)."""
    entry = _STATE.running.get((str(state_dir), scenario))
    return entry.task if entry is not None else None


def _busy(entry: _Running | None) -> bool:
    return entry is not None and entry.task is not None and not entry.task.done()


async def refuse_production(spec: RestoreDrillCheck, ctx: ProbeContext) -> None:
    """Raise `ProbeError(config)` when the drill server is a production cluster.

    Same cluster = same system identifier, or same server address and port.
    """
    assert spec.connection is not None
    if spec.connection in spec.production_connections:
        raise ProbeError(Reason.CONFIG, f"refusing to drill on production connection "
                         f"{spec.connection}")
    drill = await server_identity(await pg_database(ctx, spec.connection))
    for name in spec.production_connections:
        if drill.same_cluster(await server_identity(await pg_database(ctx, name))):
            raise ProbeError(Reason.CONFIG, f"refusing to drill: connection {spec.connection} "
                             f"is the same cluster as production connection {name}")


async def _set_phase(spec: RestoreDrillCheck, ctx: ProbeContext, store: DrillStore,
                     entry: _Running, phase: str, started: float) -> None:
    entry.phase = phase
    log.info("restore drill phase", extra={"scenario": spec.scenario, "phase": phase,
                                           "database": entry.database})
    await ctx.run_blocking(store.write_marker, spec.scenario, {
        "phase": phase, "database": entry.database, "started": started,
        "updated": ctx.now(), "pid": os.getpid()})


async def _restore(spec: RestoreDrillCheck, ctx: ProbeContext, store: DrillStore,
                   entry: _Running, target: PgClient, started: float) -> str:
    """Restore and verify the newest backup; return its name."""
    assert isinstance(spec.source, DirectorySource)
    listing = await list_backups(spec.source, ctx)
    backup = listing.latest
    if backup is None or backup.format is None:
        raise DrillFailure("no backup to restore")
    path = Path(backup.location)
    env = target.libpq_env(entry.database, "readiness-drill")
    await target.run(lambda con: con.execute(f'CREATE DATABASE "{entry.database}"'))
    async with contextlib.AsyncExitStack() as stack:
        stages: list[list[str]] = []
        fmt = backup.format
        for _layer in range(4):  # e.g. age(gzip(plain SQL))
            if fmt.encrypted:
                if fmt.name not in {"age", "age-armored"}:
                    raise DrillFailure(f"cannot decrypt a {fmt.name} backup (age only)")
                if spec.age_identity is None:
                    raise DrillFailure("backup is encrypted and no age_identity is configured")
                await _set_phase(spec, ctx, store, entry, "decrypt", started)
                identity = await stack.enter_async_context(restore.identity_file(
                    spec.age_identity, ctx.state_dir / IDENTITY_DIR, slug(spec.scenario)))
                stage = [restore.find_tool("age", None), "-d", "-i", str(identity)]
            elif fmt.name in restore.DECOMPRESSORS:
                stage = [restore.find_tool(restore.DECOMPRESSORS[fmt.name], None), "-dc"]
            else:
                break
            stages.append(stage + ([str(path)] if not stages else []))
            fmt = encryption.detect(await restore.Pipeline(stages, env).peek())
        loader = restore.loader_argv(fmt, entry.database, None if stages else path,
                                     spec.jobs, spec.bin_dir)
        await _set_phase(spec, ctx, store, entry, "restore", started)
        await restore.Pipeline([*stages, loader], env).run()
    await _set_phase(spec, ctx, store, entry, "verify", started)
    conn = await target.connect(entry.database)
    try:
        await restore.verify(conn, spec.verify)
    finally:
        await conn.close()
    return backup.name


async def execute_drill(spec: RestoreDrillCheck, ctx: ProbeContext,
                        entry: _Running | None = None) -> DrillRecord:
    """Run one drill now and record its result (also used by the bench)."""
    store = DrillStore(ctx.state_dir)
    started = ctx.now()
    database = f"{spec.scratch_prefix}{slug(spec.scenario)}_{int(started * 1000)}"
    entry = entry or _Running()
    entry.database = database
    success, detail = False, ""
    client: PgClient | None = None
    try:
        await _set_phase(spec, ctx, store, entry, "prepare", started)
        client = await pg_database(ctx, spec.connection or "")
        async with asyncio.timeout(spec.drill_timeout):
            name = await _restore(spec, ctx, store, entry, client, started)
        success, detail = True, f"restored {name} and verified"
    except DrillFailure as exc:
        detail = exc.message
    except ProbeError as exc:  # the drill server: refused, auth, TLS... (secret-free)
        detail = f"{exc.reason}: {exc.message}"
    except TimeoutError:
        detail = f"timed out after {human_duration(spec.drill_timeout)}"
    except asyncio.CancelledError:
        detail = "cancelled"
        raise
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        detail = f"{type(exc).__name__}"
    except Exception as exc:
        detail = f"internal error ({type(exc).__name__})"
        log.exception("restore drill failed unexpectedly", extra={"scenario": spec.scenario})
    finally:
        finished = ctx.now()
        log.info("restore drill finished", extra={"scenario": spec.scenario,
                                                  "success": success, "detail": detail})
        entry.phase = "cleanup"
        try:
            if client is not None:
                await client.run(lambda con: restore.drop_database(con, database))
        except ProbeError as exc:
            log.warning("dropping scratch database failed", extra={
                "scenario": spec.scenario, "database": database, "error": type(exc).__name__})
        record = DrillRecord(spec.scenario, started, finished, success, detail)
        await ctx.run_blocking(store.append, record)
        await ctx.run_blocking(store.clear_marker, spec.scenario)
        entry.phase = "idle"
    return record


def _remove_identity_files(folder: Path, tag: str) -> None:
    """Delete temporary age identities a killed drill of `tag` may have left behind."""
    for leftover in folder.glob(f"age-identity-{tag}-*"):
        leftover.unlink(missing_ok=True)


async def _drop(con: asyncpg.Connection, name: str) -> None:
    await restore.drop_database(con, name)


async def recover(spec: RestoreDrillCheck, ctx: ProbeContext, store: DrillStore) -> None:
    """After a restart: record an interrupted drill and drop scratch databases left over."""
    marker = await ctx.run_blocking(store.read_marker, spec.scenario)
    if marker is not None:
        started = float(marker.get("started") or 0.0)
        finished = float(marker.get("updated") or started)
        phase = str(marker.get("phase", "unknown"))
        await ctx.run_blocking(store.append, DrillRecord(
            spec.scenario, started, finished, False,
            f"interrupted during {phase} (exporter stopped)"))
        log.warning("restore drill was interrupted", extra={"scenario": spec.scenario,
                                                            "phase": phase})
        await ctx.run_blocking(store.clear_marker, spec.scenario)
    await ctx.run_blocking(_remove_identity_files, ctx.state_dir / IDENTITY_DIR,
                           slug(spec.scenario))
    client = await pg_database(ctx, spec.connection or "")
    prefix = f"{spec.scratch_prefix}{slug(spec.scenario)}_"
    for name in await client.run(lambda con: restore.stale_databases(con, prefix)):
        log.warning("dropping stale scratch database", extra={"database": name})
        await client.run(functools.partial(_drop, name=name))


async def _start_if_due(spec: RestoreDrillCheck, ctx: ProbeContext,
                        found: list[DrillRecord]) -> None:
    key = (str(ctx.state_dir), spec.scenario)
    if _busy(_STATE.running.get(key)):
        return
    last = max((r.started for r in found), default=None)
    if last is not None and ctx.now() - last < spec.every:
        return
    await refuse_production(spec, ctx)
    entry = _Running()
    entry.task = asyncio.create_task(execute_drill(spec, ctx, entry),
                                     name=f"restore-drill-{spec.scenario}")
    entry.task.add_done_callback(_drill_done)
    _STATE.running[key] = entry


def _cancel(key: tuple[str, str]) -> None:
    entry = _STATE.running.get(key)
    if entry is not None and entry.task is not None and _busy(entry):
        log.warning("cancelling restore drill: lease lost", extra={"scenario": key[1]})
        entry.task.cancel()


async def _lease_gate(spec: RestoreDrillCheck, ctx: ProbeContext,
                      key: tuple[str, str]) -> Outcome | None:
    """With `lease:`: None on the holder, else the outcome this replica reports."""
    assert spec.lease is not None
    elector = await lease.elector(spec.lease, spec.scenario, ctx, lambda: _cancel(key))
    if elector.leading:
        return None
    problem = elector.problem()
    if problem is not None:
        raise problem
    holder = elector.holder
    if holder and holder != elector.identity:
        return Outcome.skipped(f"drill runs on {holder} (lease {elector.where})")
    return Outcome.skipped(f"waiting for lease {elector.where}")


def _drill_done(task: asyncio.Task[DrillRecord]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("restore drill crashed", extra={"error": type(task.exception()).__name__})


# --------------------------------------------------------------------------- reporting


def evaluate(spec: RestoreDrillCheck, found: list[DrillRecord], now: float,
             phase: str | None, extra: str = "") -> Outcome:
    """Judge the records of one scenario."""
    labels = {"scenario": spec.scenario}
    measurements = [Measurement(MAX_AGE.name, spec.max_age, labels)]
    if spec.rto_target is not None:
        measurements.append(Measurement(RTO_TARGET.name, spec.rto_target, labels))
    if phase is not None:
        measurements += [Measurement(PHASE.name, 1.0 if p == phase else 0.0,
                                     {**labels, "phase": p}) for p in PHASES]
    latest = rec.newest(found)
    success = rec.newest(found, success=True)
    running = f" (drill running: {phase})" if phase not in (None, "idle") else ""
    if latest is not None:
        measurements += [Measurement(LAST_RUN.name, latest.finished, labels),
                         Measurement(LAST_RESULT.name, 1.0 if latest.success else 0.0, labels)]
    if success is None:
        why = f"; newest drill failed: {latest.detail}" if latest and latest.detail else ""
        return Outcome.failed(f"no successful {spec.scenario} drill recorded{why}{extra}"
                              f"{running}", tuple(measurements))
    measurements += [Measurement(LAST_SUCCESS.name, success.finished, labels),
                     Measurement(DRILL_DURATION.name, success.duration, labels)]
    age = now - success.finished
    problems = []
    if age > spec.max_age:
        problems.append(f"last successful {spec.scenario} drill is {human_duration(age)} old "
                        f"(max {human_duration(spec.max_age)})")
    if spec.rto_target is not None and success.duration > spec.rto_target:
        problems.append(f"drill took {human_duration(success.duration)} (RTO "
                        f"{human_duration(spec.rto_target)})")
    if spec.fail_on_last_failure and latest is not None and not latest.success:
        problems.append(f"newest {spec.scenario} drill failed: {latest.detail or 'no detail'}")
    if problems:
        return Outcome.failed("; ".join(problems) + extra + running, tuple(measurements))
    return Outcome.passed(
        f"{spec.scenario} drill succeeded {human_duration(age)} ago in "
        f"{human_duration(success.duration)}{extra}{running}", tuple(measurements))


async def _read_records(spec: RestoreDrillCheck, ctx: ProbeContext) -> tuple[list[DrillRecord],
                                                                              str]:
    if spec.records_file is not None:
        missing = f" ({spec.records_file} does not exist)"
        if spec.keyring is not None and not await ctx.run_blocking(spec.records_file.exists):
            return [], missing  # before the keyring is read
        found, bad, unsigned = await signed.read_file_records(
            ctx, spec.records_file, spec.scenario, spec.keyring, spec.signer_role,
            f"checks (id {spec.id}).keyring")
        if not found and not await ctx.run_blocking(spec.records_file.exists):
            return [], missing
        notes = [f"{bad} unreadable lines"] if bad else []
        if unsigned:
            notes.append(f"{unsigned} unsigned or unverified {spec.scenario} records ignored")
        return found, f" ({'; '.join(notes)})" if notes else ""
    assert spec.records_table is not None and spec.records_connection is not None
    table = spec.records_table

    async def read(con: asyncpg.Connection) -> list[DrillRecord]:
        try:
            return await rec.read_table(con, table, spec.scenario)
        except asyncpg.UndefinedTableError:
            raise ProbeError(Reason.CONFIG, f"table {table} does not exist") from None
        except asyncpg.UndefinedColumnError:
            raise ProbeError(Reason.CONFIG, f"table {table} lacks scenario/started/"
                             "finished/success") from None
        except asyncpg.InsufficientPrivilegeError:
            raise ProbeError(Reason.AUTH, f"no permission to read {table}") from None

    client = await pg_database(ctx, spec.records_connection)
    return await client.run(read), ""


async def run(spec: RestoreDrillCheck, ctx: ProbeContext) -> Outcome:
    """Report the newest drills of the scenario; in run mode start a drill when due."""
    try:
        if spec.mode == "record":
            found, extra = await _read_records(spec, ctx)
            return evaluate(spec, found, ctx.now(), None, extra)
        store = DrillStore(ctx.state_dir)
        key = (str(ctx.state_dir), spec.scenario)
        if spec.lease is not None and (gated := await _lease_gate(spec, ctx, key)):
            return gated
        if not _busy(_STATE.running.get(key)) and key not in _STATE.recovered:
            await recover(spec, ctx, store)
            _STATE.recovered.add(key)
        found = await ctx.run_blocking(store.read, spec.scenario)
        await _start_if_due(spec, ctx, found)
        entry = _STATE.running.get(key)
        phase = entry.phase if entry is not None and _busy(entry) else "idle"
        return evaluate(spec, found, ctx.now(), phase)
    except ProbeError as exc:  # the objectives are kept beside the error (issue 13)
        labels = {"scenario": spec.scenario}
        kept = [Measurement(MAX_AGE.name, spec.max_age, labels)]
        if spec.rto_target is not None:
            kept.append(Measurement(RTO_TARGET.name, spec.rto_target, labels))
        return exc.with_measurements(kept).outcome()


async def cancel_all() -> None:
    """Cancel every running drill of this process, wait for their cleanup, and release
    drill leases."""
    tasks = [e.task for e in _STATE.running.values() if e.task is not None and _busy(e)]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await lease.stop_all()


KIND = ProbeKind(
    name="restore_drill",
    spec=RestoreDrillCheck,
    run=run,
    summary="A restore / failover drill succeeded within max_age and the RTO (reads records "
    "or runs a PostgreSQL restore drill itself).",
    metrics=(LAST_SUCCESS, LAST_RUN, LAST_RESULT, DRILL_DURATION, RTO_TARGET, MAX_AGE, PHASE),
    shutdown=cancel_all,
)
