"""Istio assertions (4.3.x): istiod, mTLS, sidecar injection, traffic policies."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from exporter.model import Outcome
from exporter.probes.kubernetes import resources as r
from exporter.probes.kubernetes.common import Scope, Tally, labels_of, meta, name_of, ns_of
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import (
    IstioInstalledCheck,
    MtlsStrictCheck,
    SidecarInjectionCheck,
    TrafficPoliciesCheck,
)

WEAK_MODES = ("PERMISSIVE", "DISABLE")


def _condition(obj: Mapping[str, Any], kind: str) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


async def istio_installed(spec: IstioInstalledCheck, cluster: Cluster, now: float) -> Outcome:
    """4.3.1: the Istio API groups are served and istiod is available."""
    served = await asyncio.gather(*(cluster.discover(g) for g in spec.istio_groups))
    istiod = await cluster.get(r.DEPLOYMENTS, spec.istiod_deployment, spec.istio_namespace)
    tally = Tally(spec, now, "Istio components missing")
    for group, ok in zip(spec.istio_groups, served, strict=True):
        tally.judge(None, ok, f"API group {group} (CRDs not installed)")
    ref = f"{spec.istio_namespace}/{spec.istiod_deployment}"
    if istiod is None:
        tally.judge(None, False, f"{ref} (absent)")
    else:
        available = int((istiod.get("status") or {}).get("availableReplicas") or 0)
        ok = _condition(istiod, "Available") == "True" and available >= 1
        tally.judge(istiod, ok, f"{ref} (not available)")
    return tally.outcome(f"Istio API groups served and {ref} available")


def _mode(pa: Mapping[str, Any]) -> str:
    return str(((pa.get("spec") or {}).get("mtls") or {}).get("mode") or "UNSET").upper()


def _namespace_wide(pa: Mapping[str, Any]) -> bool:
    selector = (pa.get("spec") or {}).get("selector")
    return not selector or not (selector.get("matchLabels") or {})


def _weak_ports(pa: Mapping[str, Any]) -> list[str]:
    ports = (pa.get("spec") or {}).get("portLevelMtls") or {}
    return [f"port {port} {str((v or {}).get('mode', '')).upper()}" for port, v in ports.items()
            if str((v or {}).get("mode", "")).upper() in WEAK_MODES]


async def mtls_strict(spec: MtlsStrictCheck, cluster: Cluster, now: float) -> Outcome:
    """4.3.2: STRICT mesh-wide or per namespace, with no PERMISSIVE/DISABLE override."""
    scope = Scope(spec)
    namespaces, missing = await scope.namespaces(cluster)
    root = spec.istio_namespace
    listed = None if scope.include is None else sorted({*scope.include, root})
    listing = await cluster.list_scoped(r.PEER_AUTHENTICATIONS, listed)
    tally = Tally(spec, now, "namespaces or policies weakening mTLS")
    if not listing.served:
        tally.notes.append("PeerAuthentication is not served (Istio security CRDs missing)")
        return tally.outcome()
    mesh_mode = "UNSET"
    ns_mode: dict[str, str] = {}
    by_ns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pa in listing.items:
        by_ns[ns_of(pa)].append(pa)
        if _namespace_wide(pa):
            if ns_of(pa) == root:
                mesh_mode = _mode(pa)
            else:
                ns_mode[ns_of(pa)] = _mode(pa)
    tally.absent(missing)
    for ns in namespaces:
        name = name_of(ns)
        own = ns_mode.get(name, "UNSET")
        effective = mesh_mode if own == "UNSET" else own
        tally.namespace(ns, effective == "STRICT", f"effective mTLS {effective}")
    for pa in listing.items:
        if not scope.namespace_in(ns_of(pa)) and ns_of(pa) != root:
            continue
        weak = _weak_ports(pa)
        if _mode(pa) in WEAK_MODES:
            weak.insert(0, _mode(pa))
        if weak:
            tally.judge(pa, False, f"PeerAuthentication {ns_of(pa)}/{name_of(pa)} "
                        f"({', '.join(weak)})")
    shown = "mesh-wide" if mesh_mode == "STRICT" else "per namespace"
    return tally.outcome(f"mTLS STRICT {shown} in {len(namespaces)} namespaces, no override")


def _injection_on(ns: Mapping[str, Any]) -> bool:
    labels = labels_of(ns)
    if labels.get("istio-injection") == "disabled":
        return False
    return labels.get("istio-injection") == "enabled" or "istio.io/rev" in labels


def _has_proxy(pod: Mapping[str, Any]) -> bool:
    pspec = pod.get("spec") or {}
    for containers in (pspec.get("containers"), pspec.get("initContainers")):
        for container in containers or ():
            if container.get("name") == "istio-proxy":
                return True
    return False


async def sidecar_injection(spec: SidecarInjectionCheck, cluster: Cluster, now: float) -> Outcome:
    """4.3.3: namespaces carry the injection label and running pods carry istio-proxy."""
    scope = Scope(spec)
    namespaces, missing = await scope.namespaces(cluster, need_labels=True)
    pods = await scope.items(cluster, r.PODS)
    tally = Tally(spec, now, "namespaces or pods without sidecar injection")
    tally.absent(missing)
    wanted = set()
    for ns in namespaces:
        if tally.namespace(ns, _injection_on(ns), "no istio-injection/istio.io/rev label"):
            wanted.add(name_of(ns))
    running = 0
    for pod in pods:
        namespace = ns_of(pod)
        if namespace not in wanted or (pod.get("status") or {}).get("phase") != "Running":
            continue
        running += 1
        if _has_proxy(pod):
            tally.judge(pod, True, "")  # the label names offenders only
            continue
        opted_out = (meta(pod).get("annotations") or {}).get("sidecar.istio.io/inject")
        detail = "injection disabled by annotation" if opted_out == "false" else "no istio-proxy"
        tally.judge(pod, False, f"pod {namespace}/{name_of(pod)} ({detail})")
    if wanted and not running and not tally.offenders:
        raise await scope.nothing(cluster, "Running pod",
                                  "injection is only confirmed on running pods")
    return tally.outcome(f"{len(wanted)} namespaces inject; all {running} running pods "
                         "carry istio-proxy")


def _host_fqdn(host: str, namespace: str, domain: str = "cluster.local") -> str:
    if host == "*" or host.endswith("." + domain):
        return host
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.{domain}"
    if len(parts) == 2:
        return f"{host}.svc.{domain}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.{domain}"
    return host


def _host_matches(patterns: set[str], fqdn: str) -> bool:
    """Whether a DestinationRule host (exact, `*.suffix` or `*`) covers `fqdn`."""
    if fqdn in patterns or "*" in patterns:
        return True
    parts = fqdn.split(".")
    return any("*." + ".".join(parts[i:]) in patterns for i in range(1, len(parts)))


async def traffic_policies(spec: TrafficPoliciesCheck, cluster: Cluster, now: float) -> Outcome:
    """4.3.4: each Service in scope has a DestinationRule with a trafficPolicy."""
    scope = Scope(spec)
    services = [s for s in await scope.items(cluster, r.SERVICES, filter_labels=True)
                if (s.get("spec") or {}).get("type") != "ExternalName"]
    if not services and not spec.services:
        raise await scope.nothing(cluster, "Service (other than ExternalName)")
    listing = await cluster.list_scoped(r.DESTINATION_RULES, scope.include)
    tally = Tally(spec, now, "Services without a DestinationRule trafficPolicy")
    if not listing.served:
        tally.notes.append("DestinationRule is not served (Istio networking CRDs missing)")
        return tally.outcome()
    patterns = {_host_fqdn(str((dr.get("spec") or {}).get("host") or ""), ns_of(dr))
                for dr in listing.items if (dr.get("spec") or {}).get("trafficPolicy")}
    if spec.services:
        names = set(spec.services)
        chosen = [s for s in services if name_of(s) in names
                  or f"{ns_of(s)}/{name_of(s)}" in names]
        found = {name_of(s) for s in chosen} | {f"{ns_of(s)}/{name_of(s)}" for s in chosen}
        for wanted in spec.services:
            if wanted not in found:
                tally.judge(None, False, f"{wanted} (Service absent)")
        services = chosen
    for service in services:
        fqdn = f"{name_of(service)}.{ns_of(service)}.svc.cluster.local"
        ok = _host_matches(patterns, fqdn)
        tally.judge(service, ok, f"{ns_of(service)}/{name_of(service)}")
    return tally.outcome(f"all {tally.evaluated} Services have a DestinationRule trafficPolicy")
