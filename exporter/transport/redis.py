"""The Redis transport: one redis.asyncio client per connection per runtime.

`await redis_client(ctx, name)` gives the `RedisClient` of a declared connection
(`ctx.client(REDIS, RedisOptions(name, connection))` underneath): a pooled client (a
connection broken by a server restart is replaced on the next command, one retry), its
TLS context from the shared `TlsClientOptions`, the password resolved
under the one secret policy each time a connection is made (a rotated secret is used by
the next connection), and `error()` turning any redis-py failure into a bounded
`ProbeError` through `REDIS_ERRORS`. Messages name `host:port`, never the password.
There is one client per connection name; a reload that changes the declaration closes
the old client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from exporter.model import ConnectionKind, ProbeContext, ProbeError, Reason
from exporter.transport.base import Transport, TransportRuntime
from exporter.transport.errors import BASE_ERRORS, ErrorRow, ErrorTable
from exporter.transport.redis_connection import RedisConnection
from exporter.transport.secrets import resolve_secret
from exporter.transport.tls import TlsClientOptions

__all__ = [
    "CONNECTION",
    "REDIS",
    "REDIS_ERRORS",
    "PermissionDenied",
    "Redis",
    "RedisClient",
    "RedisConnection",
    "RedisOptions",
    "RedisTransport",
    "ReplyError",
    "redis_client",
]

Redis = aioredis.Redis
"""The client type a `RedisClient` holds (probes annotate with it, not with redis-py)."""
ReplyError = rexc.ResponseError
"""An error reply of the server (`-ERR ...`, `-NOPERM ...`): what a probe may judge."""
PermissionDenied = rexc.NoPermissionError
"""The `-NOPERM` reply: the ACL user may not run the command."""

_ERROR_CODE = re.compile(r"^[A-Z][A-Z_]{1,31}\b")


def _reply_code(exc: BaseException) -> str:
    """The error code a server reply starts with (ERR, NOPERM, LOADING...), never more."""
    text = str(exc.args[0]) if exc.args else ""
    match = _ERROR_CODE.match(text)
    return match.group(0) if match else "error"


REDIS_ERRORS = BASE_ERRORS.extend([
    ErrorRow(rexc.AuthenticationError, Reason.AUTH,
             "{target} rejected the credentials (wrong or missing username/password)"),
    ErrorRow(rexc.AuthenticationWrongNumberOfArgsError, Reason.AUTH,
             "{target} rejected the credentials (the server has no password set)"),
    ErrorRow(rexc.NoPermissionError, Reason.AUTH,
             "{target}: the user lacks permission for this command"),
    ErrorRow(rexc.BusyLoadingError, Reason.PROTOCOL,
             "{target} is loading its dataset and cannot answer yet"),
    ErrorRow(rexc.ConnectionError, Reason.CONNECT, "connection to {target} failed"),
    ErrorRow(rexc.TimeoutError, Reason.TIMEOUT, "{target} did not answer{within}"),
    ErrorRow(rexc.ResponseError, Reason.PROTOCOL, "{target} replied {detail}", _reply_code),
    ErrorRow(rexc.InvalidResponse, Reason.PROTOCOL, "{target} sent an invalid reply"),
    ErrorRow(rexc.RedisError, Reason.PROTOCOL, "request to {target} failed ({type})"),
])
"""redis-py's exceptions on top of the shared rows."""


def _underlying(exc: BaseException) -> BaseException:
    """The OS, ssl or secret error a redis-py connection error wraps, else `exc`.

    redis-py raises its own `ConnectionError` for a refused port, an unknown host and a
    rejected certificate alike; the cause (or the error it was raised while handling)
    tells them apart.
    """
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError) and \
            not isinstance(exc, rexc.AuthenticationError | rexc.BusyLoadingError):
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, ProbeError | OSError | TimeoutError):
            return inner
    return exc


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """What selects a Redis client: the declared connection and its name."""

    name: str
    connection: RedisConnection

    @property
    def option_path(self) -> str:
        """Where the connection is configured (`connections.<name>`)."""
        return f"connections.{self.name}"


class _SecretCredentials(CredentialProvider):
    """Username and password read from their references at each new connection."""

    def __init__(self, options: RedisOptions) -> None:
        self._options = options

    def password(self) -> str | None:
        spec = self._options.connection
        if spec.password is not None:
            option = f"{self._options.option_path}.password"
            return resolve_secret(spec.password, option).get_secret_value()
        if spec.password_env is not None:
            return os.environ.get(spec.password_env) or None
        return None

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.password()
        if password is None:
            # An empty tuple makes redis-py send no AUTH at all.
            return cast("tuple[str]", ())
        username = self._options.connection.username
        return (username, password) if username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


class _TlsConnection(aioredis.Connection):
    """A redis connection wrapped in the runtime's TLS context, with its own SNI name."""

    def __init__(self, *, tls_context: ssl.SSLContext, server_name: str | None,
                 **kwargs: Any) -> None:
        self._tls_context = tls_context
        self._server_name = server_name
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        return {"host": self.host, "port": self.port, "ssl": self._tls_context,
                "server_hostname": self._server_name or self.host}


