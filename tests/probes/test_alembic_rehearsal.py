"""8.2 rollback rehearsal: the `alembic` kind runs the real alembic CLI (upgrade head,
downgrade, upgrade head) on a fresh scratch database of a real PostgreSQL server reached
with a scram password, and drops it. The static downgrade() check alone let a downgrade
that breaks on a real database pass."""

from __future__ import annotations

import logging
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.postgres import alembic as alembic_probe
from exporter.probes.postgres import alembic_rehearsal as rehearsal
from tests.probes.backup.support import pg_connection
from tests.probes.test_alembic import FIXTURE, HEAD, MIDDLE, migrate
from tests.probes.test_postgres_preset import fragment
from tests.support.servers import PgCluster, pg_cluster

PASSWORD = "rehearsal-secret-never-shown-4b9d"
PREFIX = "readiness_alembic_"
NEXT = "4d5e6f7a8b9c"
AFTER = "5e6f7a8b9c0d"


@dataclass
class Servers:
    production: PgCluster
    scratch: PgCluster


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    hba = ["host all drilluser 127.0.0.1/32 scram-sha-256"]
    with pg_cluster() as production, pg_cluster(hba_extra=hba) as scratch:
        production.psql("CREATE DATABASE app")
        migrate(production, "app", "head")
        scratch.psql(f"CREATE ROLE drilluser LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        yield Servers(production, scratch)


@pytest.fixture
async def ctx(servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[RuntimeContext]:
    monkeypatch.setenv("SCRATCH_DB_PASSWORD", PASSWORD)
    monkeypatch.setenv("WRONG_DB_PASSWORD", PASSWORD + "-wrong")
    context = RuntimeContext({
        "db": pg_connection(servers.production, database="app"),
        "scratch": pg_connection(servers.scratch, user="drilluser",
                                 password_env="SCRATCH_DB_PASSWORD"),
        "scratch-wrong": pg_connection(servers.scratch, user="drilluser",
                                       password_env="WRONG_DB_PASSWORD"),
        "db-again": pg_connection(servers.production),
    }, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def check(scripts: Path, **fields: Any) -> alembic_probe.AlembicCheck:
    base = {"id": "8.2", "section": "8.2", "title": "rollback", "kind": "alembic",
            "connection": "db", "verify": "downgrade", "script_location": str(scripts),
            "scratch_connection": "scratch",
            "alembic_command": [sys.executable, "-m", "alembic"],
            "sqlalchemy_url": "postgresql+psycopg2://"}
    return alembic_probe.AlembicCheck.model_validate({**base, **fields})


def scripts_with(tmp_path: Path, *steps: tuple[str, str, str, str]) -> Path:
    """A copy of the fixture migrations plus (revision, down_revision, upgrade, downgrade)."""
    scripts = tmp_path / "migrations"
    shutil.copytree(FIXTURE, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    for revision, down, upgrade, downgrade in steps:
        (scripts / "versions" / f"{revision}_step.py").write_text(textwrap.dedent(f'''\
            """a step of this release"""
            from alembic import op

            revision = "{revision}"
            down_revision = "{down}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                {upgrade}


            def downgrade() -> None:
                {downgrade}
            '''), encoding="utf-8")
    return scripts


def rehearsal_value(outcome: Outcome) -> list[float]:
    return [m.value for m in outcome.measurements
            if m.family == "readiness_alembic_rollback_rehearsal_success"]


def leftovers(servers: Servers) -> str:
    return servers.scratch.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'")


def stamp(servers: Servers, revision: str) -> None:
    servers.production.psql(f"UPDATE alembic_version SET version_num = '{revision}'",
                            database="app")


async def test_good_chain_passes_and_scratch_is_dropped(
        servers: Servers, ctx: RuntimeContext, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stamp(servers, HEAD)
    servers.scratch.psql(f'CREATE DATABASE "{PREFIX}1000" OWNER drilluser')  # a killed run's
    outcome = await alembic_probe.run(check(FIXTURE), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == (f"revision {HEAD} has a downgrade(); upgrade head, downgrade "
                               "-1, upgrade head succeeded on a scratch database")
    assert rehearsal_value(outcome) == [1.0]
    assert leftovers(servers).strip() == ""  # this run's database and the stale one
    assert PASSWORD not in outcome.message and PASSWORD not in caplog.text


async def test_downgrade_that_breaks_on_the_database_fails_naming_it(
        servers: Servers, ctx: RuntimeContext, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The downgrade() has a body, so the static rule said "rollback possible"; on a real
    database it drops a table that does not exist."""
    caplog.set_level(logging.DEBUG)
    scripts = scripts_with(tmp_path, (NEXT, HEAD, 'op.execute("CREATE TABLE reports (id int)")',
                                      'op.drop_table("report")'))
    stamp(servers, NEXT)
    static = await alembic_probe.run(check(scripts, scratch_connection=None), ctx)
    assert static.status is Status.PASS, static.message  # the old verdict
    outcome = await alembic_probe.run(check(scripts), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert outcome.message.startswith("rollback rehearsal on a scratch database: `alembic "
                                      f"downgrade -1` failed (migration {NEXT}): ")
    assert 'table "report" does not exist' in outcome.message
    assert rehearsal_value(outcome) == [0.0]
    assert leftovers(servers).strip() == ""
    assert PASSWORD not in outcome.message and PASSWORD not in caplog.text


async def test_downgrade_that_leaves_the_schema_behind_fails_on_upgrade(
        servers: Servers, ctx: RuntimeContext, tmp_path: Path) -> None:
    """A downgrade() that runs but does not undo the upgrade: `upgrade head` afterwards
    meets the table it left behind."""
    scripts = scripts_with(tmp_path, (NEXT, HEAD, 'op.execute("CREATE TABLE reports (id int)")',
                                      'op.execute("SELECT 1")'))
    stamp(servers, NEXT)
    outcome = await alembic_probe.run(check(scripts), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert f"`alembic upgrade head` failed (migration {NEXT})" in outcome.message
    assert 'relation "reports" already exists' in outcome.message


async def test_rehearsal_goes_back_to_the_previous_release(
        servers: Servers, ctx: RuntimeContext, tmp_path: Path) -> None:
    """With rollback_to, the rehearsal downgrades every migration of the release: the
    broken one below the head is reached (downgrade -1 alone would pass)."""
    scripts = scripts_with(
        tmp_path,
        (NEXT, HEAD, 'op.execute("CREATE TABLE a (id int)")', 'op.execute("DROP TABLE b")'),
        (AFTER, NEXT, 'op.execute("CREATE TABLE c (id int)")', 'op.execute("DROP TABLE c")'))
    stamp(servers, AFTER)
    one_step = await alembic_probe.run(check(scripts), ctx)
    assert one_step.status is Status.PASS, one_step.message
    release = await alembic_probe.run(check(scripts, rollback_to=HEAD), ctx)
    assert release.status is Status.FAIL, release.message
    assert f"`alembic downgrade {HEAD}` failed (migration {NEXT})" in release.message
    assert 'table "b" does not exist' in release.message


async def test_pass_downgrade_below_the_head_fails_back_to_the_previous_release(
        servers: Servers, ctx: RuntimeContext, tmp_path: Path) -> None:
    """A `pass` downgrade() between the previous release and the current revision: the
    old rule looked at the current revision only and passed."""
    scripts = scripts_with(
        tmp_path,
        (NEXT, HEAD, 'op.execute("CREATE TABLE a (id int)")', "pass"),
        (AFTER, NEXT, 'op.execute("CREATE TABLE c (id int)")', 'op.execute("DROP TABLE c")'))
    stamp(servers, AFTER)
    old_rule = await alembic_probe.run(check(scripts, scratch_connection=None), ctx)
    assert old_rule.status is Status.PASS, old_rule.message
    outcome = await alembic_probe.run(check(scripts, rollback_to=HEAD), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert outcome.message == f"no downgrade path back to {HEAD} for {NEXT}"
    assert rehearsal_value(outcome) == []  # no rehearsal when the scripts already fail


async def test_scratch_on_the_production_cluster_is_refused(
        servers: Servers, ctx: RuntimeContext) -> None:
    stamp(servers, HEAD)
    outcome = await alembic_probe.run(check(FIXTURE, scratch_connection="db-again"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "same cluster as connection db" in outcome.message
    assert servers.production.psql(
        f"SELECT count(*) FROM pg_database WHERE datname LIKE '{PREFIX}%'").strip() == "0"


async def test_wrong_scratch_password_is_an_auth_error_without_the_secret(
        servers: Servers, ctx: RuntimeContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stamp(servers, HEAD)
    outcome = await alembic_probe.run(check(FIXTURE, scratch_connection="scratch-wrong"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome.message
    assert PASSWORD not in outcome.message and PASSWORD not in caplog.text


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="sqlalchemy_url"):
        check(FIXTURE, sqlalchemy_url=f"postgresql://drilluser:{PASSWORD}@host/db")
    with pytest.raises(ValidationError, match="needs verify: downgrade"):
        check(FIXTURE, verify="head")
    with pytest.raises(ValidationError, match="must not be the production connection"):
        check(FIXTURE, scratch_connection="db")


def test_output_helpers() -> None:
    output = ("INFO [alembic.runtime.migration] Running downgrade 4d5e -> 3c4d, step\n"
              "Traceback (most recent call last):\n  File \"x\", line 1\n"
              f"sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) {PASSWORD}\n"
              "(Background on this error at: https://sqlalche.me/e/20/f405)\n")
    assert rehearsal.failed_revision(output) == "4d5e"
    assert rehearsal.failed_revision("nothing ran") is None
    line = rehearsal.error_line(rehearsal.redact(output, [PASSWORD]))
    assert line == "sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) ***"


async def test_preset_8_2_goes_back_to_the_previous_release(
        servers: Servers, ctx: RuntimeContext) -> None:
    """Unset inputs.previous_release_revision: a config error, not a verdict on the current
    revision alone. Set (with a scratch connection): the whole release is rehearsed."""
    stamp(servers, HEAD)
    unset = fragment({}).check("8.2")
    assert isinstance(unset, alembic_probe.AlembicCheck) and unset.scratch_connection is None
    outcome = await alembic_probe.run(unset.model_copy(update={"connection": "db"}), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert outcome.message == ("checks (id 8.2).rollback_to: not set; the previous release's "
                               "revision is needed to check every migration back to it")
    preset = fragment({"PREVIOUS_RELEASE_REVISION": MIDDLE}).check("8.2")
    assert isinstance(preset, alembic_probe.AlembicCheck) and preset.rollback_to == MIDDLE
    check = preset.model_copy(update={
        "connection": "db", "script_location": FIXTURE, "scratch_connection": "scratch",
        "alembic_command": [sys.executable, "-m", "alembic"],
        "sqlalchemy_url": "postgresql+psycopg2://"})
    outcome = await alembic_probe.run(check, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == (f"1 migration(s) from {HEAD} back to {MIDDLE} have a "
                               f"downgrade(); upgrade head, downgrade {MIDDLE}, upgrade head "
                               "succeeded on a scratch database")


async def test_rehearsal_beyond_its_timeout_is_stopped_and_cleaned_up(
        servers: Servers, ctx: RuntimeContext, tmp_path: Path) -> None:
    scripts = scripts_with(tmp_path, (NEXT, HEAD, 'op.execute("SELECT pg_sleep(60)")',
                                      'op.execute("SELECT 1")'))
    stamp(servers, NEXT)
    outcome = await alembic_probe.run(check(scripts, rehearsal_timeout="3s"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.TIMEOUT), outcome.message
    assert outcome.message == "rollback rehearsal did not finish within 3s"
    assert leftovers(servers).strip() == ""  # the scratch database is dropped (FORCE)
    assert servers.scratch.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
        "AND pid <> pg_backend_pid()").strip() == "0"
