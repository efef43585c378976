"""`alembic`: the database is at the migration head (3.1.6, 7.1) and can roll back (8.2).

Reads the revision(s) in the version table (name and schema configurable) and compares
them with the head(s) of a migrations directory, read with alembic's `ScriptDirectory`
in a thread (`env.py` is not executed), or with an expected revision. In `verify:
downgrade` mode it checks that each current revision's script has a `downgrade()` that
does something (not only `pass`, `...`, a docstring or `raise NotImplementedError`);
with `rollback_to` (the previous release's revision), every migration between the
current revision and that one must have one. With `scratch_connection`, the rollback is
also rehearsed for real on a fresh scratch database (`alembic_rehearsal`); the
production database is only read.
"""

from __future__ import annotations

import ast
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
from pydantic import Field, field_validator, model_validator

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
from exporter.probes.postgres import alembic_rehearsal as rehearsal
from exporter.probes.postgres.errors import quote_ident, read_only, with_connection
from exporter.transport.postgres import database

_IDENT = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"


class AlembicCheck(CheckSpec):
    """`kind: alembic` options."""

    kind: Literal["alembic"]
    connection: PostgresConnectionName = Field(description="name of a `kind: postgres` "
                                               "connection")
    script_location: Path | None = Field(
        default=None, description="migrations directory (with versions/), read-only"
    )
    expected_revision: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_]+$",
        description="compare with this revision instead of the script heads",
    )
    verify: Literal["head", "downgrade"] = Field(
        default="head", description="head: at head; downgrade: current revision can roll back"
    )
    rollback_to: str | None = Field(
        default=None,
        description="verify: downgrade: the previous release's revision; every migration "
        "above it (down to the current revision) must have a downgrade()",
    )
    rollback_to_required: bool = Field(
        default=False, description="verify: downgrade: without rollback_to the check is a "
        "config error instead of judging the current revision alone")
    scratch_connection: PostgresConnectionName | None = Field(
        default=None, description="verify: downgrade: postgres connection to a scratch "
        "server (e.g. the restore drill's); a fresh database is created there, `upgrade "
        "head`, `downgrade` (to rollback_to, else -1) and `upgrade head` run on it with "
        "alembic_command, and it is dropped")
    scratch_prefix: str = Field(
        default="readiness_alembic_", pattern=r"^[a-z_][a-z0-9_]{2,30}$",
        description="scratch databases are named <prefix><epoch ms>")
    alembic_command: list[str] = Field(
        default=["alembic"], min_length=1,
        description="argv of the application's alembic (its env.py takes the URL from "
        "sqlalchemy.url); `-c <ini> <step>` is appended")
    sqlalchemy_url: str = Field(
        default="postgresql://", pattern=r"^[a-z0-9+]+://$",
        description="credential-free URL given to env.py (driver only): host, user and "
        "password reach the driver through libpq's PG* environment")
    rehearsal_timeout: Duration = Field(default=300.0, gt=0,
                                        description="the three alembic steps together")
    version_table: str = Field(default="alembic_version", pattern=_IDENT)
    version_table_schema: str | None = Field(default=None, pattern=_IDENT)
    statement_timeout: Duration = Field(default=5.0, gt=0)

    @field_validator("rollback_to")
    @classmethod
    def _revision_id(cls, value: str | None) -> str | None:
        # a validator, not a JSON-schema pattern: the preset gives ${inputs.NAME} here
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]+", value):
            raise ValueError("a revision id: letters, digits and _ only")
        return value

    @model_validator(mode="after")
    def _source(self) -> AlembicCheck:
        if self.verify == "downgrade" and self.script_location is None:
            raise ValueError("verify: downgrade needs script_location")
        if self.scratch_connection is not None and self.verify != "downgrade":
            raise ValueError("scratch_connection needs verify: downgrade")
        if self.scratch_connection is not None and self.scratch_connection == self.connection:
            raise ValueError("scratch_connection must not be the production connection")
        if self.verify == "head" and (self.script_location is None) == (
                self.expected_revision is None):
            raise ValueError("give exactly one of script_location or expected_revision")
        return self


