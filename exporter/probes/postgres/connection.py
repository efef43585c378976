"""`kind: postgres` connection: one shared asyncpg pool per declared database.

Probes (postgres, sql, alembic, ciphertext, backup...) get the pool with
`await ctx.connection(name)`; nothing connects per run. The pool is small
(`min_size`, bounded `max_size`), every statement has a `command_timeout`, and a
connection lost when the server restarts is replaced by the pool on next acquire.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any, Literal

import asyncpg
from pydantic import Field, model_validator

from exporter.model import ConnectionKind, ConnectionSpec, Duration, SecretReference

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresConnection(ConnectionSpec):
    """`connections.<name>` with `kind: postgres`."""

    kind: Literal["postgres"]
    host: str = Field(default="127.0.0.1", min_length=1, description="server host name or IP")
    port: int = Field(default=5432, gt=0, lt=65536)
    database: str = Field(default="postgres", min_length=1)
    user: str = Field(default="postgres", min_length=1)
    password: SecretReference | None = Field(
        default=None,
        description="${ENV} or {file: path}, resolved when the config loads",
    )
    password_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of an environment variable read when connecting; may be unset "
        "at load time (then no password is sent)",
    )
    sslmode: SslMode = Field(default="prefer", description="libpq-style TLS mode")
    sslrootcert: Path | None = Field(
        default=None, description="CA bundle (PEM) for verify-ca / verify-full"
    )
    sslcert: Path | None = Field(default=None, description="client certificate (PEM)")
    sslkey: Path | None = Field(default=None, description="client key (PEM)")
    application_name: str = Field(default="readiness-exporter", max_length=63)
    min_size: int = Field(default=1, ge=0, le=10, description="connections kept open")
    max_size: int = Field(default=4, ge=1, le=50, description="pool upper bound")
    connect_timeout: Duration = Field(default=5.0, gt=0)
    command_timeout: Duration = Field(
        default=30.0, gt=0, description="client-side bound on every statement"
    )
    max_inactive_lifetime: Duration = Field(
        default=0.0, ge=0,
        description="close a pooled connection idle this long (0: keep; checks with long "
        "intervals would otherwise reconnect on every run)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PostgresConnection:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        if self.min_size > self.max_size:
            raise ValueError("min_size must not exceed max_size")
        if self.sslmode in ("verify-ca", "verify-full") and self.sslrootcert is None:
            raise ValueError(f"sslmode {self.sslmode} needs sslrootcert (the CA file)")
        if (self.sslcert is None) != (self.sslkey is None):
            raise ValueError("sslcert and sslkey are given together")
        return self

    def target(self) -> str:
        """host:port/database (safe to show: no credentials)."""
        return f"{self.host}:{self.port}/{self.database}"


def _ssl_context(spec: PostgresConnection) -> ssl.SSLContext:
    """A TLS context for verify-ca / verify-full or a client certificate (reads files)."""
    if spec.sslrootcert is not None:
        context = ssl.create_default_context(cafile=str(spec.sslrootcert))
        context.check_hostname = spec.sslmode == "verify-full"
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if spec.sslcert is not None and spec.sslkey is not None:
        context.load_cert_chain(str(spec.sslcert), str(spec.sslkey))
    return context


async def _ssl_argument(spec: PostgresConnection) -> str | ssl.SSLContext:
    if spec.sslmode == "disable":
        return "disable"
    if spec.sslrootcert is None and spec.sslcert is None:
        return spec.sslmode
    return await asyncio.to_thread(_ssl_context, spec)


async def open_pool(spec: PostgresConnection) -> asyncpg.Pool:
    """Create the pool. Raises `LookupError` (unresolvable password), asyncpg or OS errors."""
    password: str | None = None
    if spec.password is not None:
        password = spec.password.resolve().get_secret_value()
    elif spec.password_env is not None:
        password = os.environ.get(spec.password_env) or None
    kwargs: dict[str, Any] = {}
    if password is not None:
        kwargs["password"] = password
    ssl_arg = await _ssl_argument(spec)
    pool = await asyncpg.create_pool(
        host=spec.host,
        port=spec.port,
        database=spec.database,
        user=spec.user,
        ssl=ssl_arg,
        timeout=spec.connect_timeout,
        command_timeout=spec.command_timeout,
        min_size=spec.min_size,
        max_size=spec.max_size,
        max_inactive_connection_lifetime=spec.max_inactive_lifetime,
        server_settings={"application_name": spec.application_name},
        **kwargs,
    )
    assert isinstance(pool, asyncpg.Pool)
    return pool


async def close_pool(pool: Any) -> None:
    """Close the pool gracefully, terminating it if that takes more than 5 s."""
    try:
        await asyncio.wait_for(pool.close(), timeout=5.0)
    except (TimeoutError, OSError):
        pool.terminate()


CONNECTION = ConnectionKind(
    name="postgres",
    spec=PostgresConnection,
    open=open_pool,
    close=close_pool,
    summary="PostgreSQL server: one shared asyncpg pool (small, bounded, command timeout).",
)
