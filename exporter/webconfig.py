"""`--web.config.file` in exporter-toolkit's format: TLS and bcrypt basic auth.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_ca_file: ca.crt              # optional
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12                  # TLS10 | TLS11 | TLS12 | TLS13
      max_version: TLS13
    basic_auth_users:
      alice: $2y$10$...                   # bcrypt hash

The file is validated completely when it is loaded: a problem is a `ConfigError` whose
messages start with the file name and the option path
(`web.yml: tls_server_config.cert_file: ...`), never a traceback at start or a 500 later.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from exporter.basic_auth import BasicAuth as BasicAuth  # re-exported: its historic home
from exporter.config import ConfigError
from exporter.transport.files import read_bounded

MAX_WEB_CONFIG_BYTES = 1 << 20
"""The web configuration file is refused above this size."""
MAX_PEM_BYTES = 16 << 20
"""Certificate, key and CA files are refused above this size."""
MAX_PATH_BYTES = 4096
MAX_ERRORS = 20
_ECHO = 64  # characters of a user name echoed in an error message

TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# `$2a$`, `$2b$` or `$2y$`, a two-digit cost, 22 characters of salt and 31 of checksum in
# bcrypt's base64 alphabet (`./A-Za-z0-9`).
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})")
_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def bcrypt_hash_problem(hashed: str) -> str | None:
    """Why `hashed` is not a usable bcrypt hash, or None when it is."""
    match = _BCRYPT.fullmatch(hashed)
    if match is None:
        return ("must be a bcrypt hash: $2a$, $2b$ or $2y$, a two-digit cost, '$' and "
                "53 characters of ./A-Za-z0-9 (make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')")
    cost, salt, checksum = int(match[1]), match[2], match[3]
    if not 4 <= cost <= 31:
        return f"bcrypt cost {cost} is outside 4..31"
    # 22 characters carry 16 bytes and 31 carry 23: the unused low bits must be zero.
    if _B64.index(salt[-1]) % 16 or _B64.index(checksum[-1]) % 4:
        return "must be a bcrypt hash: its salt or checksum is not canonical bcrypt base64"
    try:  # the library must accept the salt (checked at cost 4: about a millisecond)
        bcrypt.hashpw(b"", f"$2b$04${salt}".encode())
    except ValueError:
        return "must be a bcrypt hash: the bcrypt library rejects its salt"
    return None


def _path_problem(value: Path) -> str | None:
    text = str(value)
    if not text or text == ".":
        return "must name a file"
    if "\0" in text:
        return "must not contain a NUL character"
    if len(os.fsencode(text)) > MAX_PATH_BYTES:
        return f"path is longer than {MAX_PATH_BYTES} bytes"
    return None


class TlsServerConfig(BaseModel):
    """`tls_server_config:`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: Literal[
        "NoClientCert", "RequestClientCert", "RequireAnyClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion | None = None

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _usable_path(cls, value: Path | None) -> Path | None:
        if value is not None and (problem := _path_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("client_auth_type")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in _CLIENT_AUTH:
            raise ValueError(
                f"{value} (accepting a client certificate without verifying it) is not "
                "supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )
        return value


class WebConfig(BaseModel):
    """The whole web configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    _ssl_context: ssl.SSLContext | None = PrivateAttr(default=None)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        problems = []
        for user, hashed in users.items():
            shown = user[:_ECHO] + ("..." if len(user) > _ECHO else "")
            if not user:
                problems.append("a user name must not be empty")
            elif ":" in user:
                problems.append(f"user {shown!r}: a user name cannot contain ':' "
                                "(basic auth splits the name from the password there)")
            elif (problem := bcrypt_hash_problem(hashed)) is not None:
                problems.append(f"user {shown!r}: {problem}")
        if problems:
            raise ValueError("; ".join(problems[:MAX_ERRORS]))
        return users

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context built (and so checked) when the file was loaded."""
        return self._ssl_context

    def attach_ssl_context(self, context: ssl.SSLContext) -> None:
        """Keep the server TLS context the loader built from `tls_server_config`."""
        self._ssl_context = context


class _WebConfigLoader(yaml.SafeLoader):
    """Safe YAML without aliases (nothing in the file needs them) or duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed here", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain string", key_node.start_mark)
            key = self.construct_object(key_node)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {str(key)[:_ECHO]!r}", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse(path: Path) -> Any:
    origin = str(path)
    try:
        text = read_bounded(path, MAX_WEB_CONFIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{origin}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{origin}: cannot be read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{origin}: not UTF-8 text"]) from None
    except ValueError as exc:
        raise ConfigError([f"{origin}: {exc}"]) from None
    try:
        return yaml.load(text, Loader=_WebConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{origin}:{where} YAML syntax error: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{origin}: nested too deeply"]) from None


def _format_error(origin: str, error: Any) -> str:
    loc = ".".join(str(part)[:_ECHO] for part in error["loc"] if part != "[key]")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required"
    return f"{origin}: {loc}: {message}" if loc else f"{origin}: {message}"


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file, including the TLS files; `ConfigError` naming each
    problem as `FILE: option.path: reason`."""
    origin = str(path)
    data = _parse(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{origin}: the top level must be a mapping"])
    try:
        web = WebConfig.model_validate(data)
    except ValidationError as exc:
        errors = [_format_error(origin, e) for e in exc.errors()]
        raise ConfigError(errors[:MAX_ERRORS]) from None
    except RecursionError:
        raise ConfigError([f"{origin}: nested too deeply"]) from None
    if web.tls_server_config is not None:
        try:
            web.attach_ssl_context(build_ssl_context(web.tls_server_config, path.parent))
        except ConfigError as exc:
            raise ConfigError([f"{origin}: {e}" for e in exc.errors]) from None
    return web


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def _checked_file(field: str, path: Path, base: Path) -> Path:
    """`path` resolved against `base`, if it is a readable regular file of bounded size."""
    resolved = _resolve(path, base)
    where = f"tls_server_config.{field}"
    try:
        read_bounded(resolved, MAX_PEM_BYTES)
    except FileNotFoundError:
        raise ConfigError([f"{where}: cannot load {resolved}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{where}: cannot load {resolved}: {exc.strerror}"]) from None
    except ValueError as exc:
        raise ConfigError([f"{where}: cannot load {resolved}: {exc}"]) from None
    return resolved


def _no_passphrase() -> bytes:
    raise ValueError("encrypted private keys are not supported")


def build_ssl_context(tls: TlsServerConfig, base: Path) -> ssl.SSLContext:
    """A server context from the TLS settings (paths relative to the web config file)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version is not None:
        if _VERSIONS[tls.max_version] < _VERSIONS[tls.min_version]:
            raise ConfigError(["tls_server_config.max_version: is lower than min_version"])
        context.maximum_version = _VERSIONS[tls.max_version]
    cert = _checked_file("cert_file", tls.cert_file, base)
    key = _checked_file("key_file", tls.key_file, base)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except (OSError, ValueError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([f"tls_server_config.cert_file/key_file: cannot load {cert} with "
                           f"{key}: not a PEM certificate chain and its unencrypted private "
                           f"key, or they do not match ({reason})"]) from None
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        ca = _checked_file("client_ca_file", tls.client_ca_file, base)
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError):
            raise ConfigError([f"tls_server_config.client_ca_file: cannot load {ca}: not PEM "
                               "certificates"]) from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise ConfigError([f"tls_server_config.client_auth_type: {tls.client_auth_type} "
                           "needs client_ca_file"])
    return context
