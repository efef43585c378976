"""Running work on a pooled PostgreSQL connection: read-only transactions, identifiers.

The pool, its retry after a server restart and the mapping of asyncpg errors to bounded
reasons belong to the PostgreSQL transport (`exporter.transport.postgres`); this module
keeps what the postgres-family probes share on top of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg

from exporter.model import ProbeContext
from exporter.transport.postgres import database

__all__ = ["quote_ident", "read_only", "with_connection"]

T = TypeVar("T")


async def with_connection(
    ctx: ProbeContext, name: str, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """Run `work(connection)` on the pool of connection `name`; `ProbeError` on failure."""
    client = await database(ctx, name)
    return await client.run(work)


@asynccontextmanager
async def read_only(con: asyncpg.Connection, timeout_s: float) -> AsyncIterator[None]:
    """A READ ONLY transaction with a server-side `statement_timeout` (rolled back)."""
    tx = con.transaction(readonly=True)
    await tx.start()
    try:
        await con.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
        yield
    finally:
        if not con.is_closed():
            await tx.rollback()


def quote_ident(name: str) -> str:
    """Quote a possibly schema-qualified identifier (`schema.table` -> `"schema"."table"`)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))
