"""Rehearsing a rollback (8.2): `upgrade head`, `downgrade`, `upgrade head` on a scratch
database that the rehearsal creates and drops.

The migrations run through the `alembic` command line (the application's own alembic and
`env.py`, named by `alembic_command`) as a subprocess, so no migration code runs inside
the exporter. The database is reached through libpq's environment (`PGHOST`, `PGUSER`,
`PGPASSWORD`...): the temporary ini file holds only a credential-free `sqlalchemy.url`,
and no password is ever on a command line, in a file, a message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from exporter.model import ProbeContext, ProbeError, Reason
from exporter.transport.postgres import PgClient, database, server_identity

_STEP_RE = re.compile(r"Running (upgrade|downgrade) ([A-Za-z0-9_, ()]*?) -> ([A-Za-z0-9_, ()]+)")
_ERROR_RE = re.compile(r"^(FAILED: |[A-Za-z_][\w.]*(Error|Exception|Warning)\b)")
_MAX_ERROR = 240

_INI = """\
[alembic]
script_location = {script_location}
sqlalchemy.url = {url}

[loggers]
keys = root,alembic

[handlers]
keys = stderr

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers = stderr

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_stderr]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = plain

[formatter_plain]
format = %(levelname)s [%(name)s] %(message)s
"""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to rehearse and how to run alembic."""

    script_location: Path
    command: tuple[str, ...]
    url: str
    downgrade_to: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Result:
    """The rehearsal's verdict: the failed step, the migration it ran, alembic's error."""

    ok: bool
    step: str = ""
    revision: str | None = None
    error: str = ""


def write_ini(plan: Plan) -> Path:
    """A 0600 alembic ini in a new private directory, without any credential (blocking:
    thread); the caller removes the directory."""
    path = Path(tempfile.mkdtemp(prefix="readiness-alembic-")) / "alembic.ini"
    text = _INI.format(script_location=str(plan.script_location.resolve()).replace("%", "%%"),
                       url=plan.url.replace("%", "%%"))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret value replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def failed_revision(output: str) -> str | None:
    """The migration alembic was running last (from its `Running ... A -> B` lines)."""
    matches = _STEP_RE.findall(output)
    if not matches:
        return None
    direction, source, target = matches[-1]
    revision = source if direction == "downgrade" else target
    return revision.split(",")[0].strip(" ()") or None


def error_line(output: str) -> str:
    """alembic's (or the driver's) error: the last exception line of the output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_RE.match(line):
            return line[:_MAX_ERROR]
    return (lines[-1] if lines else "no output")[:_MAX_ERROR]


async def _alembic(plan: Plan, ini: Path, env: dict[str, str], args: Sequence[str],
                   secrets: Sequence[str]) -> tuple[int, str]:
    """Run `alembic -c ini ARGS`; (exit status, redacted output)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *plan.command, "-c", str(ini), *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
            cwd=str(ini.parent))
    except OSError as exc:
        raise ProbeError(Reason.CONFIG, f"cannot run {plan.command[0]}: {exc.strerror}") \
            from None
    try:
        out, _ = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return int(process.returncode or 0), redact(out.decode("utf-8", "replace"), secrets)


async def refuse_production(ctx: ProbeContext, production: str, scratch: str) -> None:
    """`ProbeError(config)` when the scratch server is the production database's cluster
    (same system identifier, or same address and port): migrations never rehearse there."""
    scratch_identity = await server_identity(await database(ctx, scratch))
    if scratch_identity.same_cluster(await server_identity(await database(ctx, production))):
        raise ProbeError(Reason.CONFIG, f"refusing to rehearse: scratch_connection {scratch} "
                         f"is the same cluster as connection {production}")


def scratch_name(prefix: str, now: float) -> str:
    """`<prefix><epoch ms>`: unique per run, and its age is readable from the name."""
    return f"{prefix}{int(now * 1000)}"


async def drop_stale(client: PgClient, prefix: str, older_than: float) -> None:
    """Drop scratch databases of `prefix` whose epoch-ms name is older than `older_than`
    (left by a killed exporter); younger ones may belong to a running rehearsal."""
    async def work(con: asyncpg.Connection) -> None:
        rows = await con.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                               prefix)
        for row in rows:
            stamp = str(row["datname"])[len(prefix):]
            if stamp.isdigit() and int(stamp) / 1000 < older_than:
                await con.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')

    await client.run(work)


async def rehearse(ctx: ProbeContext, client: PgClient, plan: Plan, database: str) -> Result:
    """Create `database`, run the three steps there, drop it; the first failure wins.

    Raises `ProbeError` when the scratch server cannot be used (connect, auth, create).
    """
    env = client.libpq_env(database, "readiness-exporter-alembic")
    secrets = [client.password.get_secret_value()] if client.password is not None else []
    await client.run(lambda con: con.execute(f'CREATE DATABASE "{database}"'))
    ini: Path | None = None
    try:
        ini = await ctx.run_blocking(write_ini, plan)
        steps = (("upgrade", "head"), ("downgrade", plan.downgrade_to), ("upgrade", "head"))
        async with asyncio.timeout(plan.timeout):
            for verb, target in steps:
                status, output = await _alembic(plan, ini, env, (verb, target), secrets)
                if status != 0:
                    step = f"{verb} {target}"
                    return Result(False, step, failed_revision(output), error_line(output))
        return Result(True)
    finally:
        if ini is not None:
            await ctx.run_blocking(shutil.rmtree, ini.parent, True)
        await client.run(lambda con: con.execute(
            f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
