"""`retention`: data retention runs and keeps every table within its window (2.4.3).

Two things are observed, both read-only: the retention mechanism's newest successful
run (a pg_cron job whose command matches, from `cron.job_run_details`, or the
application's own purge-run record through a query) must be younger than its period,
and each configured table's oldest row must be younger than that table's window. A
young deployment whose purge never ran fails: the window alone cannot show retention.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

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
from exporter.probes.backup.common import human_duration
from exporter.probes.postgres.errors import quote_ident, read_only, with_connection

_IDENT = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$"


class RetainedTable(BaseModel):
    """One table and how long its rows may live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(pattern=_IDENT, description="table, optionally schema.table")
    column: str = Field(default="created_at", pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$",
                        description="timestamp column the window applies to")
    window: Duration = Field(gt=0, description="the oldest row must be younger (e.g. 365d)")


class PgCronJob(BaseModel):
    """A pg_cron job (command matched with LIKE) whose newest successful run counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pg_cron"]
    command_like: str = Field(min_length=1, description="SQL LIKE pattern on cron.job.command")
    period: Duration = Field(gt=0, description="the newest successful run must be younger")


class PurgeRecord(BaseModel):
    """The application's purge job: a query returning the time of its last success."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["purge_record"]
    query: str = Field(min_length=1, description="read-only SELECT returning one timestamp")
    period: Duration = Field(gt=0, description="the last successful purge must be younger")


Mechanism = Annotated[PgCronJob | PurgeRecord, Field(discriminator="type")]


class RetentionCheck(CheckSpec):
    """`kind: retention` options."""

    kind: Literal["retention"]
    connection: PostgresConnectionName = Field(description="name of a `kind: postgres` "
                                               "connection")
    mechanism: Mechanism = Field(description="how retention runs: pg_cron or purge_record")
    tables: list[RetainedTable] = Field(min_length=1, description="tables and their windows")
    statement_timeout: Duration = Field(default=5.0, gt=0)


LAST_RUN = MetricFamily("readiness_retention_last_run_timestamp_seconds",
                        "Newest successful run of the retention mechanism.")
PERIOD = MetricFamily("readiness_retention_period_seconds",
                      "Longest accepted time since the retention mechanism last succeeded.")
OLDEST = MetricFamily("readiness_retention_oldest_row_age_seconds",
                      "Age of the oldest row of a retained table (0 when empty).", ("table",))
WINDOW = MetricFamily("readiness_retention_window_seconds",
                      "Retention window of a table (from the configuration).", ("table",))

_CRON_LAST_RUN = (
    "SELECT count(DISTINCT j.jobid) AS jobs, max(d.end_time) AS last_run FROM cron.job j "
    "LEFT JOIN cron.job_run_details d ON d.jobid = j.jobid AND d.status = 'succeeded' "
    "WHERE j.active AND j.command LIKE $1")


def _table_sql(table: str) -> str:
    return ".".join(quote_ident(part) for part in table.split("."))


def _epoch(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    raise ProbeError(Reason.CONFIG, "mechanism.query must return a timestamp, got a "
                     f"{type(value).__name__}")


async def _last_run(con: asyncpg.Connection, mechanism: PgCronJob | PurgeRecord
                    ) -> tuple[float | None, str]:
    """(newest successful run, problem text when there is no mechanism to judge)."""
    if isinstance(mechanism, PurgeRecord):
        return _epoch(await con.fetchval(mechanism.query)), ""
    try:
        row = await con.fetchrow(_CRON_LAST_RUN, mechanism.command_like)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        raise ProbeError(Reason.CONFIG, "pg_cron is not installed in this database "
                         "(cron.job missing): install it or set mechanism.type: "
                         "purge_record") from None
    if not row["jobs"]:
        return None, (f"no active pg_cron job whose command is like "
                      f"{mechanism.command_like!r} (visible to this role: pg_cron shows a "
                      "role only its own jobs unless it is superuser or BYPASSRLS)")
    return _epoch(row["last_run"]), ""


async def _observe(spec: RetentionCheck, ctx: ProbeContext
                   ) -> tuple[float | None, str, list[float]]:
    async def work(con: asyncpg.Connection) -> tuple[float | None, str, list[float]]:
        async with read_only(con, spec.statement_timeout):
            last, problem = await _last_run(con, spec.mechanism)
            ages = []
            for table in spec.tables:
                age = await con.fetchval(
                    f"SELECT extract(epoch FROM now() - min({quote_ident(table.column)}))"
                    f"::float8 FROM {_table_sql(table.table)}")
                ages.append(max(0.0, float(age)) if age is not None else 0.0)
            return last, problem, ages

    return await with_connection(ctx, spec.connection, work)


def objectives(spec: RetentionCheck) -> list[Measurement]:
    """The period and every table's window: from the configuration, so exported also
    when the run errors."""
    return [Measurement(PERIOD.name, spec.mechanism.period),
            *(Measurement(WINDOW.name, table.window, {"table": table.table})
              for table in spec.tables)]


async def run(spec: RetentionCheck, ctx: ProbeContext) -> Outcome:
    """Judge the mechanism's last run and every table's oldest row."""
    measurements = objectives(spec)
    try:
        last, problem, ages = await _observe(spec, ctx)
    except ProbeError as exc:
        return exc.with_measurements(measurements).outcome()
    now = ctx.now()
    period = spec.mechanism.period
    problems = [problem] if problem else []
    if last is not None:
        measurements.append(Measurement(LAST_RUN.name, last))
        if now - last > period:
            problems.append(f"retention last ran {human_duration(now - last)} ago "
                            f"(period {human_duration(period)})")
    elif not problem:
        problems.append("retention never ran successfully")
    for table, age in zip(spec.tables, ages, strict=True):
        measurements.append(Measurement(OLDEST.name, age, {"table": table.table}))
        if age > table.window:
            problems.append(f"{table.table}: oldest row {human_duration(age)} old "
                            f"(window {human_duration(table.window)})")
    if problems:
        return Outcome.failed("; ".join(problems), tuple(measurements))
    ran = human_duration(now - last) if last is not None else "?"
    return Outcome.passed(f"retention ran {ran} ago; {len(spec.tables)} table(s) within "
                          "their windows", tuple(measurements))


KIND: ProbeKind[Any] = ProbeKind(
    name="retention",
    spec=RetentionCheck,
    run=run,
    summary="Data retention runs (pg_cron job or purge record) and tables stay within "
    "their windows.",
    metrics=(LAST_RUN, PERIOD, OLDEST, WINDOW),
)
