"""Pod templates as typed containers: env entries and envFrom references.

Only literal values (`value:`) are kept, and only in `EnvEntry.value` (left out of
`repr`): a sensitive literal must be judged, never shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Source = Literal["value", "secret", "configmap", "field", "resource"]


@dataclass(frozen=True, slots=True)
class EnvEntry:
    """One `env[]` item: its name, where its value comes from, and a literal's value."""

    name: str
    source: Source
    value: str | None = field(default=None, repr=False)
    ref_name: str | None = None
    ref_key: str | None = None
    optional: bool = False

    def origin(self) -> str:
        """`a literal value`, `Secret app/jwt`: where the value comes from (no value)."""
        if self.source == "value":
            return "a literal value"
        if self.source in ("secret", "configmap"):
            kind = "Secret" if self.source == "secret" else "ConfigMap"
            return f"{kind} {self.ref_name} key {self.ref_key}"
        return "the pod's own fields" if self.source == "field" else "its resources"


@dataclass(frozen=True, slots=True)
class EnvFrom:
    """One `envFrom[]` item: every key of a ConfigMap or Secret, with a prefix."""

    source: Literal["configmap", "secret"]
    name: str
    prefix: str = ""
    optional: bool = False

    def origin(self) -> str:
        """`envFrom Secret app-secrets`."""
        return f"envFrom {'Secret' if self.source == 'secret' else 'ConfigMap'} {self.name}"


@dataclass(frozen=True, slots=True)
class Container:
    """A container of a pod template."""

    name: str
    env: tuple[EnvEntry, ...]
    env_from: tuple[EnvFrom, ...]


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """What one workload (or one group of pods) runs: `owner` names it in messages."""

    owner: str
    namespace: str
    containers: tuple[Container, ...]
    config_maps: tuple[str, ...]
    """ConfigMaps the template refers to (env, envFrom and volumes)."""


def _entry(item: Mapping[str, Any]) -> EnvEntry | None:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        return None
    source = item.get("valueFrom")
    if not isinstance(source, dict):
        value = item.get("value")
        return EnvEntry(name, "value", value if isinstance(value, str) else "")
    refs: tuple[tuple[str, Literal["secret", "configmap"]], ...] = (
        ("secretKeyRef", "secret"), ("configMapKeyRef", "configmap"))
    for key, kind in refs:
        ref = source.get(key)
        if isinstance(ref, dict):
            return EnvEntry(name, kind, None, str(ref.get("name", "")), str(ref.get("key", "")),
                            bool(ref.get("optional", False)))
    return EnvEntry(name, "field" if "fieldRef" in source else "resource")


def _env_from(item: Mapping[str, Any]) -> EnvFrom | None:
    prefix = str(item.get("prefix") or "")
    refs: tuple[tuple[str, Literal["secret", "configmap"]], ...] = (
        ("secretRef", "secret"), ("configMapRef", "configmap"))
    for key, kind in refs:
        ref = item.get(key)
        if isinstance(ref, dict) and ref.get("name"):
            return EnvFrom(kind, str(ref["name"]), prefix, bool(ref.get("optional", False)))
    return None


def _container(data: Mapping[str, Any]) -> Container:
    env = tuple(e for e in (_entry(i) for i in data.get("env") or [] if isinstance(i, dict))
                if e is not None)
    env_from = tuple(e for e in (_env_from(i) for i in data.get("envFrom") or []
                                 if isinstance(i, dict)) if e is not None)
    return Container(str(data.get("name", "")), env, env_from)


def template(owner: str, namespace: str, pod_spec: Mapping[str, Any],
             only: Iterable[str] = (), skip: Iterable[str] = ()) -> PodTemplate:
    """The containers of a pod spec (`only`: these container names, else every one but
    those in `skip`)."""
    wanted, unwanted = set(only), set(skip)
    containers = tuple(_container(c) for c in pod_spec.get("containers") or []
                       if isinstance(c, dict) and (c.get("name") in wanted if wanted
                                                   else c.get("name") not in unwanted))
    maps: list[str] = []
    for container in containers:
        maps += [e.ref_name for e in container.env if e.source == "configmap" and e.ref_name]
        maps += [f.name for f in container.env_from if f.source == "configmap"]
    for volume in pod_spec.get("volumes") or []:
        ref = volume.get("configMap") if isinstance(volume, dict) else None
        if isinstance(ref, dict) and ref.get("name"):
            maps.append(str(ref["name"]))
        for projected in ((volume.get("projected") or {}).get("sources") or []
                          if isinstance(volume, dict) else []):
            ref = projected.get("configMap") if isinstance(projected, dict) else None
            if isinstance(ref, dict) and ref.get("name"):
                maps.append(str(ref["name"]))
    return PodTemplate(owner, namespace, containers, tuple(dict.fromkeys(maps)))
