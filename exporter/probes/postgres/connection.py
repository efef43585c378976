"""`kind: postgres` connection: declared once, referred to by name.

The connection's model and its pool live in the PostgreSQL transport
(`exporter.transport.postgres`): probes get the pool's client with
`await database(ctx, name)`, one small bounded pool per connection per runtime, opened
on first use and closed when the runtime stops, or when the connection is removed or
changed on reload. `ctx.connection(name)` gives a `DeclaredDatabase` (the validated
spec; it opens nothing by itself).
"""

from __future__ import annotations

from exporter.model import ConnectionKind
from exporter.transport.postgres import PostgresConnection, close_declared, open_declared

__all__ = ["CONNECTION", "PostgresConnection"]


CONNECTION = ConnectionKind(
    name="postgres",
    spec=PostgresConnection,
    open=open_declared,
    close=close_declared,
    summary="PostgreSQL server: one shared asyncpg pool (small, bounded, command timeout).",
)
