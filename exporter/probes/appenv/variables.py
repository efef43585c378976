"""What the application's containers define: variable names, where each value comes from,
and the value only when it is not secret (a literal or a ConfigMap value).

A `VarTable` is the same for the Kubernetes mode (one per pod template: every selected
container's `env` and `envFrom`, resolved to key names) and the environment mode (the
exporter's own environment or a dotenv file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.probes.appenv.podspec import Container, EnvEntry, EnvFrom, PodTemplate
from exporter.probes.appenv.reader import AppReader


@dataclass(frozen=True, slots=True)
class Var:
    """One defined variable: set and non-empty (as far as can be known), its readable
    value (literals and ConfigMap values only) and where it comes from."""

    present: bool
    origin: str
    value: str | None = field(default=None, repr=False)
    downward: bool = False
    """From the pod's own fields or resources (downward API), not configuration."""


@dataclass(slots=True)
class VarTable:
    """The variables of one scope (a pod template, or the exporter's environment)."""

    scope: str
    variables: dict[str, Var] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    """envFrom Secrets whose key names cannot be read (connection `secrets:` not data)."""
    complete: bool = True
    """False when `variables` is the whole environment of a process (not a list of names
    the application declares): undocumented names are not judged then."""

    def known(self, name: str) -> bool | None:
        """Whether `name` is defined and non-empty; None when it may come from an
        unreadable Secret."""
        var = self.variables.get(name)
        if var is not None:
            return var.present
        return None if self.unresolved else False


def from_mapping(env: Mapping[str, str], scope: str, *, complete: bool) -> VarTable:
    """A table from a process environment or a dotenv file (values all readable)."""
    return VarTable(scope, {k: Var(bool(v.strip()), scope, v) for k, v in env.items()},
                    complete=complete)


async def _from_env_from(reader: AppReader, ref: EnvFrom, table: VarTable) -> None:
    if ref.source == "configmap":
        data = await reader.config_map(ref.name)
        for key, value in (data or {}).items():
            table.variables[ref.prefix + key] = Var(bool(value.strip()), ref.origin(), value)
        return
    keys = await reader.secret_keys(ref.name)
    if not keys.readable:
        table.unresolved.append(f"Secret {ref.name}, whose key names need "
                                f"{reader.option}: data")
    for key in keys.keys:
        table.variables[ref.prefix + key] = Var(True, ref.origin())


async def _from_entry(reader: AppReader, entry: EnvEntry) -> Var:
    origin = entry.origin()
    if entry.source == "value":
        return Var(bool((entry.value or "").strip()), origin, entry.value)
    if entry.source == "configmap":
        data = await reader.config_map(entry.ref_name or "")
        if data is None or (entry.ref_key or "") not in data:
            return Var(False, f"{origin} (absent)")
        value = data[entry.ref_key or ""]
        return Var(bool(value.strip()), origin, value)
    if entry.source == "secret":
        keys = await reader.secret_keys(entry.ref_name or "")
        if keys.readable and (entry.ref_key or "") not in keys.keys:
            return Var(False, f"{origin} (absent)")
        return Var(True, origin)
    return Var(True, origin, downward=True)


async def _container(reader: AppReader, container: Container, table: VarTable) -> None:
    for ref in container.env_from:
        await _from_env_from(reader, ref, table)
    for entry in container.env:  # env wins over envFrom, the later entry over the earlier
        table.variables[entry.name] = await _from_entry(reader, entry)


async def resolve(reader: AppReader, pod: PodTemplate) -> VarTable:
    """The variables every selected container of `pod` defines (their union)."""
    table = VarTable(pod.owner)
    for container in pod.containers:
        await _container(reader, container, table)
    return table
