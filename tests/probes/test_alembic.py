"""`alembic` probe against real databases migrated (offline SQL via psql) from the real
migrations directory in tests/probes/alembic_fixture: at head, behind, none, custom
version table; downgrade paths; no migration is ever run by the probe."""

from __future__ import annotations

import io
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from pydantic import ValidationError

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.postgres import alembic as alembic_probe
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, pg_cluster

FIXTURE = Path(__file__).parent / "alembic_fixture"
HEAD = "3c4d5e6f7a8b"
MIDDLE = "2b3c4d5e6f7a"


def migrate(cluster: PgCluster, database: str, target: str, **options: str) -> None:
    """Render `alembic upgrade <target> --sql` and apply it with psql."""
    buffer = io.StringIO()
    cfg = Config(output_buffer=buffer)
    cfg.set_main_option("script_location", str(FIXTURE))
    cfg.set_main_option("sqlalchemy.url", "postgresql://")
    for key, value in options.items():
        cfg.set_main_option(key, value)
    command.upgrade(cfg, target, sql=True)
    cluster.psql(buffer.getvalue(), database=database)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as server:
        for name in ("athead", "behind", "fresh", "custom", "stamped"):
            server.psql(f"CREATE DATABASE {name}")
        migrate(server, "athead", "head")
        migrate(server, "behind", MIDDLE)
        server.psql("CREATE SCHEMA meta", database="custom")
        migrate(server, "custom", "head", version_table="schema_version",
                version_table_schema="meta")
        server.psql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
                    database="stamped")
        yield server


@pytest.fixture
async def make_ctx(cluster: PgCluster, tmp_path: Path
                   ) -> AsyncIterator[Callable[[str], RuntimeContext]]:
    made: list[RuntimeContext] = []

    def factory(database: str) -> RuntimeContext:
        conn = PostgresConnection.model_validate({"kind": "postgres", "port": cluster.port,
                                                  "database": database})
        context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
        made.append(context)
        return context

    yield factory
    for context in made:
        await context.aclose()


def check(**fields: Any) -> alembic_probe.AlembicCheck:
    base = {"id": "3.1.6", "section": "3.1", "title": "migrations", "kind": "alembic",
            "connection": "db"}
    if "expected_revision" not in fields and "script_location" not in fields:
        base["script_location"] = str(FIXTURE)
    return alembic_probe.AlembicCheck.model_validate({**base, **fields})


def series(outcome: Outcome, family: str) -> list[tuple[dict[str, str], float]]:
    return sorted(((dict(m.labels), m.value) for m in outcome.measurements
                   if m.family == family), key=repr)


async def test_at_head_passes(make_ctx: Any) -> None:
    outcome = await alembic_probe.run(check(), make_ctx("athead"))
    assert outcome.status is Status.PASS, outcome.message
    assert series(outcome, "readiness_alembic_at_head") == [({}, 1.0)]
    assert series(outcome, "readiness_alembic_pending_revisions") == [({}, 0.0)]
    assert series(outcome, "readiness_alembic_revision_info") == sorted(
        [({"revision": HEAD, "source": "database"}, 1.0),
         ({"revision": HEAD, "source": "head"}, 1.0)], key=repr)


async def test_behind_fails_and_is_not_migrated(make_ctx: Any, cluster: PgCluster) -> None:
    outcome = await alembic_probe.run(check(), make_ctx("behind"))
    assert outcome.status is Status.FAIL
    assert f"database at {MIDDLE}, 1 migration(s) behind head {HEAD}" == outcome.message
    assert series(outcome, "readiness_alembic_pending_revisions") == [({}, 1.0)]
    assert series(outcome, "readiness_alembic_at_head") == [({}, 0.0)]
    assert cluster.psql("SELECT version_num FROM alembic_version",
                        database="behind").strip() == MIDDLE


async def test_missing_version_table_fails(make_ctx: Any) -> None:
    outcome = await alembic_probe.run(check(), make_ctx("fresh"))
    assert outcome.status is Status.FAIL
    assert "alembic_version does not exist" in outcome.message


