"""Where the application's pods take one secret variable from, and its value (2.1.1).

Each pod template's containers are searched for the variable (`env` first, then the
`envFrom` sources); each distinct source is read once: a literal's value, a ConfigMap
value, or (connection `secrets: data`, opt-in) the Secret's value. The values are
returned to the caller to be judged at once, never kept or logged here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model import ProbeContext, ProbeError, Reason
from exporter.probes.appenv.podspec import EnvEntry, EnvFrom, PodTemplate
from exporter.probes.appenv.reader import AppReader, open_reader
from exporter.probes.appenv.workload import AppWorkload


@dataclass(frozen=True, slots=True)
class Found:
    """One source of the variable: what it is (no value) and the value, None if unset."""

    origin: str
    value: str | None = field(repr=False)


async def _has(reader: AppReader, ref: EnvFrom, key: str) -> bool:
    if ref.source == "configmap":
        return key in (await reader.config_map(ref.name) or {})
    keys = await reader.secret_keys(ref.name)
    if not keys.readable:
        raise ProbeError(Reason.CONFIG, f"{key} may come from Secret {ref.name} (envFrom): "
                         f"reading it needs {reader.option}: data (opt-in)")
    return key in keys.keys


async def _source(reader: AppReader, pod: PodTemplate, name: str
                  ) -> EnvEntry | EnvFrom | None:
    """The last definition of `name` (env over envFrom, a later one over an earlier)."""
    found: EnvEntry | EnvFrom | None = None
    for container in pod.containers:
        for ref in container.env_from:
            prefix = ref.prefix
            if name.startswith(prefix) and await _has(reader, ref, name[len(prefix):]):
                found = ref
        for entry in container.env:
            if entry.name == name:
                found = entry
    return found


async def _read(reader: AppReader, source: EnvEntry | EnvFrom, name: str) -> str | None:
    if isinstance(source, EnvFrom):
        key = name[len(source.prefix):]
        if source.source == "configmap":
            return (await reader.config_map(source.name) or {}).get(key)
        return await reader.secret_value(source.name, key)
    if source.source == "value":
        return source.value
    if source.source == "configmap":
        return (await reader.config_map(source.ref_name or "") or {}).get(source.ref_key or "")
    if source.source == "secret":
        return await reader.secret_value(source.ref_name or "", source.ref_key or "")
    raise ProbeError(Reason.CONFIG, f"{name} comes from {source.origin()}: not a secret "
                     "value the exporter can read")


async def app_secret(ctx: ProbeContext, workload: AppWorkload, name: str) -> list[Found]:
    """The value of variable `name` from each distinct source the application's pods use
    (an unset variable is a `Found` with value None, naming the pod template)."""
    reader = await open_reader(ctx, workload)
    found: list[Found] = []
    seen: set[str] = set()
    for pod in await reader.templates(workload.source or "pods"):
        source = await _source(reader, pod, name)
        if source is None:
            found.append(Found(f"{name} in {pod.owner}", None))
            continue
        origin = source.origin()
        if isinstance(source, EnvFrom):
            origin += f" key {name[len(source.prefix):]}"
        if isinstance(source, EnvEntry) and source.source == "value":
            origin = f"a literal value in {pod.owner}"
        if origin in seen:
            continue
        seen.add(origin)
        value = await _read(reader, source, name)
        found.append(Found(f"{name} ({origin})", value or None))
    return found
