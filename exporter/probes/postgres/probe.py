"""`postgres`: server facts against objectives (3.1.1, 3.1.2, 3.1.3, 3.1.5, 2.3.1, 9.2).

One check evaluates the sections it configures: minimum version, settings baseline
(unit-aware), connections against `max_connections`, replication (primary or
replica), WAL archiving, and the share of client connections using TLS. Every query
reads catalog views a `pg_monitor` member may read; nothing is written.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Findings,
    Measurement,
    MetricFamily,
    Outcome,
    PostgresConnectionName,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.postgres.errors import with_connection
from exporter.probes.postgres.units import Expectation, compare, human


class ReplicationOptions(BaseModel):
    """`replication:` of a postgres check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["auto", "primary", "replica"] = Field(
        default="auto", description="expected role; auto: whatever pg_is_in_recovery() says"
    )
    min_replicas: int = Field(default=1, ge=0, description="streaming replicas (primary)")
    max_replay_lag: Duration = Field(default=60.0, gt=0, description="per replica / on replica")


class ArchivingOptions(BaseModel):
    """`archiving:` of a postgres check (PITR readiness)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_ready_files: int | None = Field(
        default=None, ge=0, description="fail above this many .ready WAL files (if readable)"
    )
    max_archive_age: Duration | None = Field(
        default=None, gt=0, description="fail when the last archived WAL is older"
    )


class TlsOptions(BaseModel):
    """`tls:` of a postgres check (pg_stat_ssl)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_share: float = Field(default=1.0, ge=0, le=1,
                             description="share of TCP client connections using TLS")


