"""Running one restore drill: scratch database, decrypt, restore, verify, drop.

External tools (`age`, `pg_restore`, `psql`) run as asyncio subprocesses connected by
OS pipes, so a gigabyte of dump never passes through Python. The scratch database is
created, checked and dropped through the PostgreSQL transport's client of the drill
connection; the tools reach the same server with the libpq environment that client
builds from the connection's spec (`PgClient.libpq_env`), never from asyncpg internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.model import Duration, SecretRef
from exporter.probes.backup import encryption
from exporter.probes.backup.encryption import Format
from exporter.probes.backup.records import quote_table

log = logging.getLogger("readiness.backup.drill")

PHASES = ("idle", "prepare", "decrypt", "restore", "verify", "cleanup")


class Verification(BaseModel):
    """What a restored database must contain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tables: list[str] = Field(default=[], description="tables that must exist (schema.table)")
    min_rows: dict[str, int] = Field(
        default={}, description="table -> minimum row count after the restore"
    )
    queries: list[str] = Field(
        default=[], description="SQL whose first column of the first row must be true"
    )
    query_timeout: Duration = Field(default=300.0, gt=0, description="per query")

    @field_validator("tables", "min_rows")
    @classmethod
    def _table_names(cls, value: Any) -> Any:
        for name in value:
            quote_table(name)  # ValueError names the bad table
        return value