AT_HEAD = MetricFamily("readiness_alembic_at_head",
                       "1 when the database revisions equal the expected head(s).")
REVISION = MetricFamily("readiness_alembic_revision_info",
                        "Revisions seen (value 1): source is database or head.",
                        ("revision", "source"))
PENDING = MetricFamily("readiness_alembic_pending_revisions",
                       "Migrations between the database revision and the head(s).")
DOWNGRADE = MetricFamily("readiness_alembic_downgrade_available",
                         "1 when the revision's script has a non-empty downgrade().",
                         ("revision",))
REHEARSAL = MetricFamily(
    "readiness_alembic_rollback_rehearsal_success",
    "1 when upgrade head, downgrade and upgrade head succeeded on a scratch database, "
    "0 when a step failed.")


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True, slots=True)
class ScriptFacts:
    """What the probe needs from a migrations directory."""

    heads: tuple[str, ...]
    known: frozenset[str]
    pending: int | None
    downgradable: dict[str, bool]
    rollback_known: bool = True


_cache: dict[Path, tuple[tuple[tuple[str, int], ...], Any]] = {}
_cache_lock = threading.Lock()


def _signature(directory: Path) -> tuple[tuple[str, int], ...]:
    versions = directory / "versions"
    entries: list[tuple[str, int]] = []
    for root, _dirs, files in os.walk(versions):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                entries.append((path, os.stat(path).st_mtime_ns))
    return tuple(sorted(entries))


def _script_directory(directory: Path) -> Any:
    """A `ScriptDirectory`, reused until a file under versions/ changes."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if not (directory / "versions").is_dir():
        raise ProbeError(Reason.CONFIG, f"{directory}: no versions/ directory")
    signature = _signature(directory)
    with _cache_lock:
        cached = _cache.get(directory)
        if cached is not None and cached[0] == signature:
            return cached[1]
    try:
        script = ScriptDirectory(str(directory))
        script.get_heads()  # loads every revision now, in this thread
    except CommandError as exc:
        raise ProbeError(Reason.CONFIG, f"{directory}: {str(exc)[:160]}") from None
    with _cache_lock:
        _cache[directory] = (signature, script)
    return script


def _is_empty_body(body: list[ast.stmt]) -> bool:
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring or `...`
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            target = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                continue
        return False
    return True


def has_downgrade(path: str) -> bool:
    """True when the module at `path` defines a top-level `downgrade()` that does work."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            return not _is_empty_body(node.body)
    return False


def _downgrade_path(script: Any, current: tuple[str, ...], known: frozenset[str],
                    rollback_to: str | None) -> list[str] | None:
    """Revisions whose downgrade() runs to reach `rollback_to` (all of `current` when
    unset); None when `rollback_to` is unknown or not below the current revision."""
    from alembic.util import CommandError

    if rollback_to is None:
        return list(current)
    if rollback_to not in known or not all(rev in known for rev in current):
        return None
    try:
        return [rev.revision for rev in script.iterate_revisions(current, rollback_to)]
    except CommandError:
        return None


def script_facts(directory: Path, current: tuple[str, ...],
                 rollback_to: str | None = None) -> ScriptFacts:
    """Heads, known revisions, pending count and downgrade paths (blocking: thread)."""
    from alembic.util import CommandError

    script = _script_directory(directory)
    heads = tuple(sorted(script.get_heads()))
    known = frozenset(rev.revision for rev in script.walk_revisions())
    pending: int | None = None
    if current and all(rev in known for rev in current):
        try:
            upgrade_path = script.iterate_revisions(heads, current)
            pending = sum(1 for _ in upgrade_path)
        except CommandError:
            pending = None  # e.g. database on a branch the heads do not descend from
    downgradable: dict[str, bool] = {}
    path = _downgrade_path(script, current, known, rollback_to)
    for rev in current if path is None else path:
        if rev in known:
            revision = script.get_revision(rev)
            try:
                downgradable[rev] = has_downgrade(revision.path)
            except (OSError, SyntaxError, UnicodeDecodeError):
                downgradable[rev] = False
    return ScriptFacts(heads, known, pending, downgradable, rollback_known=path is not None)


