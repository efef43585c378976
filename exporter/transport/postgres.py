"""The PostgreSQL transport: one asyncpg pool per declared connection per runtime.

A probe names a `kind: postgres` connection; `await database(ctx, name)` gives its
`PgClient`, whose `run(work)` acquires a pooled connection, runs `work`, retries once
when a pooled connection died (a server restart) and turns every failure into a
`ProbeError` through `PG_ERRORS`. TLS uses the shared `TlsClientOptions` (`tls:` block);
the libpq spellings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) still load for one
release with a deprecation warning. The password is resolved under the one secret
policy each time the pool is (re)built and never appears in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import asyncpg
from pydantic import (
    Field,
    SecretStr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from exporter.model import (
    ConnectionSpec,
    Duration,
    ProbeContext,
    ProbeError,
    Reason,
    SecretRef,
    SecretReference,
)
from exporter.transport.base import Transport, TransportRuntime
from exporter.transport.errors import BASE_ERRORS, ErrorRow, ErrorTable
from exporter.transport.secrets import resolve_secret
from exporter.transport.spellings import RenamedOptions
from exporter.transport.tls import TlsClientOptions

__all__ = [
    "PG_ERRORS",
    "POSTGRES",
    "DeclaredDatabase",
    "PgClient",
    "PgOptions",
    "PostgresConnection",
    "PostgresTransport",
    "classify",
    "close_declared",
    "database",
    "open_declared",
]

T = TypeVar("T")

TlsSetting = Literal["disable", "prefer"] | TlsClientOptions
"""`disable`, `prefer` (opportunistic, unverified) or a TLS block (required, verified)."""

_LIBPQ_TLS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def _tls_from_libpq(data: dict[str, Any]) -> Any:
    """The `tls` value meaning what the old libpq options meant (see docs/probes/postgres.md)."""
    mode = data.pop("sslmode", "prefer")
    files = {new: data.pop(old) for old, new in (("sslrootcert", "ca_file"),
                                                 ("sslcert", "cert_file"),
                                                 ("sslkey", "key_file")) if old in data}
    if mode in ("verify-ca", "verify-full") and "ca_file" not in files:
        raise ValueError(f"sslmode {mode} needs sslrootcert (the CA file); better: write "
                         "tls: {ca_file: ...}")
    if mode == "disable":
        return "disable"
    if not files and mode in ("allow", "prefer"):
        return "prefer"
    return {**files, "insecure_skip_verify": "ca_file" not in files}


_LIBPQ_RENAMED = {"sslmode": "tls", "sslrootcert": "tls.ca_file", "sslcert": "tls.cert_file",
                  "sslkey": "tls.key_file"}
"""Old libpq spellings (accepted for one release) -> what to write instead."""


class PostgresConnection(ConnectionSpec, RenamedOptions):
    """`connections.<name>` with `kind: postgres`.

    The libpq TLS options are translated into `tls` (not a plain rename: `sslmode` picks
    the shape), so `renamed` stays empty and `old_spellings` reports them.
    """

    kind: Literal["postgres"]
    host: str = Field(default="127.0.0.1", min_length=1, description="server host name or IP")
    port: int = Field(default=5432, gt=0, lt=65536)
    database: str = Field(default="postgres", min_length=1)
    user: str = Field(default="postgres", min_length=1)
    password: SecretReference | None = Field(
        default=None,
        description="${ENV} or {file: path}, checked when the config loads and read again "
        "each time the pool is built",
    )
    password_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of an environment variable read when connecting; may be unset "
        "at load time (then no password is sent)",
    )
    tls: TlsSetting = Field(
        default="prefer",
        description="disable; prefer (TLS when the server offers it, unverified: the "
        "default); or a block {ca_file, cert_file, key_file, insecure_skip_verify}: TLS "
        "required, the certificate and host name verified unless insecure_skip_verify",
    )
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

    @model_validator(mode="wrap")
    @classmethod
    def _libpq_spellings(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        used: tuple[str, ...] = ()
        if isinstance(data, dict) and any(old in data for old in _LIBPQ_TLS):
            if "tls" in data:
                raise ValueError("sslmode/sslrootcert/sslcert/sslkey are the old spellings "
                                 "of tls: write only tls")
            data = dict(data)
            used = tuple(old for old in _LIBPQ_TLS if old in data)
            data["tls"] = _tls_from_libpq(data)
        model = handler(data)
        if used and isinstance(model, PostgresConnection):
            model.note_old_spellings(used)
        return model

    @field_validator("tls")
    @classmethod
    def _no_server_name(cls, value: TlsSetting) -> TlsSetting:
        if isinstance(value, TlsClientOptions) and value.server_name is not None:
            raise ValueError("server_name is not supported for PostgreSQL: the host name "
                             "connected to is the one verified (set host instead)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PostgresConnection:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        if self.min_size > self.max_size:
            raise ValueError("min_size must not exceed max_size")
        return self

    def old_spellings(self) -> list[tuple[str, str]]:
        """(old, new) for every libpq TLS option this connection was loaded with."""
        return [(old, _LIBPQ_RENAMED[old]) for old in self._old_spellings]

    def target(self) -> str:
        """host:port/database (safe to show: no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.database}"

    def libpq_sslmode(self) -> str:
        """The libpq `sslmode` equivalent of `tls` (for pg_restore / psql)."""
        if isinstance(self.tls, str):
            return self.tls
        return "require" if self.tls.insecure_skip_verify else "verify-full"