class DrillFailure(Exception):
    """The drill ran and did not succeed; `message` is short and secret-free."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def find_tool(name: str, bin_dir: Path | None) -> str:
    """Path of `name`: in `bin_dir`, else PATH, else the newest /usr/lib/postgresql/*/bin."""
    if bin_dir is not None:
        return str(bin_dir / name)
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
                        reverse=True)
    if candidates:
        return str(candidates[0])
    raise DrillFailure(f"{name} not found (set bin_dir)")


@dataclass
class Pipeline:
    """Processes connected stdout -> stdin; the last one loads the scratch database."""

    stages: list[list[str]]
    env: dict[str, str]
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def _spawn(self, capture: bool) -> None:
        read_end: int | None = None
        try:
            for index, argv in enumerate(self.stages):
                last = index == len(self.stages) - 1
                write_end: int | None = None
                next_read: int | None = None
                if not last:
                    next_read, write_end = os.pipe()
                stdout: Any = write_end
                if last:
                    stdout = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
                try:
                    process = await asyncio.create_subprocess_exec(
                        *argv, env=self.env,
                        stdin=read_end if read_end is not None else asyncio.subprocess.DEVNULL,
                        stdout=stdout, stderr=asyncio.subprocess.PIPE)
                finally:
                    if write_end is not None:
                        os.close(write_end)
                    if read_end is not None:
                        os.close(read_end)
                    read_end = next_read
                self.processes.append(process)
        finally:
            if read_end is not None:
                os.close(read_end)

    async def run(self) -> None:
        """Run every stage to the end; `DrillFailure` naming the stage that failed."""
        try:
            await self._spawn(capture=False)
            results = await asyncio.gather(*(p.communicate() for p in self.processes))
        except BaseException:
            await self.kill()
            raise
        # the loader first: an upstream stage killed by SIGPIPE is only a consequence
        ordered = list(zip(self.stages, self.processes, results, strict=True))[::-1]
        for argv, process, (_out, err) in ordered:
            if process.returncode != 0:
                tool = os.path.basename(argv[0])
                raise DrillFailure(f"{tool} exited with status {process.returncode}"
                                   f"{_first_error(err)}")

    async def peek(self) -> bytes:
        """The first `HEAD_BYTES` of the pipeline's output; the stages are then stopped."""
        head = b""
        try:
            await self._spawn(capture=True)
            reader = self.processes[-1].stdout
            assert reader is not None
            while len(head) < encryption.HEAD_BYTES:
                chunk = await reader.read(encryption.HEAD_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
            if not head:  # every stage has ended: collect why
                outputs = await asyncio.gather(*(p.communicate() for p in self.processes))
                reasons = [_first_error(err) for _out, err in outputs if _first_error(err)]
                tool = os.path.basename(self.stages[0][0])
                raise DrillFailure(f"{tool} produced no output{reasons[0] if reasons else ''}")
        finally:
            await self.kill()
        return head

    async def kill(self) -> None:
        """Stop every stage still running and reap it.

        Output still buffered in our pipes is drained first: asyncio pauses reading a
        full pipe, and a paused pipe never reports the end that `wait()` waits for.
        """
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for process in self.processes:
            for stream in (process.stdout, process.stderr):
                if stream is None:
                    continue
                with contextlib.suppress(Exception):
                    while await stream.read(1 << 16):
                        pass
            with contextlib.suppress(Exception):
                await process.wait()


def _first_error(stderr: bytes) -> str:
    for line in stderr.decode("utf-8", "replace").splitlines():
        if "error" in line.lower() or "fatal" in line.lower():
            return ": " + line.strip()[:160]
    return ""


DECOMPRESSORS = {"gzip": "gzip", "zstd": "zstd", "bzip2": "bzip2", "xz": "xz"}
"""Compressed formats the drill unwraps with `<tool> -dc` (streaming)."""


@contextlib.asynccontextmanager
async def identity_file(ref: SecretRef, workdir: Path, tag: str) -> Any:
    """A path to the age identity: the referenced file itself, or a 0600 temp file."""
    if ref.file is not None:
        yield ref.file
        return
    try:
        secret = ref.resolve().get_secret_value()
    except LookupError as exc:
        raise DrillFailure(f"age identity: {exc}") from None
    path = await asyncio.to_thread(_write_identity, workdir, secret, tag)
    try:
        yield path
    finally:
        await asyncio.to_thread(path.unlink, True)


def _write_identity(workdir: Path, secret: str, tag: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"age-identity-{tag}-", dir=workdir)  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return Path(name)


def loader_argv(fmt: Format, database: str, source: Path | None, jobs: int,
                bin_dir: Path | None) -> list[str]:
    """The command that loads a dump of `fmt` (from `source`, or stdin when None)."""
    if fmt.name == "pg_dump-custom":
        argv = [find_tool("pg_restore", bin_dir), "--no-owner", "--no-acl", "--exit-on-error",
                "-d", database]
        if source is not None:
            if jobs > 1:
                argv += ["-j", str(jobs)]
            argv.append(str(source))
        return argv
    if fmt.name == "sql-text":
        return [find_tool("psql", bin_dir), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database,
                "-o", os.devnull, "-f", str(source) if source is not None else "-"]
    raise DrillFailure(f"cannot restore a backup in format {fmt.name}")


async def verify(conn: Any, checks: Verification) -> None:
    """Run the verification against the restored database; `DrillFailure` on a miss."""
    timeout = checks.query_timeout
    missing = []
    for table in checks.tables:
        found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table,
                                    timeout=timeout)
        if not found:
            missing.append(table)
    if missing:
        raise DrillFailure(f"verification: missing table(s) {', '.join(missing[:5])}")
    for table, minimum in checks.min_rows.items():
        try:
            quoted = quote_table(table)
        except ValueError as exc:
            raise DrillFailure(f"verification: {exc}") from None
        try:
            count = await conn.fetchval(f"SELECT count(*) FROM {quoted}", timeout=timeout)
        except asyncpg.PostgresError as exc:
            raise DrillFailure(f"verification: counting {table} failed "
                               f"({type(exc).__name__})") from None
        if count < minimum:
            raise DrillFailure(f"verification: {table} has {count} rows (expected at least "
                               f"{minimum})")
    for index, sql in enumerate(checks.queries, 1):
        try:
            value = await conn.fetchval(sql, timeout=timeout)
        except asyncpg.PostgresError as exc:
            raise DrillFailure(f"verification: query {index} failed "
                               f"({type(exc).__name__})") from None
        if not value:
            raise DrillFailure(f"verification: query {index} returned {value!r}")


async def drop_database(pool: Any, database: str) -> None:
    """Drop a scratch database, ending any session still in it."""
    await pool.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def stale_databases(pool: Any, prefix: str, keep: Sequence[str] = ()) -> list[str]:
    """Scratch databases left behind (name starts with `prefix`), except `keep`."""
    rows = await pool.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                            prefix)
    return [str(r["datname"]) for r in rows if r["datname"] not in keep]

