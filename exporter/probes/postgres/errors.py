"""Running work on a pooled PostgreSQL connection, with errors mapped to bounded reasons.

`with_connection` gets the shared pool from the context, acquires a connection, runs
the caller's coroutine, and turns every expected failure into a `ProbeError`
(connect, dns, tls, auth, timeout, config, protocol). A pooled connection that died
because the server restarted is retried once on a fresh connection, so a check
recovers from a restart without an exporter restart. Messages never carry a password.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from exporter.model import ProbeContext, ProbeError, Reason

T = TypeVar("T")

_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    ConnectionResetError,
    BrokenPipeError,
)


def _server_text(exc: asyncpg.PostgresError) -> str:
    """A short server message for query errors (object names help; capped)."""
    text = str(getattr(exc, "message", "") or type(exc).__name__)
    return text if len(text) <= 160 else text[:157] + "..."


def classify(exc: BaseException, target: str) -> ProbeError:
    """Map an exception from asyncpg/OS to a `ProbeError` with a bounded reason."""
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, LookupError):  # unresolvable secret reference: names the ref only
        return ProbeError(Reason.CONFIG, str(exc))
    if isinstance(exc, asyncpg.QueryCanceledError):
        return ProbeError(Reason.TIMEOUT, f"{target}: query cancelled by statement timeout")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ProbeError(Reason.TIMEOUT, f"{target}: timed out")
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return ProbeError(Reason.AUTH, f"{target}: password authentication failed")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return ProbeError(Reason.AUTH, f"{target}: authentication rejected (pg_hba or role)")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return ProbeError(Reason.AUTH, f"{target}: permission denied: {_server_text(exc)}")
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return ProbeError(Reason.CONFIG, f"{target}: the query tried to write (read-only)")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return ProbeError(Reason.CONFIG, f"{target}: database does not exist")
    if isinstance(exc, asyncpg.DataError):
        # The server quotes the offending value (`invalid input syntax for type integer:
        # "<a column's content>"`): name the error class only, never the value.
        return ProbeError(Reason.CONFIG, f"{target}: the query failed on a data value "
                          f"({type(exc).__name__}, SQLSTATE {exc.sqlstate}); the value is "
                          "not shown")
    if isinstance(exc, asyncpg.SyntaxOrAccessError):
        return ProbeError(Reason.CONFIG, f"{target}: {_server_text(exc)}")
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return ProbeError(Reason.CONNECT, f"{target}: server is starting up or shutting down")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return ProbeError(Reason.CONNECT, f"{target}: too many connections")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ProbeError(Reason.TLS, f"{target}: TLS handshake failed ({type(exc).__name__})")
    if isinstance(exc, socket.gaierror):
        return ProbeError(Reason.DNS, f"{target}: host name does not resolve")
    if isinstance(exc, _LOST):
        return ProbeError(Reason.CONNECT, f"{target}: connection lost")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError(Reason.CONNECT, f"{target}: connection refused")
    if isinstance(exc, ConnectionError) and "SSL" in str(exc):
        return ProbeError(Reason.TLS, f"{target}: server does not accept TLS")
    if isinstance(exc, OSError):
        return ProbeError(Reason.CONNECT, f"{target}: cannot connect ({type(exc).__name__})")
    if isinstance(exc, asyncpg.PostgresError):
        return ProbeError(Reason.PROTOCOL, f"{target}: server error {exc.sqlstate}")
    return ProbeError(Reason.INTERNAL, f"{target}: unexpected {type(exc).__name__}")


async def with_connection(
    ctx: ProbeContext, name: str, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """Run `work(connection)` on a connection of the shared pool `name`."""
    target = f"connection {name}"
    try:
        pool: Any = await ctx.connection(name)
    except Exception as exc:
        raise classify(exc, target) from None
    for attempt in range(2):
        try:
            async with pool.acquire() as con:
                return await work(con)
        except _LOST:
            if attempt == 0:  # a pooled connection died (server restart): retry once
                continue
            raise ProbeError(Reason.CONNECT, f"{target}: connection lost") from None
        except ProbeError:
            raise
        except Exception as exc:
            raise classify(exc, target) from None
    raise AssertionError("unreachable")


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