class PostgresCheck(CheckSpec):
    """`kind: postgres` options; configure one or more sections."""

    kind: Literal["postgres"]
    connection: PostgresConnectionName = Field(description="name of a `kind: postgres` "
                                               "connection")
    min_version_num: int | None = Field(
        default=None, gt=0, description="server_version_num minimum, e.g. 150000"
    )
    settings: dict[str, str | int | float | bool] = Field(
        default={}, description="baseline: name -> '4GB' | '>= 200' | 'on' (unit-aware)"
    )
    max_connections_used: float | None = Field(
        default=None, gt=0, le=1, description="connections in use / max_connections below"
    )
    replication: ReplicationOptions | None = None
    archiving: ArchivingOptions | None = None
    tls: TlsOptions | None = None

    @field_validator("settings")
    @classmethod
    def _settings_parse(
        cls, value: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        for name, raw in value.items():
            try:
                Expectation.parse(raw)
            except ValueError as exc:
                raise ValueError(f"settings.{name}: {exc}") from None
        return value


def _fam(name: str, help_text: str, labels: tuple[str, ...] = (), kind: str = "gauge"
         ) -> MetricFamily:
    return MetricFamily(f"readiness_postgres_{name}", help_text, labels, kind)


VERSION = _fam("server_version_num", "server_version_num of the server (e.g. 150004).")
VERSION_MIN = _fam("server_version_num_minimum", "Configured minimum server_version_num.")
SETTING = _fam("setting_value", "Setting in base units (bytes, seconds or plain number).",
               ("setting", "unit"))
SETTING_EXPECTED = _fam("setting_expected_value", "Baseline value in base units.",
                        ("setting", "unit"))
SETTING_OK = _fam("setting_ok", "1 when the setting meets its baseline.", ("setting",))
CONN_USED = _fam("connections_in_use", "Backends connected to the server (pg_stat_activity).")
CONN_MAX = _fam("connections_max", "max_connections.")
CONN_RATIO = _fam("connections_used_ratio", "Connections in use / max_connections.")
CONN_TARGET = _fam("connections_used_ratio_target", "Configured maximum of the used ratio.")
IN_RECOVERY = _fam("in_recovery", "1 on a replica (pg_is_in_recovery), 0 on a primary.")
REPLICAS = _fam("replicas_streaming", "Streaming replicas seen by the primary.")
REPLICAS_MIN = _fam("replicas_min", "Configured minimum of streaming replicas.")
REPLICA_LAG = _fam("replica_replay_lag_seconds", "Replay lag of each replica (primary view).",
                   ("application_name",))
LAG_TARGET = _fam("replay_lag_target_seconds", "Configured maximum replay lag.")
WAL_RECEIVER = _fam("wal_receiver_streaming", "1 when this replica's WAL receiver streams.")
REPLAY_TS = _fam("last_replay_timestamp_seconds", "Commit time of the last replayed "
                 "transaction (replica).")
REPLAY_LAG = _fam("replay_lag_seconds", "This replica's lag: 0 when all received WAL is "
                  "replayed, else time since the last replayed commit.")
ARCHIVE_MODE = _fam("archive_mode_info", "archive_mode (value 1).", ("mode",))
WAL_LEVEL = _fam("wal_level_info", "wal_level (value 1).", ("level",))
ARCHIVED_TS = _fam("archive_last_archived_timestamp_seconds", "Time the last WAL was archived.")
FAILED_TS = _fam("archive_last_failed_timestamp_seconds", "Time of the last failed archiving.")
ARCHIVED = _fam("archive_archived_total", "WAL files archived (pg_stat_archiver).",
                kind="counter")
FAILED = _fam("archive_failed_total", "Failed archiving attempts (pg_stat_archiver).",
              kind="counter")
READY = _fam("archive_ready_files", "WAL segments waiting to be archived (.ready files).")
TLS_CONNS = _fam("client_connections", "TCP client connections by TLS use (pg_stat_ssl).",
                 ("ssl",))
TLS_SHARE = _fam("tls_connections_share", "Share of TCP client connections using TLS.")
TLS_TARGET = _fam("tls_connections_share_target", "Configured minimum TLS share.")

METRICS = (VERSION, VERSION_MIN, SETTING, SETTING_EXPECTED, SETTING_OK, CONN_USED, CONN_MAX,
           CONN_RATIO, CONN_TARGET, IN_RECOVERY, REPLICAS, REPLICAS_MIN, REPLICA_LAG,
           LAG_TARGET, WAL_RECEIVER, REPLAY_TS, REPLAY_LAG, ARCHIVE_MODE, WAL_LEVEL,
           ARCHIVED_TS, FAILED_TS, ARCHIVED, FAILED, READY, TLS_CONNS, TLS_SHARE, TLS_TARGET)


async def _version(con: asyncpg.Connection, spec: PostgresCheck, out: Findings) -> None:
    num = int(await con.fetchval("SELECT current_setting('server_version_num')::int"))
    out.measure(VERSION, num)
    assert spec.min_version_num is not None
    text = f"version {num // 10000}.{num % 10000}"
    if num < spec.min_version_num:
        out.problems.append(f"{text} below {spec.min_version_num}")
    else:
        out.notes.append(text)


async def _settings(con: asyncpg.Connection, spec: PostgresCheck, out: Findings) -> None:
    rows = await con.fetch(
        "SELECT name, setting, vartype, unit FROM pg_settings WHERE name = ANY($1::text[])",
        list(spec.settings),
    )
    found = {row["name"]: row for row in rows}
    wrong: list[str] = []
    for name, raw in spec.settings.items():
        row = found.get(name)
        if row is None:
            raise ProbeError(Reason.CONFIG, f"unknown setting {name}")
        expect = Expectation.parse(raw)
        try:
            result = compare(expect, row["setting"], row["vartype"], row["unit"])
        except ValueError as exc:
            raise ProbeError(Reason.CONFIG, f"setting {name}: {exc}") from None
        if result.actual is not None and result.expected is not None:
            out.measure(SETTING, result.actual, setting=name, unit=result.unit)
            out.measure(SETTING_EXPECTED, result.expected, setting=name, unit=result.unit)
        out.measure(SETTING_OK, 1 if result.ok else 0, setting=name)
        if not result.ok:
            want = (human(result.expected, result.unit) if result.expected is not None
                    else expect.text)
            op = "" if expect.op == "==" else f"{expect.op} "
            wrong.append(f"{name}={result.shown} (want {op}{want})")
    if wrong:
        shown = ", ".join(wrong[:4]) + (f" and {len(wrong) - 4} more" if len(wrong) > 4 else "")
        out.problems.append(f"settings off baseline: {shown}")
    else:
        out.notes.append(f"{len(spec.settings)} settings match")


async def _connections(con: asyncpg.Connection, spec: PostgresCheck, out: Findings) -> None:
    row = await con.fetchrow(
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        " AS used, current_setting('max_connections')::int AS max"
    )
    used, maximum = int(row["used"]), int(row["max"])
    ratio = used / maximum if maximum else 1.0
    assert spec.max_connections_used is not None
    out.measure(CONN_USED, used)
    out.measure(CONN_MAX, maximum)
    out.measure(CONN_RATIO, ratio)
    text = f"{used}/{maximum} connections ({ratio:.0%})"
    if ratio >= spec.max_connections_used:
        out.problems.append(f"{text} at or above {spec.max_connections_used:.0%}")
    else:
        out.notes.append(text)


async def _replication(con: asyncpg.Connection, opts: ReplicationOptions, out: Findings
                       ) -> None:
    in_recovery = bool(await con.fetchval("SELECT pg_is_in_recovery()"))
    out.measure(IN_RECOVERY, 1 if in_recovery else 0)
    role = "replica" if in_recovery else "primary"
    if opts.role != "auto" and opts.role != role:
        out.problems.append(f"server is a {role}, expected {opts.role}")
        return
    if in_recovery:
        await _replica(con, opts, out)
    else:
        await _primary(con, opts, out)


async def _primary(con: asyncpg.Connection, opts: ReplicationOptions, out: Findings) -> None:
    rows = await con.fetch(
        "SELECT application_name, state,"
        " coalesce(extract(epoch FROM replay_lag),"
        "  CASE WHEN replay_lsn = pg_current_wal_lsn() THEN 0 END)::float8 AS lag"
        " FROM pg_stat_replication ORDER BY application_name"
    )
    streaming = [row for row in rows if row["state"] == "streaming"]
    out.measure(REPLICAS, len(streaming))
    lagging: list[str] = []
    for row in streaming:
        if row["lag"] is None:
            continue
        name = row["application_name"] or "unnamed"
        out.measure(REPLICA_LAG, row["lag"], application_name=name)
        if row["lag"] > opts.max_replay_lag:
            lagging.append(f"{name} {row['lag']:.0f}s")
    if len(streaming) < opts.min_replicas:
        out.problems.append(f"{len(streaming)} streaming replicas, need {opts.min_replicas}")
    if lagging:
        out.problems.append(f"replay lag above {opts.max_replay_lag:g}s: {', '.join(lagging[:3])}")
    if len(streaming) >= opts.min_replicas and not lagging:
        out.notes.append(f"{len(streaming)} streaming replicas")


async def _replica(con: asyncpg.Connection, opts: ReplicationOptions, out: Findings) -> None:
    row = await con.fetchrow(
        "SELECT (SELECT status FROM pg_stat_wal_receiver) AS status,"
        " extract(epoch FROM pg_last_xact_replay_timestamp())::float8 AS replayed_at,"
        " pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS caught_up,"
        " extract(epoch FROM now())::float8 AS now"
    )
    streaming = row["status"] == "streaming"
    out.measure(WAL_RECEIVER, 1 if streaming else 0)
    lag: float | None = None
    if row["replayed_at"] is not None:
        out.measure(REPLAY_TS, row["replayed_at"])
    if row["caught_up"]:
        lag = 0.0
    elif row["replayed_at"] is not None:
        lag = max(0.0, row["now"] - row["replayed_at"])
    if lag is not None:
        out.measure(REPLAY_LAG, lag)
    if not streaming:
        out.problems.append(f"replica WAL receiver not streaming ({row['status'] or 'absent'})")
    elif lag is not None and lag > opts.max_replay_lag:
        out.problems.append(f"replica replay lag {lag:.0f}s above {opts.max_replay_lag:g}s")
    else:
        out.notes.append("replica streaming" + (f", lag {lag:.0f}s" if lag is not None else ""))


async def _archiving(con: asyncpg.Connection, opts: ArchivingOptions, now: float,
                     out: Findings) -> None:
    row = await con.fetchrow(
        "SELECT current_setting('archive_mode') AS mode, current_setting('wal_level') AS level,"
        " archived_count, failed_count,"
        " extract(epoch FROM last_archived_time)::float8 AS archived_at,"
        " extract(epoch FROM last_failed_time)::float8 AS failed_at"
        " FROM pg_stat_archiver"
    )
    mode, level = row["mode"], row["level"]
    out.measure(ARCHIVE_MODE, 1, mode=mode)
    out.measure(WAL_LEVEL, 1, level=level)
    out.measure(ARCHIVED, row["archived_count"])
    out.measure(FAILED, row["failed_count"])
    archived_at, failed_at = row["archived_at"], row["failed_at"]
    if archived_at is not None:
        out.measure(ARCHIVED_TS, archived_at)
    if failed_at is not None:
        out.measure(FAILED_TS, failed_at)
    ready: int | None = None
    try:
        ready = int(await con.fetchval(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"))
        out.measure(READY, ready)
    except asyncpg.InsufficientPrivilegeError:
        out.notes.append(".ready backlog not readable (grant pg_monitor)")
    if mode == "off":
        out.problems.append("archive_mode is off")
    if level == "minimal":
        out.problems.append("wal_level is minimal")
    if failed_at is not None and (archived_at is None or failed_at > archived_at):
        out.problems.append("last WAL archiving failed (failure newer than last success)")
    if opts.max_ready_files is not None and ready is not None and ready > opts.max_ready_files:
        out.problems.append(f"{ready} WAL files waiting to be archived")
    if opts.max_archive_age is not None:
        if archived_at is None:
            out.problems.append("no WAL archived yet")
        elif now - archived_at > opts.max_archive_age:
            out.problems.append(f"last WAL archived {now - archived_at:.0f}s ago")
    if mode != "off" and not out.problems:
        out.notes.append(f"archiving healthy ({row['archived_count']} archived)")


async def _tls(con: asyncpg.Connection, opts: TlsOptions, out: Findings) -> None:
    rows = await con.fetch(
        "SELECT s.ssl, count(*) AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
        " WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL GROUP BY s.ssl"
    )
    counts = {bool(row["ssl"]): int(row["n"]) for row in rows}
    with_tls, without = counts.get(True, 0), counts.get(False, 0)
    total = with_tls + without
    share = with_tls / total if total else 1.0
    out.measure(TLS_CONNS, with_tls, ssl="true")
    out.measure(TLS_CONNS, without, ssl="false")
    out.measure(TLS_SHARE, share)
    text = f"{with_tls}/{total} TCP client connections use TLS"
    if share < opts.min_share:
        out.problems.append(text)
    else:
        out.notes.append(text)


def objectives(spec: PostgresCheck) -> list[Measurement]:
    """The configured objectives of the sections `spec` sets.

    They come from the configuration alone, so they are exported whatever the server
    says, also when the run ends in `error`: a dashboard keeps its threshold line and an
    alert comparing a value with its objective keeps its right-hand side.
    """
    found: list[Measurement] = []
    if spec.min_version_num is not None:
        found.append(Measurement(VERSION_MIN.name, float(spec.min_version_num)))
    if spec.max_connections_used is not None:
        found.append(Measurement(CONN_TARGET.name, spec.max_connections_used))
    if spec.replication is not None:
        found.append(Measurement(LAG_TARGET.name, spec.replication.max_replay_lag))
        if spec.replication.role != "replica":
            found.append(Measurement(REPLICAS_MIN.name, float(spec.replication.min_replicas)))
    if spec.tls is not None:
        found.append(Measurement(TLS_TARGET.name, spec.tls.min_share))
    return found


def _fresh(spec: PostgresCheck) -> Findings:
    """Findings of a new run, holding the objectives from the start."""
    return Findings(measurements=objectives(spec))


def _configured(spec: PostgresCheck) -> bool:
    return bool(spec.min_version_num is not None or spec.settings
                or spec.max_connections_used is not None
                or spec.replication or spec.archiving or spec.tls)


async def run(spec: PostgresCheck, ctx: ProbeContext) -> Outcome:
    """Evaluate every configured section on one pooled connection."""
    if not _configured(spec):
        return Outcome.errored(Reason.CONFIG, "nothing to check: configure min_version_num, "
                               "settings, max_connections_used, replication, archiving or tls")
    out = _fresh(spec)

    async def work(con: asyncpg.Connection) -> None:
        nonlocal out
        out = _fresh(spec)  # a retried run starts afresh
        if spec.min_version_num is not None:
            await _version(con, spec, out)
        if spec.settings:
            await _settings(con, spec, out)
        if spec.max_connections_used is not None:
            await _connections(con, spec, out)
        if spec.replication is not None:
            await _replication(con, spec.replication, out)
        if spec.archiving is not None:
            await _archiving(con, spec.archiving, ctx.now(), out)
        if spec.tls is not None:
            await _tls(con, spec.tls, out)

    try:
        await with_connection(ctx, spec.connection, work)
    except ProbeError as exc:
        return out.error(exc)
    return Outcome(out.outcome().status, "; ".join(out.problems or out.notes) or "ok",
                   tuple(out.measurements))


KIND: ProbeKind[Any] = ProbeKind(
    name="postgres",
    spec=PostgresCheck,
    run=run,
    summary="PostgreSQL version, settings baseline, connections, replication, archiving, TLS.",
    metrics=METRICS,
)
