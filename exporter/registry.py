"""Probe kind name -> (configuration model, probe), and connection kinds.

A new probe family is one module under `exporter/probes/` that defines a `KIND`
(`ProbeKind`) and, if it shares a client, a `CONNECTION` (`ConnectionKind`), plus one
line below. Modules are imported on first use, so `check --only 2.1.1` does not pay for
the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from exporter.model import ConnectionKind, ProbeKind

# kind name -> "module:attribute"
PROBE_KINDS: dict[str, str] = {
    "env": "exporter.probes.env:KIND",
    "secret_strength": "exporter.probes.secret_strength:KIND",
    "file": "exporter.probes.file:KIND",
    "config_value": "exporter.probes.config_value:KIND",
    # issue 3: TLS and HTTP
    "tls_file": "exporter.probes.tls.files:KIND",
    "tls_endpoint": "exporter.probes.tls.endpoint:KIND",
    "http": "exporter.probes.http.probe:KIND",
    # issue 4: data tier
    "postgres": "exporter.probes.postgres.probe:KIND",
    "sql": "exporter.probes.postgres.sql:KIND",
    "alembic": "exporter.probes.postgres.alembic:KIND",
    "retention": "exporter.probes.postgres.retention:KIND",
    "ciphertext": "exporter.probes.postgres.ciphertext:KIND",
    "redis": "exporter.probes.redis.probe:KIND",
    "broker": "exporter.probes.broker:KIND",
    # issue 5: backups and recovery
    "backup": "exporter.probes.backup.probe:KIND",
    "rpo": "exporter.probes.backup.rpo:KIND",
    "restore_drill": "exporter.probes.backup.drill:KIND",
    # issue 6: Kubernetes
    "kubernetes": "exporter.probes.kubernetes.probe:KIND",
    # issue 8: the rest of the checklist
    "report": "exporter.probes.report:KIND",
    "secret_scan": "exporter.probes.secret_scan:KIND",
    "logs": "exporter.probes.logs:KIND",
    "attestation": "exporter.probes.attestation.probe:KIND",
    "prometheus_query": "exporter.probes.prometheus_query:KIND",
    "alertmanager": "exporter.probes.alertmanager:KIND",
    "aggregate": "exporter.probes.aggregate:KIND",
    "docker": "exporter.probes.docker:KIND",  # issue 11 (7.2)
    "qradar_events": "exporter.probes.qradar:KIND",  # issue 11 (2.4.2, SIEM_TYPE=qradar)
}

# connection kind name -> "module:attribute"
CONNECTION_KINDS: dict[str, str] = {
    "postgres": "exporter.probes.postgres.connection:CONNECTION",  # issue 4
    "redis": "exporter.probes.redis.probe:CONNECTION",  # issue 4, 15
    "kubernetes": "exporter.probes.kubernetes.connection:CONNECTION",  # issue 6
}

# Subcommands a plug-in adds to the CLI: command name -> (help, module). The module
# defines `add_arguments(parser)` and `run(args) -> int`; the core CLI names no plug-in.
PLUGIN_COMMANDS: dict[str, tuple[str, str]] = {
    "attest": ("sign a checklist item (attestation)", "exporter.probes.attestation.cli"),
}


@dataclass(frozen=True)
class PluginCommand:
    """One plug-in subcommand, loaded: its help line and its two functions."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def plugin_commands() -> list[PluginCommand]:
    """Every plug-in subcommand whose module imports (a missing optional one is left out)."""
    commands = []
    for name, (help_text, module_name) in PLUGIN_COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        commands.append(PluginCommand(name, help_text, module.add_arguments, module.run))
    return commands


def _load(ref: str) -> Any:
    module_name, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@cache
def probe_kind(name: str) -> ProbeKind[Any]:
    """The probe kind called `name`; `KeyError` when there is none."""
    kind = _load(PROBE_KINDS[name])
    assert isinstance(kind, ProbeKind) and kind.name == name, name
    return kind


@cache
def connection_kind(name: str) -> ConnectionKind[Any]:
    """The connection kind called `name`; `KeyError` when there is none."""
    kind = _load(CONNECTION_KINDS[name])
    assert isinstance(kind, ConnectionKind) and kind.name == name, name
    return kind


async def shutdown_kinds(names: Iterable[str]) -> None:
    """Run the deprecated `shutdown` hook of each named kind that has one.

    Kinds with a `lifespan` need nothing here: the runtime context exits lifespans in
    `RuntimeContext.aclose()`. This stays for one release for kinds that still keep
    module state (`restore_drill`).
    """
    for name in sorted(set(names)):
        hook = probe_kind(name).shutdown
        if hook is not None:
            await hook()


def probe_kind_names() -> list[str]:
    """Every known probe kind, sorted."""
    return sorted(PROBE_KINDS)


def connection_kind_names() -> list[str]:
    """Every known connection kind, sorted."""
    return sorted(CONNECTION_KINDS)