async def test_expected_revision(make_ctx: Any) -> None:
    ctx = make_ctx("behind")
    ok = await alembic_probe.run(check(expected_revision=MIDDLE), ctx)
    assert ok.status is Status.PASS, ok.message
    ko = await alembic_probe.run(check(expected_revision=HEAD), ctx)
    assert ko.status is Status.FAIL
    assert f"expected {HEAD}" in ko.message


async def test_custom_version_table_and_schema(make_ctx: Any) -> None:
    ctx = make_ctx("custom")
    ok = await alembic_probe.run(check(version_table="schema_version",
                                       version_table_schema="meta"), ctx)
    assert ok.status is Status.PASS, ok.message
    default = await alembic_probe.run(check(), ctx)
    assert default.status is Status.FAIL  # public.alembic_version does not exist there


async def test_unknown_database_revision(make_ctx: Any, cluster: PgCluster) -> None:
    cluster.psql("DELETE FROM alembic_version; INSERT INTO alembic_version VALUES "
                 "('ffffffffffff')", database="stamped")
    outcome = await alembic_probe.run(check(), make_ctx("stamped"))
    assert outcome.status is Status.FAIL
    assert "ffffffffffff not in the migrations directory" in outcome.message
    rollback = await alembic_probe.run(check(verify="downgrade"), make_ctx("stamped"))
    assert rollback.status is Status.FAIL


async def test_downgrade_path_of_current_head(make_ctx: Any) -> None:
    outcome = await alembic_probe.run(check(verify="downgrade"), make_ctx("athead"))
    assert outcome.status is Status.PASS, outcome.message
    assert series(outcome, "readiness_alembic_downgrade_available") == [
        ({"revision": HEAD}, 1.0)]


async def test_new_head_without_downgrade(make_ctx: Any, cluster: PgCluster,
                                          tmp_path: Path) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(FIXTURE, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    ctx = make_ctx("stamped")
    cluster.psql(f"DELETE FROM alembic_version; INSERT INTO alembic_version VALUES ('{HEAD}')",
                 database="stamped")
    before = await alembic_probe.run(check(script_location=str(scripts)), ctx)
    assert before.status is Status.PASS, before.message
    (scripts / "versions" / "4d5e6f7a8b9c_irreversible.py").write_text(textwrap.dedent(f'''\
        """irreversible data fix"""
        from alembic import op

        revision = "4d5e6f7a8b9c"
        down_revision = "{HEAD}"
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            op.execute("UPDATE users SET email = lower(email)")


        def downgrade() -> None:
            """Cannot be undone."""
            raise NotImplementedError("irreversible")
        '''), encoding="utf-8")
    behind = await alembic_probe.run(check(script_location=str(scripts)), ctx)
    assert behind.status is Status.FAIL  # the directory change is seen without a restart
    assert "1 migration(s) behind head 4d5e6f7a8b9c" in behind.message
    cluster.psql("UPDATE alembic_version SET version_num = '4d5e6f7a8b9c'", database="stamped")
    no_way_back = await alembic_probe.run(
        check(script_location=str(scripts), verify="downgrade"), ctx)
    assert no_way_back.status is Status.FAIL
    assert no_way_back.message == "no downgrade path for 4d5e6f7a8b9c"
    assert series(no_way_back, "readiness_alembic_downgrade_available") == [
        ({"revision": "4d5e6f7a8b9c"}, 0.0)]


async def test_missing_script_location_is_config_error(make_ctx: Any, tmp_path: Path) -> None:
    outcome = await alembic_probe.run(check(script_location=str(tmp_path / "nope")),
                                      make_ctx("athead"))
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)


