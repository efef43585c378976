"""The resource kinds the probes list, and how their REST paths are built."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from sys import intern
from typing import Any

import msgspec

from exporter.probes.kubernetes.exemptions import ANNOTATION as EXEMPTION_ANNOTATION
from exporter.probes.kubernetes.records import Meta, Object, Page, Pod, Record, Workload


@dataclass(frozen=True, slots=True)
class Resource:
    """One listable resource kind (`deployments` in `apps/v1`)."""

    plural: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True

    @property
    def name(self) -> str:
        """`deployments.apps`, `pods`: how RBAC and `kubectl` name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None) -> str:
        """The collection path, cluster-wide or in one namespace."""
        if namespace is not None and self.namespaced:
            return f"{self.base}/namespaces/{namespace}/{self.plural}"
        return f"{self.base}/{self.plural}"


NAMESPACES = Resource("namespaces", namespaced=False)
PODS = Resource("pods")
SERVICES = Resource("services")
SECRETS = Resource("secrets")
RESOURCE_QUOTAS = Resource("resourcequotas")
DEPLOYMENTS = Resource("deployments", "apps")
STATEFULSETS = Resource("statefulsets", "apps")
DAEMONSETS = Resource("daemonsets", "apps")
HPAS = Resource("horizontalpodautoscalers", "autoscaling", "v2")
PDBS = Resource("poddisruptionbudgets", "policy")
NETWORK_POLICIES = Resource("networkpolicies", "networking.k8s.io")
ROLES = Resource("roles", "rbac.authorization.k8s.io")
ROLE_BINDINGS = Resource("rolebindings", "rbac.authorization.k8s.io")
CLUSTER_ROLES = Resource("clusterroles", "rbac.authorization.k8s.io", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("clusterrolebindings", "rbac.authorization.k8s.io",
                                 namespaced=False)
PEER_AUTHENTICATIONS = Resource("peerauthentications", "security.istio.io", "v1beta1")
DESTINATION_RULES = Resource("destinationrules", "networking.istio.io", "v1beta1")
EXTERNAL_SECRETS = Resource("externalsecrets", "external-secrets.io", "v1beta1")

WORKLOAD_RESOURCES = {"Deployment": DEPLOYMENTS, "StatefulSet": STATEFULSETS,
                      "DaemonSet": DAEMONSETS}


# --------------------------------------------------------------------------- projections
# Items are decoded page by page straight into the records of `records.py`, which hold
# only what the assertions read, so a 100,000-pod cluster costs tens of megabytes, not
# the full objects (managedFields, last-applied annotations, env...).

KEPT_ANNOTATIONS = frozenset({EXEMPTION_ANNOTATION, "sidecar.istio.io/inject"})
"""The annotations an assertion reads (`records.Annotations`); every other one (Istio
status blobs, checksums, last-applied configurations) is skipped by the decoder."""

_PAGE_DECODERS: dict[type[Record], msgspec.json.Decoder[Any]] = {}


class Shared:
    """Keeps one copy of structurally equal parts of a page's objects.

    The replicas of a workload carry equal labels, containers and status; the workloads of
    a team equal resources and affinity. Read-only views share one object for each.
    """

    __slots__ = ("_labels", "_seen")

    def __init__(self) -> None:
        self._seen: dict[tuple[type, bytes], Any] = {}
        self._labels: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def __call__(self, value: Any) -> Any:
        if not value:
            return value
        return self._seen.setdefault((type(value), _ENCODE(value)), value)

    def labels(self, labels: dict[str, str]) -> dict[str, str]:
        """One interned copy of equal label maps."""
        key = tuple(labels.items())
        found = self._labels.get(key)
        if found is None:
            found = self._labels[key] = _interned(labels)
        return found


class _Unshared(Shared):
    """No memo (a single watch event): strings are still interned."""

    __slots__ = ()

    def __call__(self, value: Any) -> Any:
        return value

    def labels(self, labels: dict[str, str]) -> dict[str, str]:
        return _interned(labels)


_ENCODE = msgspec.json.Encoder().encode
_UNSHARED = _Unshared()


def _interned(labels: dict[str, str]) -> dict[str, str]:
    """Label maps with interned strings: 100,000 pods share a handful of distinct values."""
    return {intern(k): intern(v) for k, v in labels.items()}


def _finish_meta(meta: Meta | None, share: Shared) -> None:
    if meta is None:
        return
    if meta.namespace is not None:
        meta.namespace = intern(meta.namespace)
    if meta.labels:
        meta.labels = share.labels(meta.labels)
    annotations = meta.annotations
    if annotations is not None:
        if annotations.exemption is None and annotations.inject is None:
            meta.annotations = None
        else:
            meta.annotations = share(annotations)


def finish(item: Record, share: Shared = _UNSHARED) -> Record:
    """Intern a decoded record's strings and keep one copy of its parts equal to parts
    already seen by `share`; returns `item`."""
    if isinstance(item, Pod):
        _finish_meta(item.metadata, share)
        item.spec = share(item.spec)
        item.status = share(item.status)
    elif isinstance(item, Workload):
        _finish_meta(item.metadata, share)
        spec = item.spec
        if spec is not None and spec.template is not None:
            _finish_meta(spec.template.metadata, share)
            spec.template = share(spec.template)
        item.status = share(item.status)
    elif isinstance(item, Object):
        _finish_meta(item.metadata, share)
        for field_name in _OBJECT_PARTS:
            value = getattr(item, field_name)
            if value:
                setattr(item, field_name, share(value))
    return item


_OBJECT_PARTS = tuple(f for f in Object.__struct_fields__ if f != "metadata")


def record_type(resource: Resource) -> type[Record]:
    """The record an item of `resource` is decoded into."""
    if resource is PODS:
        return Pod
    if resource in (DEPLOYMENTS, STATEFULSETS, DAEMONSETS):
        return Workload
    return Object


def decode_list(resource: Resource, body: bytes) -> Page[Any]:
    """One LIST page of `resource`, its items decoded into records and finished (equal
    parts kept once per page). Raises `msgspec.ValidationError` (a ValueError) when the
    answer is not shaped like a Kubernetes list."""
    cls = record_type(resource)
    decoder = _PAGE_DECODERS.get(cls)
    if decoder is None:
        decoder = _PAGE_DECODERS[cls] = msgspec.json.Decoder(Page[cls])  # type: ignore[valid-type]
    page: Page[Any] = decoder.decode(body)
    if page.items:
        share = Shared()
        for item in page.items:
            finish(item, share)
    return page


def slim(resource: Resource, item: Any, share: Shared = _UNSHARED) -> Record:
    """An already decoded JSON object (a mapping) as the record of `resource`."""
    return finish(msgspec.convert(item, record_type(resource)), share)


def slim_pod(item: Mapping[str, Any], share: Shared = _UNSHARED) -> Record:
    """A Pod reduced to metadata, container names/commands and its phase."""
    return slim(PODS, item, share)


def slim_workload(item: Mapping[str, Any], share: Shared = _UNSHARED) -> Record:
    """A Deployment/StatefulSet/DaemonSet reduced to what the workload assertions read."""
    return slim(DEPLOYMENTS, item, share)


def slim_any(item: Mapping[str, Any], share: Shared = _UNSHARED) -> Record:
    """Any other object: slimmed metadata, the other top-level fields an assertion reads."""
    return slim(NAMESPACES, item, share)


def slimmer(resource: Resource, share: Shared = _UNSHARED) -> Callable[[Any], Record]:
    """The projection applied to a decoded item of `resource`."""
    return functools.partial(slim, resource, share=share)