# --------------------------------------------------------------------------- probe

_REV_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


async def _database_revisions(spec: AlembicCheck, ctx: ProbeContext) -> tuple[str, ...] | None:
    table = quote_ident(spec.version_table)
    if spec.version_table_schema:
        table = f"{quote_ident(spec.version_table_schema)}.{table}"

    async def work(con: asyncpg.Connection) -> tuple[str, ...] | None:
        async with read_only(con, spec.statement_timeout):
            try:
                rows = await con.fetch(f"SELECT version_num FROM {table}")
            except asyncpg.UndefinedTableError:
                return None
        return tuple(sorted(str(row[0]) for row in rows))

    return await with_connection(ctx, spec.connection, work)


def _label(rev: str) -> str:
    return rev if _REV_RE.match(rev) else "invalid"


async def run(spec: AlembicCheck, ctx: ProbeContext) -> Outcome:
    """Compare database revision(s) with the head(s), or check the downgrade path."""
    if spec.verify == "downgrade" and spec.rollback_to_required and spec.rollback_to is None:
        return Outcome.errored(Reason.CONFIG, f"checks (id {spec.id}).rollback_to: not set; "
                               "the previous release's revision is needed to check every "
                               "migration back to it")
    try:
        current = await _database_revisions(spec, ctx)
    except ProbeError as exc:
        return Outcome.errored(exc.reason, exc.message)
    where = (f"{spec.version_table_schema}.{spec.version_table}" if spec.version_table_schema
             else spec.version_table)
    if current is None:
        return Outcome.failed(f"version table {where} does not exist (no migration applied)")
    measurements = [Measurement(REVISION.name, 1, {"revision": _label(rev), "source": "database"})
                    for rev in current]
    facts: ScriptFacts | None = None
    if spec.script_location is not None:
        try:
            facts = await ctx.run_blocking(script_facts, spec.script_location, current,
                                           spec.rollback_to)
        except ProbeError as exc:
            return Outcome.errored(exc.reason, exc.message, tuple(measurements))
    shown = ", ".join(current) or "none"
    if spec.verify == "downgrade":
        assert facts is not None
        return await _downgrade_outcome(spec, ctx, current, facts, measurements)

    heads = facts.heads if facts is not None else (str(spec.expected_revision),)
    measurements += [Measurement(REVISION.name, 1, {"revision": _label(rev), "source": "head"})
                     for rev in heads]
    at_head = tuple(sorted(current)) == tuple(sorted(heads))
    measurements.append(Measurement(AT_HEAD.name, 1 if at_head else 0))
    if facts is not None and facts.pending is not None:
        measurements.append(Measurement(PENDING.name, facts.pending))
    result = tuple(measurements)
    if at_head:
        return Outcome.passed(f"database at head {shown}", result)
    if not current:
        return Outcome.failed(f"version table {where} is empty; head {', '.join(heads)}", result)
    if facts is not None:
        unknown = [rev for rev in current if rev not in facts.known]
        if unknown:
            return Outcome.failed(f"database revision {', '.join(unknown)} not in the "
                                  "migrations directory (code older than database?)", result)
        if facts.pending:
            return Outcome.failed(f"database at {shown}, {facts.pending} migration(s) behind "
                                  f"head {', '.join(heads)}", result)
    return Outcome.failed(f"database at {shown}, expected {', '.join(heads)}", result)