@dataclass(frozen=True, slots=True)
class RedisClient:
    """A typed handle: the pooled client and where it connects."""

    client: aioredis.Redis
    host: str
    port: int
    has_credentials: bool
    connection: RedisConnection
    tls_context: ssl.SSLContext | None
    tls: TlsClientOptions | None
    fingerprint: tuple[object, ...] | None

    @property
    def address(self) -> str:
        """host:port for messages (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def error(self, exc: BaseException, doing: str) -> ProbeError:
        """The bounded error for `exc`, raised while `doing` (e.g. "PING")."""
        err = REDIS.classify(exc, self.address, self.connection.command_timeout)
        if isinstance(exc, ProbeError) or err.reason is Reason.CONFIG:
            return err
        return ProbeError(err.reason, f"{doing}: {err.message}", err.measurements)

    async def unauthenticated_reply(self) -> str:
        """Send PING on a new connection without credentials; the first reply line.

        Raises the library's error (classify it with `error()`).
        """
        spec = self.connection
        server_name = None
        if self.tls_context is not None:
            server_name = (self.tls.server_name if self.tls else None) or self.host
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.tls_context,
                                    server_hostname=server_name),
            spec.connect_timeout,
        )
        try:
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), spec.command_timeout)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if not line:
            raise ProbeError(Reason.PROTOCOL,
                             f"{self.address} closed the connection without reply")
        return line.decode("utf-8", "replace").strip()


def _target(options: RedisOptions) -> tuple[str, int]:
    spec = options.connection
    host = os.environ.get(spec.host_env, "").strip() if spec.host_env else ""
    port_text = os.environ.get(spec.port_env, "").strip() if spec.port_env else ""
    port = spec.port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ProbeError(Reason.CONFIG, f"{options.option_path}.port_env: "
                             f"{spec.port_env} is not a port number (set it to one)")
        port = int(port_text)
    return host or spec.host, port


class RedisTransport(Transport[RedisOptions, RedisClient]):
    """redis.asyncio clients: one per declared connection per runtime."""

    name: ClassVar[str] = "redis"
    errors: ClassVar[ErrorTable] = REDIS_ERRORS

    def key(self, options: RedisOptions) -> str:
        # One client per connection name: a reload that changes the declaration
        # replaces the client instead of leaving the old one open (see `redis_client`).
        return options.name

    async def open(self, options: RedisOptions, runtime: TransportRuntime) -> RedisClient:
        spec = options.connection
        host, port = _target(options)
        credentials = _SecretCredentials(options)
        has_credentials = credentials.password() is not None  # fails early when unset
        pool_options: dict[str, Any] = {}
        context: ssl.SSLContext | None = None
        if spec.tls is not None:
            context = await runtime.ssl_context(spec.tls, f"{options.option_path}.tls")
            pool_options = {"connection_class": _TlsConnection, "tls_context": context,
                            "server_name": spec.tls.server_name}
        pool = aioredis.ConnectionPool(
            host=host, port=port, db=spec.db, credential_provider=credentials,
            socket_connect_timeout=spec.connect_timeout, socket_timeout=spec.command_timeout,
            max_connections=spec.max_connections, protocol=2,
            # A pooled connection broken by a restart fails once and is replaced.
            retry=Retry(NoBackoff(), 1, supported_errors=(rexc.ConnectionError,)),
            client_name="readiness-exporter", **pool_options)
        return RedisClient(
            client=aioredis.Redis(connection_pool=pool), host=host, port=port,
            has_credentials=has_credentials, connection=spec, tls_context=context,
            tls=spec.tls, fingerprint=spec.tls.fingerprint() if spec.tls else None)

    async def close(self, handle: RedisClient) -> None:
        await handle.client.aclose()
        await handle.client.connection_pool.disconnect()

    def is_stale(self, handle: RedisClient) -> bool:
        # A rotated CA or client certificate file is picked up at the next run.
        return handle.tls is not None and handle.fingerprint != handle.tls.fingerprint()

    def classify(self, exc: BaseException, target: str,
                 timeout: float | None = None) -> ProbeError:
        return self.errors.classify(_underlying(exc), target, timeout)


REDIS = RedisTransport()
"""The Redis transport (`await ctx.client(REDIS, RedisOptions(name, connection))`)."""


async def redis_client(ctx: ProbeContext, name: str) -> RedisClient:
    """The runtime's client of the `kind: redis` connection `name`.

    When a reload changed the connection's declaration, the client opened for the old
    one is closed and a new one opened. `ProbeError(config)` when `name` is not a redis
    connection.
    """
    declared = await ctx.connection(name)
    if not isinstance(declared, RedisConnection):
        raise ProbeError(Reason.CONFIG, f"connection: {name} is not a redis connection")
    options = RedisOptions(name, declared)
    handle = await ctx.client(REDIS, options)
    if handle.connection != declared:
        await ctx.refresh_client(REDIS, options)
        handle = await ctx.client(REDIS, options)
    return handle


async def _declared(spec: RedisConnection) -> RedisConnection:
    """A named connection is its declaration: the client belongs to the runtime's
    transport registry (`ctx.client(REDIS, ...)`), opened on first use."""
    return spec


async def _nothing_to_close(_: Any) -> None:
    """The transport registry closes the client when the runtime stops."""


CONNECTION = ConnectionKind(
    name="redis",
    spec=RedisConnection,
    open=_declared,
    close=_nothing_to_close,
    summary="One shared redis.asyncio client (small pool, TLS via a tls block or "
            "rediss://) per connection.",
)
"""`connections: {kind: redis}` (the registry's connection kind)."""
