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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import ssl
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from exporter.config import ConfigError

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

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash")
        return users


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file; `ConfigError` naming each problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML syntax error: {exc}"]) from None
    try:
        web = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]) from None
    if web.tls_server_config is not None:
        build_ssl_context(web.tls_server_config, path.parent)
    return web


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def build_ssl_context(tls: TlsServerConfig, base: Path) -> ssl.SSLContext:
    """A server context from the TLS settings (paths relative to the web config file)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = _VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(_resolve(tls.cert_file, base), _resolve(tls.key_file, base))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"tls_server_config: cannot load cert_file/key_file: "
                           f"{getattr(exc, 'strerror', None) or type(exc).__name__}"]) from None
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(_resolve(tls.client_ca_file, base))
        except (OSError, ssl.SSLError):
            raise ConfigError(["tls_server_config.client_ca_file: cannot be loaded"]) from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise ConfigError([f"tls_server_config: client_auth_type {tls.client_auth_type} "
                           "needs client_ca_file"])
    return context


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, caching verified pairs.

    bcrypt is slow by design, so a verified (user, password) is remembered as an HMAC
    under a per-process random key (never the password itself); hashing runs in a
    thread so it does not stall the event loop.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._key = os.urandom(32)
        self._verified: set[bytes] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    async def allows(self, header: str | None) -> bool:
        """True when the header carries a known user's correct password."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        hashed = self._users.get(user)
        if not sep or hashed is None:
            return False
        token = hmac.new(self._key, f"{user}\0{password}".encode() + hashed,
                         hashlib.sha256).digest()
        if token in self._verified:
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode("utf-8"), hashed)
        if ok:
            self._verified.add(token)
        return ok
