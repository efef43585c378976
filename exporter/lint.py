"""Warnings about a valid configuration: a secret exposed in a URL (an API key in a query
string), an option written with its deprecated old name, a secret reference that cannot
be resolved now, an `any_of` alternative that can never stand in.

Secret references are resolved at run time (each run of the check that uses them): one
that cannot be resolved now is a warning here, and that check ends as `error/config`
naming the variable or file until it can. `validate --strict` treats every warning as an
error.

A URL is shown in messages, on the board and in logs, and proxies log it too; a
credential belongs in a secret reference (`bearer_token`, `secret_headers`, a
connection's password), never in a query string. Warnings name the option and the
parameter, never its value. `validate` and `check` print them to stderr, `serve` logs
them once at start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qsl, urlsplit

from exporter.alternatives import any_of_warnings
from exporter.model import CheckSpec, ConnectionSpec, SecretRef, connection_references, walk_options
from exporter.transport.spellings import deprecation_warnings

if TYPE_CHECKING:
    from exporter.config import Config

__all__ = ["CREDENTIAL_PARAMETERS", "config_warnings", "log_warnings", "print_warnings",
           "unresolved_secrets"]

CREDENTIAL_PARAMETERS = frozenset({
    "api_key", "apikey", "key", "token", "access_token", "password", "secret", "sig",
    "signature", "auth",
    # Common spellings of the same things.
    "api_token", "auth_token", "id_token", "refresh_token", "private_token", "client_secret",
    "passwd", "pwd", "x_api_key", "x_amz_signature", "x_amz_credential", "x_goog_signature",
    "x_goog_credential",
})
"""Query parameter names (lower case, `-` read as `_`) that carry credentials."""


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a configuration object, with its option path."""
    for where, node in walk_options(value, path):
        if isinstance(node, str):
            yield where, node


def url_warnings(path: str, value: str) -> list[str]:
    """Warnings about one configured string when it is a URL carrying a credential."""
    if "://" not in value:
        return []
    try:
        parts = urlsplit(value.strip())
        password = parts.password
    except ValueError:
        return []
    if not parts.scheme or not parts.netloc:
        return []
    found: list[str] = []
    if password:
        found.append(f"{path}: the URL contains a password; give it by secret reference "
                     "(a password option or a ${ENV} reference) instead")
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    names += [name for name, _ in parse_qsl(parts.fragment, keep_blank_values=True)]
    seen: set[str] = set()
    for name in names:
        if _normal(name) in CREDENTIAL_PARAMETERS and name not in seen:
            seen.add(name)
            found.append(
                f"{path}: query parameter '{name}' looks like a credential; URLs are shown "
                "in messages and logs: send it as a secret header (secret_headers or "
                "bearer_token with a ${ENV} reference) instead")
    return found


def _unresolved(ref: SecretRef, path: str, environ: Mapping[str, str] | None) -> list[str]:
    try:
        ref.resolve(environ, notify=False)
    except LookupError as exc:  # names the reference, never a value
        return [f"{path}: secret reference {ref.describe()} cannot be resolved now: {exc}; "
                "the check ends as error/config until it can (resolved at each run)"]
    return []


def _secret_refs(value: object, path: str) -> Iterator[tuple[str, SecretRef]]:
    for where, node in walk_options(value, path):
        if isinstance(node, SecretRef):
            yield where, node


def unresolved_secrets(checks: list[CheckSpec], connections: Mapping[str, ConnectionSpec],
                       environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret references that enabled checks (or the connections they use) need and that
    cannot be resolved now; each names the option and the variable or file to set."""
    found: list[str] = []
    enabled = [spec for spec in checks if spec.enabled]
    used = {ref.name for spec in enabled for ref in connection_references(spec)}
    for name in sorted(n for n in used if n in connections):
        for path, ref in _secret_refs(connections[name], f"connections.{name}"):
            found.extend(_unresolved(ref, path, environ))
    for spec in enabled:
        for path, ref in _secret_refs(spec, f"checks (id {spec.id})"):
            found.extend(_unresolved(ref, path, environ))
    return found


def config_warnings(cfg: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every warning about `cfg` (checks, then connections, then unresolved secrets and
    alternatives)."""
    found: list[str] = []
    for spec in cfg.checks:
        for path, value in _strings(spec, f"checks (id {spec.id})"):
            found.extend(url_warnings(path, value))
        found.extend(deprecation_warnings(spec, f"checks (id {spec.id})"))
    for name, conn in sorted(cfg.connections.items()):
        for path, value in _strings(conn, f"connections.{name}"):
            found.extend(url_warnings(path, value))
        found.extend(deprecation_warnings(conn, f"connections.{name}"))
    found.extend(unresolved_secrets(list(cfg.checks), cfg.connections, environ))
    found.extend(any_of_warnings(cfg.checks))
    return found


def print_warnings(cfg: Config, stream: TextIO | None = None,
                   environ: Mapping[str, str] | None = None) -> list[str]:
    """`warning: ...` lines on stderr (for `validate` and `check`); returns them."""
    out = sys.stderr if stream is None else stream
    found = config_warnings(cfg, environ)
    for warning in found:
        print(f"warning: {warning}", file=out)
    return found


def log_warnings(cfg: Config, log: logging.Logger) -> None:
    """One log line per warning (for `serve`)."""
    for warning in config_warnings(cfg):
        log.warning("configuration warning", extra={"warning": warning})