async def _downgrade_outcome(spec: AlembicCheck, ctx: ProbeContext, current: tuple[str, ...],
                             facts: ScriptFacts, measurements: list[Measurement]) -> Outcome:
    if not current:
        return Outcome.failed("no revision in the database to roll back from",
                              tuple(measurements))
    if not facts.rollback_known:
        return Outcome.errored(
            Reason.CONFIG, f"checks (id {spec.id}).rollback_to: revision {spec.rollback_to} "
            f"is not below the database revision {', '.join(current)} in "
            f"{spec.script_location}", tuple(measurements))
    missing: list[str] = []
    for rev in list(facts.downgradable) if spec.rollback_to else current:
        available = facts.downgradable.get(rev, False)
        measurements.append(Measurement(DOWNGRADE.name, 1 if available else 0,
                                        {"revision": _label(rev)}))
        if not available:
            missing.append(rev if rev in facts.known else f"{rev} (not in scripts)")
    target = f" back to {spec.rollback_to}" if spec.rollback_to else ""
    if missing:
        return Outcome.failed(f"no downgrade path{target} for {', '.join(missing)}",
                              tuple(measurements))
    if spec.rollback_to:
        summary = (f"{len(facts.downgradable)} migration(s) from {', '.join(current)} back "
                   f"to {spec.rollback_to} have a downgrade()")
    else:
        summary = f"revision {', '.join(current)} has a downgrade()"
    if spec.scratch_connection is None:
        return Outcome.passed(summary, tuple(measurements))
    return await _rehearsal_outcome(spec, ctx, summary, facts.heads, measurements)


async def _rehearsal_outcome(spec: AlembicCheck, ctx: ProbeContext, summary: str,
                             heads: tuple[str, ...], measurements: list[Measurement]
                             ) -> Outcome:
    """Run the rollback rehearsal on the scratch server and judge it."""
    assert spec.scratch_connection is not None and spec.script_location is not None
    plan = rehearsal.Plan(spec.script_location, tuple(spec.alembic_command),
                          spec.sqlalchemy_url, spec.rollback_to or "-1",
                          spec.rehearsal_timeout)
    try:
        client = await database(ctx, spec.scratch_connection)
        await rehearsal.refuse_production(ctx, spec.connection, spec.scratch_connection)
        now = ctx.now()
        await rehearsal.drop_stale(client, spec.scratch_prefix,
                                   now - 2 * spec.rehearsal_timeout)
        result = await rehearsal.rehearse(ctx, client, plan,
                                          rehearsal.scratch_name(spec.scratch_prefix, now))
    except ProbeError as exc:
        return Outcome.errored(exc.reason, f"rollback rehearsal: {exc.message}",
                               tuple(measurements))
    except TimeoutError:
        return Outcome.errored(Reason.TIMEOUT, "rollback rehearsal did not finish within "
                               f"{spec.rehearsal_timeout:g}s", tuple(measurements))
    measurements.append(Measurement(REHEARSAL.name, 1 if result.ok else 0))
    if not result.ok:
        revision = result.revision
        if revision is None and result.step == "downgrade -1" and len(heads) == 1:
            revision = heads[0]  # env.py logs nothing: -1 from a single head runs the head
        which = f" (migration {revision})" if revision else ""
        return Outcome.failed(f"rollback rehearsal on a scratch database: `alembic "
                              f"{result.step}` failed{which}: {result.error}",
                              tuple(measurements))
    return Outcome.passed(f"{summary}; upgrade head, downgrade {plan.downgrade_to}, upgrade "
                          "head succeeded on a scratch database", tuple(measurements))


KIND: ProbeKind[Any] = ProbeKind(
    name="alembic",
    spec=AlembicCheck,
    run=run,
    summary="Alembic revision in the database equals the migration head(s); downgrade path.",
    metrics=(AT_HEAD, REVISION, PENDING, DOWNGRADE, REHEARSAL),
)