# --------------------------------------------------------------------------- errors


def _server_text(exc: BaseException) -> str:
    """The server's message for errors about objects (names help; capped). Never used for
    data errors, whose text quotes column values."""
    text = str(getattr(exc, "message", "") or type(exc).__name__)
    return text if len(text) <= 160 else text[:157] + "..."


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", None) or "?")


PG_ERRORS = BASE_ERRORS.extend([
    ErrorRow(asyncpg.InvalidPasswordError, Reason.AUTH,
             "{target}: password authentication failed"),
    ErrorRow(asyncpg.InvalidAuthorizationSpecificationError, Reason.AUTH,
             "{target}: authentication rejected (pg_hba.conf or role)"),
    ErrorRow(asyncpg.InsufficientPrivilegeError, Reason.AUTH,
             "{target}: permission denied: {detail}", _server_text),
    ErrorRow(asyncpg.CannotConnectNowError, Reason.CONNECT,
             "{target}: server is starting up or shutting down"),
    ErrorRow(asyncpg.AdminShutdownError, Reason.CONNECT,
             "{target}: connection lost (server shut down)"),
    ErrorRow(asyncpg.ConnectionDoesNotExistError, Reason.CONNECT, "{target}: connection lost"),
    ErrorRow(asyncpg.PostgresConnectionError, Reason.CONNECT, "{target}: connection failed"),
    ErrorRow(asyncpg.TooManyConnectionsError, Reason.CONNECT, "{target}: too many connections"),
    ErrorRow(asyncpg.InterfaceError, Reason.CONNECT, "{target}: connection lost ({type})"),
    ErrorRow(asyncpg.QueryCanceledError, Reason.TIMEOUT,
             "{target}: query cancelled by statement timeout"),
    ErrorRow(asyncpg.ReadOnlySQLTransactionError, Reason.CONFIG,
             "{target}: the query tried to write (read-only)"),
    ErrorRow(asyncpg.InvalidCatalogNameError, Reason.CONFIG, "{target}: database does not exist"),
    ErrorRow(asyncpg.DataError, Reason.CONFIG,
             "{target}: the query failed on a data value ({type}, SQLSTATE {detail}); the "
             "value is not shown", _sqlstate),
    ErrorRow(asyncpg.SyntaxOrAccessError, Reason.CONFIG, "{target}: {detail}", _server_text),
    ErrorRow(asyncpg.PostgresError, Reason.PROTOCOL, "{target}: server error {detail}",
             _sqlstate),
])
"""asyncpg's and PostgreSQL's exceptions on top of the shared rows."""

_LOST = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.InterfaceError,
         ConnectionResetError, BrokenPipeError)
"""A pooled connection died (server restart): worth one retry on a fresh connection."""


def classify(exc: BaseException, target: str, timeout: float | None = None) -> ProbeError:
    """The bounded error for an asyncpg/OS exception raised while talking to `target`."""
    if type(exc) is ConnectionError and "SSL" in "".join(map(str, exc.args)):
        # asyncpg: "PostgreSQL server at ... rejected SSL upgrade" (tls required)
        return ProbeError(Reason.TLS, f"{target}: the server does not accept TLS")
    return PG_ERRORS.classify(exc, target, timeout)


