"""`connections: {kind: redis}`: one shared redis.asyncio client per declared connection.

The client keeps a small pool of connections that survives across runs; a connection
broken by a server restart is dropped and replaced on the next command (one retry), so
checks recover without restarting the exporter. Errors are mapped to bounded reasons
here, with messages that never include the password.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
from pydantic import Field, model_validator
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from exporter.model import (
    ConnectionKind,
    ConnectionSpec,
    Duration,
    ProbeError,
    Reason,
    SecretReference,
)

_URL_FIELDS = ("host", "port", "db", "tls", "username")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RedisConnection(ConnectionSpec):
    """`kind: redis` connection options."""

    kind: Literal["redis"]
    url: str | None = Field(
        default=None,
        description="redis://[user@]host:port/db or rediss:// (TLS); no password in it: "
        "use `password`. Replaces host, port, db, tls and username.",
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="server host name")
    port: int = Field(default=6379, gt=0, lt=65536)
    db: int = Field(default=0, ge=0, description="database number")
    username: str | None = Field(default=None, description="ACL user (Redis 6+)")
    password: SecretReference | None = Field(
        default=None, description="password by reference (${ENV} / {file: path})"
    )
    host_env: str | None = Field(
        default=None, pattern=_ENV_NAME,
        description="variable holding the host, read when connecting; unset: `host`")
    port_env: str | None = Field(
        default=None, pattern=_ENV_NAME,
        description="variable holding the port, read when connecting; unset: `port`")
    password_env: str | None = Field(
        default=None, pattern=_ENV_NAME,
        description="variable holding the password, read when connecting (not at load); "
        "unset: no password")
    tls: bool = Field(default=False, description="connect with TLS (as rediss://)")
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the server")
    cert_file: Path | None = Field(default=None, description="client certificate (mTLS)")
    key_file: Path | None = Field(default=None, description="client key (mTLS)")
    connect_timeout: Duration = Field(default=5.0, gt=0)
    command_timeout: Duration = Field(
        default=5.0, gt=0, description="socket timeout of one command"
    )
    max_connections: int = Field(default=4, gt=0, le=64, description="pool size")

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("url") is None:
            return data
        url = data["url"]
        if not isinstance(url, str):
            return data  # pydantic reports the type error
        clashing = [name for name in _URL_FIELDS if name in data]
        if clashing:
            raise ValueError(f"give either url or {', '.join(clashing)}, not both")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("url must start with redis:// or rediss://")
        if parts.password is not None:
            raise ValueError("url must not contain a password: use password: ${ENV_NAME}")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError("url has an invalid port") from None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError("url path must be a database number, e.g. /0")
        values = dict(data)
        values.update(host=parts.hostname or "127.0.0.1", port=port, db=int(path or 0),
                      tls=parts.scheme == "rediss")
        if parts.username:
            values["username"] = unquote(parts.username)
        return values

    @model_validator(mode="after")
    def _consistent(self) -> RedisConnection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password is not None and self.password_env is not None:
            raise ValueError("give either password or password_env, not both")
        return self


@dataclass(frozen=True, slots=True)
class RedisHandle:
    """What `ctx.connection()` returns: the client and the address it was opened for."""

    spec: RedisConnection
    client: aioredis.Redis
    host: str
    port: int
    has_credentials: bool

    @property
    def address(self) -> str:
        """host:port for messages (no credentials)."""
        return f"{self.host}:{self.port}"


def _target(spec: RedisConnection) -> tuple[str, int]:
    host = os.environ.get(spec.host_env, "").strip() if spec.host_env else ""
    port_text = os.environ.get(spec.port_env, "").strip() if spec.port_env else ""
    port = spec.port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ProbeError(Reason.CONFIG, f"{spec.port_env} is not a port number")
        port = int(port_text)
    return host or spec.host, port


def ssl_context(spec: RedisConnection) -> ssl.SSLContext:
    """A verifying client TLS context for `spec` (reads files: call in a thread)."""
    context = ssl.create_default_context(
        cafile=str(spec.ca_file) if spec.ca_file is not None else None
    )
    if spec.cert_file is not None and spec.key_file is not None:
        context.load_cert_chain(str(spec.cert_file), str(spec.key_file))
    return context


async def open_client(spec: RedisConnection) -> RedisHandle:
    """Create the shared client (no network I/O happens until the first command)."""
    host, port = _target(spec)
    password: str | None = None
    if spec.password is not None:
        try:
            password = spec.password.resolve().get_secret_value()
        except LookupError as exc:
            raise ProbeError(Reason.CONFIG, f"redis password: {exc}") from None
    elif spec.password_env is not None:
        password = os.environ.get(spec.password_env) or None
    tls: dict[str, Any] = {}
    if spec.tls:
        tls = {
            "ssl": True,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
            "ssl_ca_certs": str(spec.ca_file) if spec.ca_file else None,
            "ssl_certfile": str(spec.cert_file) if spec.cert_file else None,
            "ssl_keyfile": str(spec.key_file) if spec.key_file else None,
        }
    client = aioredis.Redis(
        host=host,
        port=port,
        db=spec.db,
        username=spec.username,
        password=password,
        socket_connect_timeout=spec.connect_timeout,
        socket_timeout=spec.command_timeout,
        max_connections=spec.max_connections,
        protocol=2,
        # A pooled connection broken by a restart fails once and is replaced.
        retry=Retry(NoBackoff(), 1, supported_errors=(rexc.ConnectionError,)),
        client_name="readiness-exporter",
        **tls,
    )
    return RedisHandle(spec=spec, client=client, host=host, port=port,
                       has_credentials=password is not None)


async def close_client(handle: Any) -> None:
    """Close the client and every pooled connection."""
    assert isinstance(handle, RedisHandle)
    await handle.client.aclose()


_DNS_MARKERS = ("Name or service not known", "Temporary failure in name resolution",
                "No address associated", "nodename nor servname")


def probe_error(exc: BaseException, handle: RedisHandle, doing: str) -> ProbeError:
    """Map a client exception to a bounded reason and a short message (no secrets)."""
    if isinstance(exc, ProbeError):
        return exc
    where = handle.address
    text = str(exc)
    if isinstance(exc, rexc.NoPermissionError):
        return ProbeError(Reason.AUTH, f"{doing} on {where}: the user lacks permission")
    if isinstance(exc, rexc.AuthenticationError) or text.startswith(("WRONGPASS", "NOAUTH")):
        return ProbeError(Reason.AUTH, f"{doing} on {where}: authentication failed "
                          "(wrong or missing username/password)")
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return ProbeError(Reason.TIMEOUT, f"{doing} on {where}: timed out")
    if isinstance(exc, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
        detail = _ssl_detail(f"{text} {getattr(exc, 'reason', '')}")
        return ProbeError(Reason.TLS, f"{doing} on {where}: TLS failed ({detail})")
    if isinstance(exc, rexc.ConnectionError | OSError):
        if any(marker in text for marker in _DNS_MARKERS):
            return ProbeError(Reason.DNS, f"{doing}: cannot resolve {handle.host}")
        if "refused" in text.lower() or "Connect call failed" in text:
            return ProbeError(Reason.CONNECT, f"{doing}: connection to {where} refused")
        return ProbeError(Reason.CONNECT, f"{doing}: connection to {where} failed")
    if isinstance(exc, rexc.ResponseError):
        first = text.split(" ", 1)[0][:32]
        return ProbeError(Reason.PROTOCOL, f"{doing} on {where}: server replied {first}")
    return ProbeError(Reason.INTERNAL, f"{doing} on {where}: {type(exc).__name__}")


def _ssl_detail(text: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "certificate verify failed"
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "server does not speak TLS"
    return "handshake error"


CONNECTION = ConnectionKind(
    name="redis",
    spec=RedisConnection,
    open=open_client,
    close=close_client,
    summary="One shared redis.asyncio client (small pool, TLS via rediss://) per connection.",
)
