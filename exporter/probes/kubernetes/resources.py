"""The resource kinds the probes list, and how their REST paths are built."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from sys import intern
from typing import Any

import orjson

from exporter.probes.kubernetes.exemptions import ANNOTATION as EXEMPTION_ANNOTATION


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
# Items are cut down page by page to what the assertions read, so a 20,000-pod cluster
# costs megabytes, not the full objects (managedFields, last-applied annotations, env...).

KEPT_ANNOTATIONS = frozenset({EXEMPTION_ANNOTATION, "sidecar.istio.io/inject"})
"""The annotations an assertion reads; every other one (Istio status blobs, checksums,
last-applied configurations) is dropped."""
_EMPTY: dict[str, Any] = {}


class Shared:
    """Keeps one copy of structurally equal parts of a page's objects.

    The replicas of a workload carry equal labels, containers and status; the workloads of
    a team equal resources and affinity. Read-only views share one object for each.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[bytes, Any] = {}

    def __call__(self, value: Any) -> Any:
        if not value:
            return value
        key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        return self._seen.setdefault(key, value)


def _unshared(value: Any) -> Any:
    return value


def _interned(labels: Any) -> Any:
    """Label maps with interned strings: 20,000 pods share a handful of distinct values."""
    if not isinstance(labels, dict):
        return labels
    return {intern(k): intern(v) if isinstance(v, str) else v for k, v in labels.items()}


def slim_metadata(metadata: Any, share: Callable[[Any], Any] = _unshared) -> dict[str, Any]:
    """The metadata fields the assertions use (name, namespace, labels, the annotations in
    `KEPT_ANNOTATIONS`, generation)."""
    if not isinstance(metadata, dict):
        return {}
    result: dict[str, Any] = {"name": metadata.get("name")}
    namespace = metadata.get("namespace")
    if namespace is not None:
        result["namespace"] = intern(namespace)
    labels = metadata.get("labels")
    if labels:
        result["labels"] = share(_interned(labels))
    annotations = metadata.get("annotations")
    if annotations and isinstance(annotations, dict):
        kept = {k: v for k, v in annotations.items() if k in KEPT_ANNOTATIONS}
        if kept:
            result["annotations"] = share(kept)
    generation = metadata.get("generation")
    if generation is not None:
        result["generation"] = generation
    return result


def _containers(containers: list[dict[str, Any]], keys: tuple[str, ...]) -> list[Any]:
    result = []
    for container in containers:
        slim = {"name": container.get("name")}
        for key in keys:
            value = container.get(key)
            if value is not None:
                slim[key] = value
        result.append(slim)
    return result


def _pod_spec(spec: Any, keys: tuple[str, ...], placement: bool) -> dict[str, Any]:
    """Containers reduced to their name and `keys`; affinity and spread if `placement`."""
    if not isinstance(spec, dict):
        return {}
    result: dict[str, Any] = {}
    for field_name in ("containers", "initContainers"):
        containers = spec.get(field_name)
        if containers:
            result[field_name] = _containers(containers, keys)
    if placement:
        for key in ("affinity", "topologySpreadConstraints"):
            value = spec.get(key)
            if value:
                result[key] = value
    return result


def slim_pod(item: dict[str, Any], share: Callable[[Any], Any] = _unshared) -> dict[str, Any]:
    """A Pod reduced to metadata, container names/commands and its phase."""
    status = item.get("status") or _EMPTY
    return {"metadata": slim_metadata(item.get("metadata"), share),
            "spec": share(_pod_spec(item.get("spec"), ("command", "args"), False)),
            "status": share({"phase": status.get("phase")})}


_STATUS_KEYS = ("replicas", "availableReplicas", "readyReplicas", "updatedReplicas",
                "observedGeneration", "currentRevision", "updateRevision",
                "desiredNumberScheduled")


def slim_workload(item: dict[str, Any],
                  share: Callable[[Any], Any] = _unshared) -> dict[str, Any]:
    """A Deployment/StatefulSet/DaemonSet reduced to what the workload assertions read."""
    spec = item.get("spec") or _EMPTY
    template = spec.get("template") or _EMPTY
    status = item.get("status") or _EMPTY
    return {
        "metadata": slim_metadata(item.get("metadata"), share),
        "spec": {"replicas": spec.get("replicas"),
                 "template": share({
                     "metadata": slim_metadata(template.get("metadata"), share),
                     "spec": _pod_spec(template.get("spec"), ("resources",), True)})},
        "status": share({key: status[key] for key in _STATUS_KEYS if key in status}),
    }


def slim_any(item: dict[str, Any], share: Callable[[Any], Any] = _unshared) -> dict[str, Any]:
    """Any other object: slimmed metadata, everything else kept (equal parts once)."""
    result = {key: share(value) for key, value in item.items() if key != "metadata"}
    result["metadata"] = slim_metadata(item.get("metadata"), share)
    return result


def slimmer(resource: Resource, share: Callable[[Any], Any] = _unshared
            ) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The projection applied to each listed item of `resource`; `share` (a `Shared` per
    page) keeps one copy of equal parts."""
    if resource is PODS:
        return functools.partial(slim_pod, share=share)
    if resource in (DEPLOYMENTS, STATEFULSETS, DAEMONSETS):
        return functools.partial(slim_workload, share=share)
    return functools.partial(slim_any, share=share)
