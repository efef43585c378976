"""`connections: {kind: redis}`: where a Redis server is and how to reach it.

TLS is the shared `tls:` block (`TlsClientOptions`): a connection with a `tls:` block
(`tls: {}` for the system CAs) or a `rediss://` url speaks TLS. The flat spellings of
earlier releases (`tls: true`, `ca_file`, `cert_file`, `key_file`) still load for one
release, with a deprecation warning naming the new option (`exporter.lint`).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, PrivateAttr, ValidatorFunctionWrapHandler, model_validator

from exporter.model import ConnectionSpec, Duration, SecretReference
from exporter.transport.spellings import RenamedOptions
from exporter.transport.tls import TlsClientOptions

__all__ = ["RedisConnection"]

_URL_FIELDS = ("host", "port", "db", "username")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_FLAT_TLS_FILES = ("ca_file", "cert_file", "key_file")


class RedisConnection(ConnectionSpec, RenamedOptions):
    """`kind: redis` connection options."""

    renamed = {name: f"tls.{name}" for name in _FLAT_TLS_FILES}

    kind: Literal["redis"]
    url: str | None = Field(
        default=None,
        description="redis://[user@]host:port/db or rediss:// (TLS); no password in it: "
        "use `password`. Replaces host, port, db and username.",
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="server host name")
    port: int = Field(default=6379, gt=0, lt=65536)
    db: int = Field(default=0, ge=0, description="database number")
    username: str | None = Field(default=None, description="ACL user (Redis 6+)")
    password: SecretReference | None = Field(
        default=None, description="password by reference (${ENV} / {file: path}), read "
        "each time a connection is made")
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
    tls: TlsClientOptions | None = Field(
        default=None, description="connect with TLS with these options (`tls: {}`: "
        "verify against the system CAs); a rediss:// url turns TLS on too")
    connect_timeout: Duration = Field(default=5.0, gt=0)
    command_timeout: Duration = Field(
        default=5.0, gt=0, description="socket timeout of one command"
    )
    max_connections: int = Field(default=4, gt=0, le=64, description="pool size")

    _tls_flag: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _old_tls_flag(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """`tls: true|false` (the old flag) becomes a `tls:` block or none."""
        flag = isinstance(data, dict) and isinstance(data.get("tls"), bool)
        if flag:
            data = dict(data)
            if data.pop("tls"):
                data["tls"] = {}
            elif any(name in data for name in _FLAT_TLS_FILES):
                raise ValueError("tls: false with ca_file/cert_file/key_file: remove those, "
                                 "or write tls: {ca_file: ...} to use TLS")
        model = handler(data)
        if flag and isinstance(model, RedisConnection):
            model.note_tls_flag()
        return model

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
        values.update(host=parts.hostname or "127.0.0.1", port=port, db=int(path or 0))
        if parts.scheme == "rediss":
            values.setdefault("tls", {})
        elif values.get("tls") is not None:
            raise ValueError("a tls block needs a rediss:// url (redis:// is plain text)")
        if parts.username:
            values["username"] = unquote(parts.username)
        return values

    @model_validator(mode="after")
    def _consistent(self) -> RedisConnection:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give either password or password_env, not both")
        return self

    def note_tls_flag(self) -> None:
        """Record that this instance was loaded with the old `tls: true|false` flag."""
        self._tls_flag = True

    def old_spellings(self) -> list[tuple[str, str]]:
        """The renamed TLS files, and the old `tls: true|false` flag."""
        found = super().old_spellings()
        if self._tls_flag:
            found.insert(0, ("tls: true|false", "tls: {...} (a TLS block; none for plain "
                             "text)"))
        return found

    @property
    def address(self) -> str:
        """host:port as configured (the environment may override it when connecting)."""
        return f"{self.host}:{self.port}"
