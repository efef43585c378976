"""Name the target a check tried and the input or option that sets it, in error messages.

The loader knows which option of each check (or of the connection it uses) names its
target and which input or variable supplied the value (`expand.Use`). `from_config`
turns that into one hint per check; `explain` appends it to `error/config`, `error/dns`
and `error/connect` outcomes, so `host name does not resolve` becomes
`host name does not resolve; target qbitel.example.internal (checks (id 2.2.2).url:
inputs.app_url; placeholder from the preset: set QBITEL_URL or inputs.app_url)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from exporter.expand import Use
from exporter.inputs import ResolvedInput
from exporter.model import (
    CheckSpec,
    ConnectionSpec,
    Outcome,
    Reason,
    Status,
    connection_references,
)

EXPLAINED = frozenset({Reason.CONFIG, Reason.DNS, Reason.CONNECT})
ABSENT = ("does not exist", "no report matches", "no file matches")
"""A failing check whose evidence is missing also gets its hint (who produces it)."""
TARGET_FIELDS = ("url", "host", "path", "paths", "source", "sources", "file", "records_file",
                 "drill_records", "directory", "keyring", "script_location", "env_file",
                 "required_from")
CONNECTION_TARGETS = ("url", "host", "kubeconfig")

_hints: dict[str, str] = {}


def _origin(use: Use | None, option: str, table: Mapping[str, ResolvedInput]) -> str:
    if use is None:
        return option
    names = [s.removeprefix("inputs.") for s in use.source.split(", ")
             if s.startswith("inputs.")]
    described = [table[n].describe() for n in names if n in table]
    return f"{option}: {'; '.join(described) if described else use.source}"


def _shown(value: Any) -> str:
    if isinstance(value, list) and value:
        return _shown(value[0]) + (f" (+{len(value) - 1} more)" if len(value) > 1 else "")
    if hasattr(value, "path"):
        return str(value.path)
    if hasattr(value, "source"):
        return _shown(value.source)
    return _without_credentials(str(value))


def _without_credentials(text: str) -> str:
    """A URL without its user info and query (either may carry a credential)."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return text.split("?", 1)[0].split("@")[-1]
    return f"{parts.scheme}://{host}{port}{parts.path}"


def hint_for(spec: CheckSpec, connections: Mapping[str, ConnectionSpec],
             uses: Iterable[Use], table: Mapping[str, ResolvedInput]) -> str | None:
    """`target X (option: where it came from)` for this check, or None."""
    by_option: dict[str, Use] = {}
    for use in uses:
        by_option.setdefault(use.option, use)
    prefix = f"checks (id {spec.id})"
    for reference in connection_references(spec):
        conn_name = reference.name
        if conn_name not in connections:
            continue
        connection = connections[conn_name]
        for target in CONNECTION_TARGETS:
            value = getattr(connection, target, None)
            if value:
                option = f"connections.{conn_name}.{target}"
                port = getattr(connection, "port", None)
                shown = f"{value}:{port}" if target == "host" and port else str(value)
                return f"target {shown} ({_origin(by_option.get(option), option, table)})"
        return f"connection {conn_name} (connections.{conn_name})"
    for target in TARGET_FIELDS:
        value = getattr(spec, target, None)
        if value:
            option = f"{prefix}.{target}"
            found = next((u for o, u in by_option.items()
                        if o == option or o.startswith((option + ".", option + "["))), None)
            return f"target {_shown(value)} ({_origin(found, option, table)})"
    return None


def from_config(checks: Iterable[CheckSpec], connections: Mapping[str, ConnectionSpec],
                uses: Iterable[Use], table: Mapping[str, ResolvedInput]) -> dict[str, str]:
    """One hint per check id that has a target."""
    listed = list(uses)
    hints = {}
    for spec in checks:
        hint = hint_for(spec, connections, listed, table)
        if hint is not None:
            hints[spec.id] = hint
    return hints


def install(hints: Mapping[str, str]) -> None:
    """Make `hints` the table `explain` uses (called when a configuration is loaded)."""
    global _hints
    _hints = dict(hints)


def _keyring_hint(spec: CheckSpec) -> str:
    roles = ", ".join(getattr(spec, "roles", []) or []) or "any"
    return (f"create the keyring with `readiness-exporter attest keygen` and add a signer "
            f"with the role(s) {roles} (checks (id {spec.id}).keyring, inputs.keyring)")


def explain(spec: CheckSpec, outcome: Outcome) -> Outcome:
    """`outcome` with its check's target hint appended: config/dns/connect errors, and
    failures because evidence is missing (the hint says who produces it)."""
    hint = _hints.get(spec.id)
    if (outcome.reason in EXPLAINED and hasattr(spec, "roles") and "keyring" in outcome.message
            and "attest keygen" not in outcome.message):
        hint = _keyring_hint(spec)
    missing_evidence = outcome.status is Status.FAIL and any(m in outcome.message
                                                             for m in ABSENT)
    if (outcome.reason not in EXPLAINED and not missing_evidence) or hint is None \
            or hint in outcome.message:
        return outcome
    return dataclasses.replace(outcome, message=f"{outcome.message}; {hint}")