# --------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class PgOptions:
    """What selects a pool: the connection's name and its spec."""

    name: str
    spec: PostgresConnection

    @property
    def target(self) -> str:
        """What messages name: `host:port/database (connection NAME)`."""
        return f"{self.spec.target()} (connection {self.name})"


@dataclass(eq=False)
class PgClient:
    """A typed handle: the pool of one connection, and how to reach its server directly."""

    pool: asyncpg.Pool
    options: PgOptions
    ssl: str | ssl.SSLContext
    password: SecretStr | None
    fingerprint: tuple[object, ...]

    @property
    def spec(self) -> PostgresConnection:
        """The connection's configuration (host, port, database, user: no secret)."""
        return self.options.spec

    @property
    def target(self) -> str:
        """host:port/database (connection NAME)."""
        return self.options.target

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work(connection)` on a pooled connection; `ProbeError` on any failure.

        A pooled connection that died (server restart) is retried once on a fresh one.
        A run cancelled while it holds a connection (its timeout) closes that connection:
        handing it back would wait for the server to confirm the cancelled query, which a
        silent or slow server never does within the check's timeout.
        """
        for attempt in range(2):
            try:
                async with self.pool.acquire() as con:
                    try:
                        return await work(con)
                    except asyncio.CancelledError:
                        con.terminate()  # the pool opens a new connection when next needed
                        raise
            except ProbeError:
                raise
            except _LOST as exc:
                if attempt == 0:
                    continue
                raise classify(exc, self.target) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise classify(exc, self.target, self.spec.command_timeout) from None
        raise AssertionError("unreachable")

    async def connect(self, database: str) -> asyncpg.Connection:
        """A direct connection to another `database` on the same server (same user, TLS and
        password); the caller closes it. `ProbeError` when it cannot be opened."""
        kwargs: dict[str, Any] = {}
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                host=self.spec.host, port=self.spec.port, user=self.spec.user,
                database=database, ssl=self.ssl, timeout=self.spec.connect_timeout,
                command_timeout=self.spec.command_timeout, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            where = f"{self.spec.host}:{self.spec.port}/{database} (connection " \
                    f"{self.options.name})"
            raise classify(exc, where, self.spec.connect_timeout) from None
        return conn

    def libpq_env(self, database: str, application_name: str) -> dict[str, str]:
        """Environment for libpq tools (`pg_restore`, `psql`) reaching `database` on the same
        server: the password goes in PGPASSWORD, never on a command line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=self.spec.host, PGPORT=str(self.spec.port), PGUSER=self.spec.user,
                   PGDATABASE=database, PGSSLMODE=self.spec.libpq_sslmode(),
                   PGAPPNAME=application_name,
                   PGCONNECT_TIMEOUT=str(max(1, int(self.spec.connect_timeout))))
        tls = self.spec.tls
        if isinstance(tls, TlsClientOptions):
            for variable, path in (("PGSSLROOTCERT", tls.ca_file), ("PGSSLCERT", tls.cert_file),
                                   ("PGSSLKEY", tls.key_file)):
                if path is not None:
                    env[variable] = str(Path(path).resolve())
        if self.password is not None:
            env["PGPASSWORD"] = self.password.get_secret_value()
        return env


def _password(options: PgOptions) -> SecretStr | None:
    spec = options.spec
    if spec.password is not None:
        return resolve_secret(spec.password, f"connections.{options.name}.password")
    if spec.password_env is not None:
        try:  # may be unset: then no password is sent (libpq's own fallbacks apply)
            value = SecretRef(env=spec.password_env).resolve()
        except LookupError:
            return None
        return value if value.get_secret_value() else None
    return None


class PostgresTransport(Transport[PgOptions, PgClient]):
    """PostgreSQL with asyncpg: one small bounded pool per connection per runtime."""

    name: ClassVar[str] = "postgres"
    errors: ClassVar[ErrorTable] = PG_ERRORS

    def key(self, options: PgOptions) -> Hashable:
        return options

    def classify(self, exc: BaseException, target: str,
                 timeout: float | None = None) -> ProbeError:
        return classify(exc, target, timeout)

    async def open(self, options: PgOptions, runtime: TransportRuntime) -> PgClient:
        spec = options.spec
        password = _password(options)
        tls = spec.tls
        ssl_arg: str | ssl.SSLContext
        fingerprint: tuple[object, ...] = ()
        if isinstance(tls, TlsClientOptions):
            ssl_arg = await runtime.ssl_context(tls, f"connections.{options.name}.tls")
            fingerprint = tls.fingerprint()
        else:
            ssl_arg = tls
        kwargs: dict[str, Any] = {}
        if password is not None:
            kwargs["password"] = password.get_secret_value()
        try:
            pool = await asyncpg.create_pool(
                host=spec.host, port=spec.port, database=spec.database, user=spec.user,
                ssl=ssl_arg, timeout=spec.connect_timeout,
                command_timeout=spec.command_timeout, min_size=spec.min_size,
                max_size=spec.max_size,
                max_inactive_connection_lifetime=spec.max_inactive_lifetime,
                server_settings={"application_name": spec.application_name}, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc, options.target, spec.connect_timeout) from None
        assert isinstance(pool, asyncpg.Pool)
        return PgClient(pool=pool, options=options, ssl=ssl_arg, password=password,
                        fingerprint=fingerprint)

    async def close(self, handle: PgClient) -> None:
        """Close the pool gracefully, terminating it if that takes more than 5 s."""
        try:
            await asyncio.wait_for(handle.pool.close(), timeout=5.0)
        except (TimeoutError, OSError):
            handle.pool.terminate()

    def is_stale(self, handle: PgClient) -> bool:
        # a closed pool, or a rotated CA / client certificate file
        tls = handle.spec.tls
        rotated = isinstance(tls, TlsClientOptions) and handle.fingerprint != tls.fingerprint()
        return handle.pool.is_closing() or rotated


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """Which cluster a client reaches: its system identifier and `address:port`; either
    may be unknown (no privilege to read the identifier, a unix socket)."""

    system: str | None
    address: str | None

    def same_cluster(self, other: ServerIdentity) -> bool:
        """True when a known system identifier or server address:port is the same."""
        return (self.system is not None and self.system == other.system) or \
            (self.address is not None and self.address == other.address)


async def _identity(con: asyncpg.Connection) -> ServerIdentity:
    system: str | None = None
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        async with con.transaction():  # a refused read must not spoil the connection
            system = await con.fetchval(
                "SELECT system_identifier::text FROM pg_control_system()")
    row = await con.fetchrow("SELECT inet_server_addr()::text AS a, inet_server_port() AS p")
    address = f"{row['a']}:{row['p']}" if row["a"] is not None else None
    return ServerIdentity(system, address)


async def server_identity(client: PgClient) -> ServerIdentity:
    """The identity of the cluster `client` reaches (one query on one connection)."""
    return await client.run(_identity)


POSTGRES = PostgresTransport()
"""The PostgreSQL transport (`await database(ctx, name)` in probes)."""


@dataclass(eq=False)
class DeclaredDatabase:
    """What `ctx.connection(name)` gives for a `kind: postgres` connection: its spec, and
    the pools opened for it, so that a connection removed or changed on reload closes its
    pool (`close_declared`) instead of leaving it open until the runtime stops."""

    spec: PostgresConnection
    clients: list[PgClient] = field(default_factory=list)


async def open_declared(spec: PostgresConnection) -> DeclaredDatabase:
    """The `open` of the postgres connection kind: nothing connects yet."""
    return DeclaredDatabase(spec)


async def close_declared(declared: DeclaredDatabase) -> None:
    """The `close` of the postgres connection kind: close the pools opened for it."""
    clients, declared.clients = declared.clients, []
    for client in clients:
        await POSTGRES.close(client)


async def database(ctx: ProbeContext, name: str) -> PgClient:
    """The client of the `kind: postgres` connection `name`; `ProbeError` when it is not
    declared, not a postgres connection, or cannot be opened."""
    try:
        declared = await ctx.connection(name)
    except KeyError:
        raise ProbeError(Reason.CONFIG, f"no connection named {name!r} under connections: "
                         "(declare it, or change the check's connection)") from None
    if not isinstance(declared, DeclaredDatabase):
        kind = getattr(declared, "kind", type(declared).__name__)
        raise ProbeError(Reason.CONFIG, f"connection {name!r} is not a postgres connection "
                         f"({kind})")
    client = await ctx.client(POSTGRES, PgOptions(name, declared.spec))
    if client not in declared.clients:
        declared.clients[:] = [c for c in declared.clients if not c.pool.is_closing()]
        declared.clients.append(client)
    return client
