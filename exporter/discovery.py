"""Discover the preset's inputs in a Kubernetes cluster (in-cluster or through a kubeconfig).

Reads, with the kubernetes-asyncio client, only what the checklist names: the
application's Deployments and StatefulSets (label `app.kubernetes.io/part-of=qbitel` by
default), its Services and Ingress hosts (base URL, TLS host), the Secrets it mounts (by
reference: namespace/name, never data), the Prometheus and Alertmanager Services of
common stacks (kube-prometheus-stack names and labels), and the database and Redis hosts
from the pods' environment variables (`DATABASE_HOST`, `REDIS_HOST`, ... given as
literal values). Nothing is written to the cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PART_OF = "qbitel"
ENV_INPUTS = {"DATABASE_HOST": "database_host", "DATABASE_PORT": "database_port",
              "DATABASE_NAME": "database_name", "DATABASE_USER": "database_user",
              "REDIS_HOST": "redis_host", "REDIS_PORT": "redis_port"}
"""Pod environment variables (literal values only) that name an input's target."""
STACK_NAMES = {"prometheus": "prometheus_url", "alertmanager": "alertmanager_url"}
_OPERATED = {"prometheus-operated": "prometheus", "alertmanager-operated": "alertmanager"}


class DiscoveryUnavailable(Exception):
    """No cluster to ask: not in a pod and no kubeconfig (the message says what to set)."""


@dataclass
class Discovered:
    """Input values found in the cluster, where each came from, and other findings."""

    values: dict[str, Any] = field(default_factory=dict)
    found_in: dict[str, str] = field(default_factory=dict)
    """input name -> the object it was read from (`ingress qbitel/web`)."""
    secrets: list[str] = field(default_factory=list)
    """Secrets the application mounts, as `namespace/name (by whom)`: references only."""
    workloads: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Lists the cluster refused (RBAC): discovery goes on without them."""

    def put(self, name: str, value: Any, source: str) -> None:
        """Keep the first value found for an input."""
        if name not in self.values:
            self.values[name] = value
            self.found_in[name] = source


def kubeconfig_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The kubeconfig to use: `--kubeconfig`, then `$KUBECONFIG`, else None (in-cluster)."""
    if explicit is not None:
        return explicit
    value = environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(value) if value else None


async def discover(kubeconfig: Path | None, context: str | None = None,
                   part_of: str = DEFAULT_PART_OF,
                   environ: Mapping[str, str] | None = None) -> Discovered:
    """Ask the cluster; `DiscoveryUnavailable` when there is none to ask."""
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubernetes_asyncio.config.config_exception import ConfigException

    env = os.environ if environ is None else environ
    configuration = k8s_client.Configuration()
    in_cluster = kubeconfig is None
    try:
        if kubeconfig is None:
            if not env.get("KUBERNETES_SERVICE_HOST"):
                raise DiscoveryUnavailable(
                    "not running in a pod and no kubeconfig: pass --kubeconfig or set KUBECONFIG")
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        else:
            _require_file(kubeconfig)
            await k8s_config.load_kube_config(config_file=str(kubeconfig), context=context,
                                              client_configuration=configuration,
                                              persist_config=False)
    except ConfigException as exc:
        raise DiscoveryUnavailable(f"Kubernetes client configuration invalid: "
                                   f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
                                   " (--kubeconfig, --context)") from None
    selector = f"app.kubernetes.io/part-of={part_of}"
    found = Discovered()
    async with k8s_client.ApiClient(configuration) as api:
        apps = k8s_client.AppsV1Api(api)
        core = k8s_client.CoreV1Api(api)
        net = k8s_client.NetworkingV1Api(api)

        async def listed(what: str, call: Any, **kwargs: Any) -> list[dict[str, Any]]:
            try:
                answer = await call(**kwargs)
            except ApiException as exc:
                found.problems.append(f"cannot list {what}: HTTP {exc.status}")
                return []
            return [api.sanitize_for_serialization(item) for item in answer.items]

        workloads = [("deployment", d) for d in await listed(
            "deployments", apps.list_deployment_for_all_namespaces, label_selector=selector)]
        workloads += [("statefulset", s) for s in await listed(
            "statefulsets", apps.list_stateful_set_for_all_namespaces, label_selector=selector)]
        ingresses = await listed("ingresses", net.list_ingress_for_all_namespaces,
                                 label_selector=selector)
        services = await listed("services", core.list_service_for_all_namespaces)
    for kind, workload in workloads:
        _read_workload(found, kind, workload)
    for ingress in ingresses:
        _read_ingress(found, ingress)
    for service in services:
        _read_service(found, service, part_of, in_cluster)
    return found


