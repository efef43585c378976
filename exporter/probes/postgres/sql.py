"""`sql`: one read-only query returning one number, compared with a threshold.

The query runs in a READ ONLY transaction with a server-side `statement_timeout`, on
the shared pool of a `kind: postgres` connection. The result must be one row with one
column: a number, a boolean, an interval (seconds) or a timestamp (epoch seconds).
Used by the preset for API key hash format, admins without MFA, audit record age and
retention (2.1.2, 2.1.3, 2.4.1, 2.4.3).
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Literal

import asyncpg
from pydantic import Field

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
from exporter.probes.postgres.errors import read_only, with_connection
from exporter.probes.postgres.units import OPS

Op = Literal["==", "!=", "<", "<=", ">", ">="]


class SqlCheck(CheckSpec):
    """`kind: sql` options."""

    kind: Literal["sql"]
    connection: PostgresConnectionName = Field(description="name of a `kind: postgres` "
                                               "connection")
    query: str = Field(min_length=1, description="read-only SELECT returning one value")
    op: Op = Field(default="==", description="comparison: value <op> threshold passes")
    threshold: float = Field(description="right-hand side of the comparison")
    statement_timeout: Duration = Field(default=5.0, gt=0, description="server-side limit")
    null_value: float | None = Field(
        default=None, description="value used when the query returns NULL (default: error)"
    )
    null_error: str | None = Field(
        default=None, max_length=200,
        description="what a NULL result means, reported as error/config (e.g. no admin "
                    "account found); ignored when null_value is set")
    unit: str = Field(default="", max_length=16, pattern=r"^[a-z_]*$",
                      description="label for the exported value, e.g. seconds")


VALUE = MetricFamily("readiness_sql_value", "Value returned by the check's query.", ("unit",))
THRESHOLD = MetricFamily("readiness_sql_threshold", "Threshold the value is compared with.",
                         ("op", "unit"))


def to_number(value: object) -> float:
    """A query result as a float: numbers, booleans, intervals (s), timestamps (epoch s)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    raise ProbeError(Reason.CONFIG, f"query returned a {type(value).__name__}, not a number")


def objective(spec: SqlCheck) -> Measurement:
    """The threshold: from the configuration, so exported also when the run errors."""
    return Measurement(THRESHOLD.name, spec.threshold, {"op": spec.op, "unit": spec.unit})


async def run(spec: SqlCheck, ctx: ProbeContext) -> Outcome:
    """Run the query read-only and compare its single value."""

    async def work(con: asyncpg.Connection) -> list[Any]:
        async with read_only(con, spec.statement_timeout):
            return list(await con.fetch(spec.query))

    kept = (objective(spec),)
    try:
        rows = await with_connection(ctx, spec.connection, work)
    except ProbeError as exc:
        return exc.with_measurements(kept).outcome()
    if len(rows) != 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} rows" if len(rows) != 1 else f"{len(rows[0])} columns"
        return Outcome.errored(Reason.CONFIG, f"query must return one row with one column, "
                               f"got {shape}", kept)
    raw = rows[0][0]
    if raw is None:
        if spec.null_value is None:
            return Outcome.errored(Reason.CONFIG, spec.null_error
                                   or "query returned NULL (set null_value)", kept)
        value = spec.null_value
    else:
        try:
            value = to_number(raw)
        except ProbeError as exc:
            return exc.with_measurements(kept).outcome()
    measurements = (Measurement(VALUE.name, value, {"unit": spec.unit}), *kept)
    text = f"value {value:g} {spec.op} {spec.threshold:g}"
    if OPS[spec.op](value, spec.threshold):
        return Outcome.passed(text, measurements)
    return Outcome.failed(f"value {value:g}, expected {spec.op} {spec.threshold:g}",
                          measurements)


KIND: ProbeKind[Any] = ProbeKind(
    name="sql",
    spec=SqlCheck,
    run=run,
    summary="One read-only SQL query returning one number, compared with a threshold.",
    metrics=(VALUE, THRESHOLD),
)
