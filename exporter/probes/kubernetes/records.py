"""Kubernetes objects decoded straight into compact records, read like their JSON.

A LIST page or a WATCH event is decoded by msgspec into the typed records below: only
the fields an assertion reads are built, every other field (managedFields, env, probes,
volumes, most annotations...) is skipped by the decoder without allocating anything.
A record is a slotted struct (no per-object dict, not tracked by the garbage
collector) that answers `get`, `[]`, `in`, `keys` and `items` by the JSON field names,
so the assertions read it exactly as they read the JSON mapping. A field that is absent
or `null` reads as absent; a record is always true (the part was there), even when none
of its fields was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from exporter.probes.kubernetes.exemptions import ANNOTATION as EXEMPTION_ANNOTATION

__all__ = ["Annotations", "Meta", "Object", "Page", "Pod", "Record", "Version", "Workload",
           "ident", "metadata_of"]

_NAMES: dict[type, dict[str, str]] = {}


def _names(cls: type[Record]) -> dict[str, str]:
    """JSON field name -> attribute name of a record type."""
    names = _NAMES.get(cls)
    if names is None:
        names = dict(zip(cls.__struct_encode_fields__, cls.__struct_fields__, strict=True))
        _NAMES[cls] = names
    return names


class Record(msgspec.Struct, gc=False, omit_defaults=True):
    """A decoded object part, read like the JSON mapping it came from."""

    def get(self, key: str, default: Any = None) -> Any:
        """The field named `key` in JSON, or `default` when absent or null."""
        if key in self.__struct_fields__:  # JSON name = attribute name (fast path)
            value = getattr(self, key)
            return default if value is None else value
        attr = _names(type(self)).get(key)  # a renamed field
        if attr is None:
            return default
        value = getattr(self, attr)
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove the field named `key` (it reads as absent afterwards) and return it;
        Secret data is dropped this way as soon as it has been read."""
        value = self.get(key)
        if value is None:
            return default
        setattr(self, _names(type(self))[key], None)
        return value

    def keys(self) -> list[str]:
        """The JSON names of the fields present."""
        return [name for name, attr in _names(type(self)).items()
                if getattr(self, attr) is not None]

    def items(self) -> list[tuple[str, Any]]:
        """(JSON name, value) of the fields present."""
        return [(name, value) for name, attr in _names(type(self)).items()
                if (value := getattr(self, attr)) is not None]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        """Always true: the part was present in the object. (`obj.get("metadata") or {}`
        asks this of every object, so it must not walk the fields.)"""
        return True

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record | Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


Mapping.register(Record)


class Annotations(Record):
    """The two annotations an assertion reads; every other one is skipped unread."""

    exemption: str | None = msgspec.field(default=None, name=EXEMPTION_ANNOTATION)
    inject: str | None = msgspec.field(default=None, name="sidecar.istio.io/inject")

    def get(self, key: str, default: Any = None) -> Any:
        """The annotation named `key`, or `default`."""
        attr = _names(type(self)).get(key)
        value = None if attr is None else getattr(self, attr)
        return default if value is None else value


class Meta(Record):
    """The metadata fields the assertions use."""

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: Annotations | None = None
    generation: int | None = None


_ABSENT: Any = object()
_NO_MAPPING: Mapping[str, Any] = {}


def metadata_of(obj: Mapping[str, Any] | Record) -> Any:
    """`obj.metadata` of a record (its attribute: no `get` calls) or of a JSON mapping;
    None when absent. The assertions ask this of every object, several times a cycle."""
    value = getattr(obj, "metadata", _ABSENT)
    return obj.get("metadata") if value is _ABSENT else value


def ident(obj: Mapping[str, Any] | Record) -> tuple[str, str]:
    """(namespace, name) of a record or a JSON object, "" for what is absent."""
    metadata = metadata_of(obj)
    if type(metadata) is Meta:
        return (metadata.namespace or "", metadata.name or "")
    metadata = metadata or _NO_MAPPING
    return (metadata.get("namespace") or "", metadata.get("name") or "")


class Object(Record):
    """Any kind without a record of its own: metadata trimmed, the rest as JSON."""

    metadata: Meta | None = None
    spec: Any = None
    status: Any = None
    data: Any = None
    type: Any = None
    rules: Any = None
    subjects: Any = None
    roleRef: Any = None
    aggregationRule: Any = None


class PodContainer(Record):
    """A Pod's container: its name and command line (4.4.2 reads the API server's)."""

    name: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None


class PodSpec(Record):
    """A Pod's containers."""

    containers: list[PodContainer] | None = None
    initContainers: list[PodContainer] | None = None


class PodStatus(Record):
    """A Pod's phase."""

    phase: str | None = None


class Pod(Record):
    """A Pod: metadata, container names and commands, phase."""

    metadata: Meta | None = None
    spec: PodSpec | None = None
    status: PodStatus | None = None


class TemplateContainer(Record):
    """A pod template's container: its name and resources."""

    name: str | None = None
    resources: dict[str, Any] | None = None


class TemplateSpec(Record):
    """A pod template's containers and placement."""

    containers: list[TemplateContainer] | None = None
    initContainers: list[TemplateContainer] | None = None
    affinity: dict[str, Any] | None = None
    topologySpreadConstraints: list[Any] | None = None


class Template(Record):
    """A workload's pod template."""

    metadata: Meta | None = None
    spec: TemplateSpec | None = None


class WorkloadSpec(Record):
    """A workload's replicas and pod template."""

    replicas: int | None = None
    template: Template | None = None


class WorkloadStatus(Record):
    """The rollout fields of a workload's status."""

    replicas: int | None = None
    availableReplicas: int | None = None
    readyReplicas: int | None = None
    updatedReplicas: int | None = None
    observedGeneration: int | None = None
    currentRevision: str | None = None
    updateRevision: str | None = None
    desiredNumberScheduled: int | None = None


class Workload(Record):
    """A Deployment, StatefulSet or DaemonSet as the workload assertions read it."""

    metadata: Meta | None = None
    spec: WorkloadSpec | None = None
    status: WorkloadStatus | None = None


class ListMeta(msgspec.Struct, gc=False):
    """A list's `metadata`: where the next page starts and the list's version."""

    continue_: str | None = msgspec.field(default=None, name="continue")
    resourceVersion: str | None = None


T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], gc=False):
    """One LIST page of records of type T."""

    metadata: ListMeta | None = None
    items: list[T] | None = None


class _VersionMeta(msgspec.Struct, gc=False):
    resourceVersion: str | None = None


class Version(msgspec.Struct, gc=False):
    """Just an object's `metadata.resourceVersion` (a watch event's position)."""

    metadata: _VersionMeta | None = None


class Event(msgspec.Struct, gc=False):
    """One WATCH event; its object is decoded by kind afterwards."""

    type: str
    object: msgspec.Raw
