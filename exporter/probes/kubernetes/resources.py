"""The resource kinds the probes list, and how their REST paths are built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from sys import intern
from typing import Any


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

_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_EMPTY: dict[str, Any] = {}


def _interned(labels: Any) -> Any:
    """Label maps with interned strings: 20,000 pods share a handful of distinct values."""
    if not isinstance(labels, dict):
        return labels
    return {intern(k): intern(v) if isinstance(v, str) else v for k, v in labels.items()}


def slim_metadata(metadata: Any) -> dict[str, Any]:
    """The metadata fields the assertions use (no managedFields, no last-applied)."""
    if not isinstance(metadata, dict):
        return {}
    result: dict[str, Any] = {"name": metadata.get("name")}
    namespace = metadata.get("namespace")
    if namespace is not None:
        result["namespace"] = intern(namespace)
    labels = metadata.get("labels")
    if labels:
        result["labels"] = _interned(labels)
    annotations = metadata.get("annotations")
    if annotations:
        if _LAST_APPLIED in annotations:
            annotations = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
        result["annotations"] = annotations
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


def slim_pod(item: dict[str, Any]) -> dict[str, Any]:
    """A Pod reduced to metadata, container names/commands and its phase."""
    status = item.get("status") or _EMPTY
    return {"metadata": slim_metadata(item.get("metadata")),
            "spec": _pod_spec(item.get("spec"), ("command", "args"), False),
            "status": {"phase": status.get("phase")}}


_STATUS_KEYS = ("replicas", "availableReplicas", "readyReplicas", "updatedReplicas",
                "observedGeneration", "currentRevision", "updateRevision",
                "desiredNumberScheduled")


def slim_workload(item: dict[str, Any]) -> dict[str, Any]:
    """A Deployment/StatefulSet/DaemonSet reduced to what the workload assertions read."""
    spec = item.get("spec") or _EMPTY
    template = spec.get("template") or _EMPTY
    status = item.get("status") or _EMPTY
    return {
        "metadata": slim_metadata(item.get("metadata")),
        "spec": {"replicas": spec.get("replicas"),
                 "template": {"metadata": slim_metadata(template.get("metadata")),
                              "spec": _pod_spec(template.get("spec"), ("resources",), True)}},
        "status": {key: status[key] for key in _STATUS_KEYS if key in status},
    }


def slim_any(item: dict[str, Any]) -> dict[str, Any]:
    """Any other object: slimmed metadata, everything else kept."""
    result = dict(item)
    result["metadata"] = slim_metadata(item.get("metadata"))
    return result


def slimmer(resource: Resource) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The projection applied to each listed item of `resource`."""
    if resource is PODS:
        return slim_pod
    if resource in (DEPLOYMENTS, STATEFULSETS, DAEMONSETS):
        return slim_workload
    return slim_any
