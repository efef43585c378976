"""`kind: postgres` connection: declared once, referred to by name.

The connection's model and its pool live in the PostgreSQL transport
(`exporter.transport.postgres`): probes get the pool's client with
`await database(ctx, name)`, one small bounded pool per connection per runtime, opened
on first use and closed when the runtime stops. `ctx.connection(name)` gives the
validated spec itself (nothing to open or close here).
"""

from __future__ import annotations

from exporter.model import ConnectionKind
from exporter.transport.postgres import PostgresConnection

__all__ = ["CONNECTION", "PostgresConnection"]


async def _describe(spec: PostgresConnection) -> PostgresConnection:
    """The handle of a postgres connection is its spec (the transport owns the pool)."""
    return spec


async def _nothing_to_close(_handle: object) -> None:
    """The pool is closed by the runtime's transport clients, not here."""


CONNECTION = ConnectionKind(
    name="postgres",
    spec=PostgresConnection,
    open=_describe,
    close=_nothing_to_close,
    summary="PostgreSQL server: one shared asyncpg pool (small, bounded, command timeout).",
)
