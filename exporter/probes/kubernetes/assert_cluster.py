"""Cluster set-up assertions (4.1.x): version, namespaces, quotas, policies, PSS."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from exporter.model import Measurement, MetricFamily, Outcome, ProbeError, Reason
from exporter.probes.kubernetes import resources as r
from exporter.probes.kubernetes.common import Scope, Tally, by_namespace, labels_of, name_of
from exporter.probes.kubernetes.selectors import matches
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import (
    NamespacesExistCheck,
    NetworkPoliciesCheck,
    PodSecurityCheck,
    ResourceQuotasCheck,
    ServerVersionCheck,
)

SERVER_VERSION = MetricFamily(
    "readiness_kubernetes_server_version_info",
    "The API server's version (value 1).", ("version",))

PSS_LABEL = "pod-security.kubernetes.io/enforce"


async def server_version(spec: ServerVersionCheck, cluster: Cluster, now: float) -> Outcome:
    """4.1.1: the API server's version is at least `min_version`."""
    data = await cluster.version()
    git_version = str(data.get("gitVersion") or "")
    major = re.match(r"\d+", str(data.get("major") or ""))
    minor = re.match(r"\d+", str(data.get("minor") or ""))
    if not (major and minor):
        parsed = re.match(r"v?(\d+)\.(\d+)", git_version)
        if parsed is None:
            return Outcome.failed("the API server reports no parsable version")
        found = (int(parsed.group(1)), int(parsed.group(2)))
    else:
        found = (int(major.group(0)), int(minor.group(0)))
    want = tuple(int(x) for x in spec.min_version.split("."))
    shown = git_version or f"{found[0]}.{found[1]}"
    labels = {"version": re.sub(r"[^0-9A-Za-z.+-]", "", shown)[:40]}
    measurements = [Measurement(SERVER_VERSION.name, 1.0, labels)]
    if found < want:
        return Outcome.failed(f"Kubernetes {shown} is older than {spec.min_version}",
                              tuple(measurements))
    return Outcome.passed(f"Kubernetes {shown} (>= {spec.min_version})", tuple(measurements))


async def namespaces_exist(spec: NamespacesExistCheck, cluster: Cluster, now: float) -> Outcome:
    """4.1.2: the required namespaces exist (and are not terminating)."""
    tally = Tally(spec, now, "required namespaces missing")
    try:
        listing = await cluster.list_all(r.NAMESPACES)
        by_name = {name_of(obj): obj for obj in listing.items}
    except ProbeError as exc:  # namespace-scoped RBAC: GET each required namespace
        if exc.reason is not Reason.AUTH:
            raise
        got = await asyncio.gather(*(cluster.get(r.NAMESPACES, name)
                                     for name in spec.required_namespaces))
        by_name = {name: obj for name, obj in zip(spec.required_namespaces, got, strict=True)
                   if obj is not None}
    for name in spec.required_namespaces:
        obj = by_name.get(name)
        phase = ((obj or {}).get("status") or {}).get("phase")
        ok = obj is not None and phase != "Terminating"
        detail = "terminating" if obj is not None else "absent"
        tally.judge(obj, ok, f"{name} ({detail})" if not ok else name)
    return tally.outcome(f"namespaces {', '.join(spec.required_namespaces)} exist")


async def resource_quotas(spec: ResourceQuotasCheck, cluster: Cluster, now: float) -> Outcome:
    """4.1.3: every namespace in scope has a ResourceQuota (with the required keys)."""
    scope = Scope(spec)
    namespaces, missing = await scope.namespaces(cluster)
    quotas = await scope.items(cluster, r.RESOURCE_QUOTAS)
    by_ns = by_namespace(quotas)
    tally = Tally(spec, now, "namespaces without a ResourceQuota")
    tally.absent(missing)
    for ns in namespaces:
        found = by_ns.get(name_of(ns), [])
        keys: set[str] = set()
        for quota in found:
            keys.update(((quota.get("spec") or {}).get("hard") or {}).keys())
        lacking = [key for key in spec.quota_resources if key not in keys]
        detail = "none" if not found else f"no hard {', '.join(lacking)}"
        tally.namespace(ns, bool(found) and not lacking, detail)
    return tally.outcome(f"all {tally.evaluated} namespaces have a ResourceQuota")


def _policy_types(policy: dict[str, Any]) -> set[str]:
    pspec = policy.get("spec") or {}
    types = pspec.get("policyTypes")
    if types:
        return set(types)
    result = {"Ingress"}
    if pspec.get("egress"):
        result.add("Egress")
    return result


def _is_default_deny(policy: dict[str, Any], direction: str) -> bool:
    pspec = policy.get("spec") or {}
    selector = pspec.get("podSelector")
    if selector is None or selector.get("matchLabels") or selector.get("matchExpressions"):
        return False
    key = direction.lower()
    return direction in _policy_types(policy) and not pspec.get(key)


async def network_policies(spec: NetworkPoliciesCheck, cluster: Cluster, now: float) -> Outcome:
    """4.1.4: a default-deny per namespace, and every workload selected by a policy."""
    scope = Scope(spec)
    namespaces, missing = await scope.namespaces(cluster)
    policies = await scope.items(cluster, r.NETWORK_POLICIES)
    workloads = await scope.workloads(cluster, ("Deployment", "StatefulSet", "DaemonSet"),
                                      required=False)
    by_ns = by_namespace(policies)
    tally = Tally(spec, now, "namespaces or workloads not covered")
    tally.absent(missing)
    for ns in namespaces:
        found = by_ns.get(name_of(ns), [])
        ingress = any(_is_default_deny(p, "Ingress") for p in found)
        egress = any(_is_default_deny(p, "Egress") for p in found)
        lacking = [] if ingress else ["ingress"]
        if spec.require_egress_deny and not egress:
            lacking.append("egress")
        tally.namespace(ns, not lacking, f"no default-deny {'/'.join(lacking)}")
    for workload in workloads:
        selecting = [p for p in by_ns.get(workload.namespace, [])
                     if matches((p.get("spec") or {}).get("podSelector"), workload.pod_labels)]
        if spec.require_allow_rules:
            selecting = [p for p in selecting if (p.get("spec") or {}).get("ingress")]
        detail = ("no policy with ingress rules selects it" if spec.require_allow_rules
                  else "no NetworkPolicy selects it")
        tally.workload(workload, bool(selecting), detail)
    return tally.outcome(f"default-deny in {len(namespaces)} namespaces; all "
                         f"{len(workloads)} workloads selected by a NetworkPolicy")


async def pod_security(spec: PodSecurityCheck, cluster: Cluster, now: float) -> Outcome:
    """4.1.5: `pod-security.kubernetes.io/enforce` is one of the accepted levels."""
    scope = Scope(spec)
    namespaces, missing = await scope.namespaces(cluster, need_labels=True)
    tally = Tally(spec, now, "namespaces without an enforced Pod Security level")
    tally.absent(missing)
    for ns in namespaces:
        level = labels_of(ns).get(PSS_LABEL)
        ok = level in spec.pss_levels
        tally.namespace(ns, ok, f"enforce={level}" if level else "no enforce label")
    return tally.outcome(f"all {tally.evaluated} namespaces enforce "
                         f"{' or '.join(spec.pss_levels)}")