def test_has_downgrade_detects_empty_bodies(tmp_path: Path) -> None:
    cases = {
        "def downgrade():\n    pass\n": False,
        "def downgrade():\n    '''doc'''\n    ...\n": False,
        "def downgrade():\n    raise NotImplementedError()\n": False,
        "def upgrade():\n    pass\n": False,
        "def downgrade():\n    op.drop_table('x')\n": True,
    }
    for index, (source, expected) in enumerate(cases.items()):
        path = tmp_path / f"m{index}.py"
        path.write_text(source, encoding="utf-8")
        assert alembic_probe.has_downgrade(str(path)) is expected, source


def test_spec_needs_one_source() -> None:
    base = {"id": "x", "section": "3.1", "title": "t", "kind": "alembic", "connection": "db"}
    with pytest.raises(ValidationError, match="exactly one"):
        alembic_probe.AlembicCheck.model_validate(base)
    with pytest.raises(ValidationError, match="exactly one"):
        alembic_probe.AlembicCheck.model_validate(
            {**base, "script_location": "x", "expected_revision": "abc"})
    with pytest.raises(ValidationError, match="script_location"):
        alembic_probe.AlembicCheck.model_validate(
            {**base, "verify": "downgrade", "expected_revision": "abc"})
    with pytest.raises(ValidationError, match="version_table"):
        alembic_probe.AlembicCheck.model_validate(
            {**base, "expected_revision": "abc", "version_table": "x; drop"})


def _reversible(scripts: Path, revision: str, down: str, downgrade_body: str) -> None:
    (scripts / "versions" / f"{revision}_step.py").write_text(textwrap.dedent(f'''\
        """a step of this release"""
        from alembic import op

        revision = "{revision}"
        down_revision = "{down}"
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            op.execute("SELECT 1")


        def downgrade() -> None:
            {downgrade_body}
        '''), encoding="utf-8")


async def test_every_migration_back_to_the_previous_release(make_ctx: Any, cluster: PgCluster,
                                                            tmp_path: Path) -> None:
    """Release N-1 was at HEAD; this release adds an irreversible step, then a reversible
    one on top. Only the current revision was checked before: it passed."""
    scripts = tmp_path / "migrations"
    shutil.copytree(FIXTURE, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    _reversible(scripts, "5e6f7a8b9c0d", HEAD, 'raise NotImplementedError("irreversible")')
    _reversible(scripts, "6f7a8b9c0d1e", "5e6f7a8b9c0d", 'op.execute("SELECT 2")')
    ctx = make_ctx("stamped")
    cluster.psql("DELETE FROM alembic_version; "
                 "INSERT INTO alembic_version VALUES ('6f7a8b9c0d1e')", database="stamped")
    current_only = await alembic_probe.run(
        check(script_location=str(scripts), verify="downgrade"), ctx)
    assert current_only.status is Status.PASS  # the old rule: a false "rollback possible"
    release = await alembic_probe.run(
        check(script_location=str(scripts), verify="downgrade", rollback_to=HEAD), ctx)
    assert release.status is Status.FAIL, release.message
    assert release.message == f"no downgrade path back to {HEAD} for 5e6f7a8b9c0d"
    assert series(release, "readiness_alembic_downgrade_available") == [
        ({"revision": "5e6f7a8b9c0d"}, 0.0), ({"revision": "6f7a8b9c0d1e"}, 1.0)]
    # the previous release was already past the irreversible step: rollback is possible
    recent = await alembic_probe.run(
        check(script_location=str(scripts), verify="downgrade", rollback_to="5e6f7a8b9c0d"),
        ctx)
    assert recent.status is Status.PASS, recent.message
    assert recent.message == ("1 migration(s) from 6f7a8b9c0d1e back to 5e6f7a8b9c0d have "
                              "a downgrade()")
    unknown = await alembic_probe.run(
        check(script_location=str(scripts), verify="downgrade", rollback_to="0000abcd"), ctx)
    assert (unknown.status, unknown.reason) == (Status.ERROR, Reason.CONFIG)
    assert "checks (id 3.1.6).rollback_to: revision 0000abcd" in unknown.message
