"""Credentials of HTTP kinds: basic auth and bearer tokens by secret reference only.

Every HTTP kind (http, prometheus_query, alertmanager, report) validates its URL and
plain headers here and builds its `Authorization` and secret headers here, under the one
secret policy (`exporter.transport.secrets`): resolved at each run, `error/config`
naming the option when unavailable, never shown.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from yarl import URL

from exporter.model import SecretRef, SecretReference
from exporter.transport.secrets import resolve_secret

__all__ = ["CREDENTIAL_HEADERS", "BasicAuth", "HttpUrl", "check_plain_headers", "check_url",
           "credential_headers"]

CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
    "x-auth-token", "private-token", "x-grafana-api-key", "x-vault-token",
})
"""Header names that carry credentials: only from secret references, never in `headers`."""

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class BasicAuth(BaseModel):
    """HTTP basic authentication; the password only by secret reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1)
    password: SecretReference


def check_url(value: str, *, what: str = "url") -> str:
    """Reject anything but an absolute http(s) URL without credentials in it."""
    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{what} must be an absolute http:// or https:// URL")
    if url.user is not None or url.password is not None:
        raise ValueError(f"{what} must not contain credentials; use basic_auth or bearer_token")
    return value


HttpUrl = Annotated[str, AfterValidator(check_url)]
"""An absolute http(s) URL without credentials in it (an option type)."""


def check_header_names(names: Mapping[str, object]) -> None:
    """Reject header names that are not HTTP tokens."""
    for name in names:
        if not _HEADER_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid header name")


def check_plain_headers(value: dict[str, str], *,
                        alternatives: str = "bearer_token, basic_auth or secret_headers",
                        ) -> dict[str, str]:
    """Valid names, and no header that carries credentials (they need a reference)."""
    check_header_names(value)
    for name in value:
        if name.lower() in CREDENTIAL_HEADERS:
            raise ValueError(f"header {name} carries credentials: use {alternatives} "
                             "(secret references) instead")
    return value


def credential_headers(
    *,
    bearer_token: SecretRef | None = None,
    scheme: str = "Bearer",
    basic_auth: BasicAuth | None = None,
    secret_headers: Mapping[str, SecretRef] | None = None,
    prefix: str = "",
) -> dict[str, str]:
    """The headers carrying credentials (`scheme` prefixes the bearer token), resolved
    now; `ProbeError(config)` naming the option (`{prefix}bearer_token`, ...) when a
    secret is not available."""
    headers: dict[str, str] = {}
    if bearer_token is not None:
        token = resolve_secret(bearer_token, f"{prefix}bearer_token").get_secret_value()
        headers["Authorization"] = f"{scheme} {token}"
    if basic_auth is not None:
        password = resolve_secret(basic_auth.password, f"{prefix}basic_auth.password")
        pair = f"{basic_auth.username}:{password.get_secret_value()}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    for name, ref in (secret_headers or {}).items():
        headers[name] = resolve_secret(ref, f"{prefix}secret_headers.{name}").get_secret_value()
    return headers
