"""Probes other than http and config_value that print what they observed: a value read
from the database never reaches a message unless it is a configured constant (issue 17).

Against the machine's PostgreSQL on 127.0.0.1:5432 (trust authentication).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.context import RuntimeContext
from exporter.model import Reason, Status
from exporter.probes.observed import describe, shape
from exporter.probes.postgres import probe, sql
from exporter.probes.postgres.connection import PostgresConnection

APP_NAME = "app-" + secrets.token_hex(12)  # a string setting the server reports back


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    conn = PostgresConnection.model_validate({
        "kind": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres",
        "application_name": APP_NAME})
    context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


async def test_sql_data_error_does_not_quote_the_value(ctx: RuntimeContext) -> None:
    stored = "stored-" + secrets.token_hex(16)  # as if read from a column
    check = sql.SqlCheck.model_validate({
        "id": "q", "section": "2.1", "title": "t", "kind": "sql", "connection": "db",
        "query": f"SELECT v::int FROM (VALUES ('{stored}')) AS t(v)", "threshold": 0})
    outcome = await sql.run(check, ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "InvalidTextRepresentationError, SQLSTATE 22P02" in outcome.message
    assert stored not in outcome.message and stored[:16] not in outcome.message


async def test_sql_syntax_errors_still_name_the_problem(ctx: RuntimeContext) -> None:
    check = sql.SqlCheck.model_validate({
        "id": "q", "section": "2.1", "title": "t", "kind": "sql", "connection": "db",
        "query": "SELECT count(*) FROM no_such_table_here", "threshold": 0})
    outcome = await sql.run(check, ctx)
    assert outcome.reason is Reason.CONFIG
    assert 'relation "no_such_table_here" does not exist' in outcome.message


async def test_postgres_string_setting_shown_by_shape_enum_setting_by_value(
        ctx: RuntimeContext) -> None:
    check = probe.PostgresCheck.model_validate({
        "id": "pg", "section": "3.1", "title": "t", "kind": "postgres", "connection": "db",
        "settings": {"application_name": "expected-name", "wal_level": "logical",
                     "fsync": True}})
    outcome = await probe.run(check, ctx)
    assert outcome.status is Status.FAIL
    assert APP_NAME not in outcome.message and APP_NAME[:16] not in outcome.message
    assert f"application_name={shape(APP_NAME)} (want expected-name)" in outcome.message
    # The machine's server runs the Debian default (replica); an enum is a fixed word.
    assert re.search(r"wal_level=(minimal|replica) \(want logical\)", outcome.message)


def test_describe_rules() -> None:
    assert describe("hunter2-password") == "a 16-character string"
    assert describe("healthy", ["healthy", "ok"]) == "'healthy'"
    assert describe("healthy", [["healthy"]]) == "a 7-character string"
    assert describe(3.5) == "3.5" and describe(False) == "False" and describe(None) == "null"
    assert describe({"a": 1}) == "an object with 1 key"
    assert describe([1, 2]) == "a list of 2 items"
    assert describe("") == "an empty string"