def _require_file(kubeconfig: Path) -> None:
    if not kubeconfig.is_file():
        raise DiscoveryUnavailable(f"kubeconfig {kubeconfig.resolve()} does not exist "
                                   "(--kubeconfig or KUBECONFIG)")


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _containers(workload: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    pod = workload.get("spec", {}).get("template", {}).get("spec", {})
    yield from pod.get("initContainers", []) or []
    yield from pod.get("containers", []) or []


def _read_workload(found: Discovered, kind: str, workload: Mapping[str, Any]) -> None:
    where = f"{kind} {_name(workload)}"
    namespace = workload.get("metadata", {}).get("namespace", "")
    found.workloads.append(where)
    pod = workload.get("spec", {}).get("template", {}).get("spec", {})
    for volume in pod.get("volumes", []) or []:
        secret = (volume.get("secret") or {}).get("secretName")
        if secret:
            found.secrets.append(f"{namespace}/{secret} (volume of {where})")
    for container in _containers(workload):
        for env in container.get("env", []) or []:
            name, value = env.get("name"), env.get("value")
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if ref:
                entry = f"{namespace}/{ref} (environment of {where})"
                if entry not in found.secrets:
                    found.secrets.append(entry)
            if name in ENV_INPUTS and isinstance(value, str) and value:
                found.put(ENV_INPUTS[name], value, f"{where}, env {name}")


def _read_ingress(found: Discovered, ingress: Mapping[str, Any]) -> None:
    where = f"ingress {_name(ingress)}"
    namespace = ingress.get("metadata", {}).get("namespace", "")
    spec = ingress.get("spec", {})
    tls_hosts = [h for entry in spec.get("tls", []) or [] for h in entry.get("hosts", []) or []]
    for entry in spec.get("tls", []) or []:
        if entry.get("secretName"):
            found.secrets.append(f"{namespace}/{entry['secretName']} (TLS of {where})")
    rule_hosts = [r["host"] for r in spec.get("rules", []) or [] if r.get("host")]
    if tls_hosts:
        found.put("tls_host", tls_hosts[0], where)
        found.put("app_url", f"https://{tls_hosts[0]}", where)
    elif rule_hosts:
        found.put("app_url", f"http://{rule_hosts[0]}", where)


def _service_url(service: Mapping[str, Any], in_cluster: bool) -> str | None:
    spec = service.get("spec", {})
    ports = spec.get("ports", []) or []
    if not ports:
        return None
    port = ports[0].get("port")
    balancers = (service.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
    if balancers and not in_cluster:
        address = balancers[0].get("ip") or balancers[0].get("hostname")
        return f"http://{address}:{port}"
    meta = service.get("metadata", {})
    return f"http://{meta.get('name')}.{meta.get('namespace')}.svc:{port}"


def _stack_role(service: Mapping[str, Any]) -> str | None:
    """`prometheus` or `alertmanager` for the services of common monitoring stacks."""
    meta = service.get("metadata", {})
    name = str(meta.get("name", ""))
    labels = meta.get("labels", {}) or {}
    if name in _OPERATED:
        return _OPERATED[name]
    for role in STACK_NAMES:
        if labels.get("app.kubernetes.io/name") == role or labels.get("app") in (
                role, f"kube-prometheus-stack-{role}") or name.endswith(
                (f"-kube-prometheus-{role}", f"-kube-prom-{role}")):
            return role
    return None


def _read_service(found: Discovered, service: Mapping[str, Any], part_of: str,
                  in_cluster: bool) -> None:
    role = _stack_role(service)
    url = _service_url(service, in_cluster)
    if role is not None and url is not None:
        found.put(STACK_NAMES[role], url, f"service {_name(service)}")
        return
    labels = service.get("metadata", {}).get("labels", {}) or {}
    if labels.get("app.kubernetes.io/part-of") == part_of and url is not None:
        found.put("app_url", url, f"service {_name(service)}")
