"""Workload assertions (4.2.x, 7.3, 9.1): limits, baseline, HPA, PDB, spreading, rollout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.model import Measurement, MetricFamily, Outcome
from exporter.probes.kubernetes import resources as r
from exporter.probes.kubernetes.common import (
    OBJECTS_EVALUATED,
    OBJECTS_FAILING,
    Scope,
    Tally,
    Workload,
    by_namespace,
    int_or_percent,
    labels_of,
    name_of,
    ns_of,
)
from exporter.probes.kubernetes.quantities import parse_quantity
from exporter.probes.kubernetes.selectors import matches, parse_selector
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import (
    AntiAffinityCheck,
    DeploymentsAvailableCheck,
    HpaCheck,
    PdbCoverageCheck,
    ReplicatedCheck,
    ResourceBaselineCheck,
    ResourceLimitsCheck,
)

HPA_MIN_REPLICAS = MetricFamily(
    "readiness_kubernetes_hpa_min_replicas",
    "minReplicas of the HPA targeting the workload.", ("namespace", "workload", "kind"))
PDB_ALLOWED = MetricFamily(
    "readiness_kubernetes_pdb_allowed_disruptions",
    "Disruptions the workload's PDB allows at the desired replicas of all the pods it "
    "covers (every workload it selects; from the PDB spec).",
    ("namespace", "workload", "kind"))
REPLICAS_DESIRED = MetricFamily(
    "readiness_kubernetes_workload_replicas",
    "Desired replicas of the workload.", ("namespace", "workload", "kind"))
REPLICAS_AVAILABLE = MetricFamily(
    "readiness_kubernetes_workload_available_replicas",
    "Available (ready for StatefulSets) replicas of the workload.",
    ("namespace", "workload", "kind"))

SCALABLE = ("Deployment", "StatefulSet")
RESOURCE_KEYS = (("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"),
                 ("limits", "memory"))


def _containers(workload: Workload, init: bool) -> list[Mapping[str, Any]]:
    pod = workload.pod_spec
    result = list(pod.get("containers") or [])
    if init:
        result.extend(pod.get("initContainers") or [])
    return result


async def resource_limits(spec: ResourceLimitsCheck, cluster: Cluster, now: float) -> Outcome:
    """4.2.1: every container sets cpu and memory requests and limits."""
    workloads = await Scope(spec).workloads(cluster, ("Deployment", "StatefulSet",
                                                      "DaemonSet"))
    tally = Tally(spec, now, "workloads with containers lacking requests/limits",
                  "workloads")
    for workload in workloads:
        gaps = []
        for container in _containers(workload, spec.include_init_containers):
            res = container.get("resources") or {}
            lacking = [f"{kind}.{what}" for kind, what in RESOURCE_KEYS
                       if (res.get(kind) or {}).get(what) in (None, "")]
            if lacking:
                gaps.append(f"{container.get('name')}: no {', '.join(lacking)}")
        tally.workload(workload, not gaps, "; ".join(gaps[:2]))
    return tally.outcome()


def _compare(found: Any, want: str, mode: str) -> str | None:
    """None when `found` satisfies `want`, else a short description of the gap."""
    if found in (None, ""):
        return "unset"
    try:
        have = parse_quantity(found)
    except ValueError:
        return f"unparsable {found!r}"
    target = parse_quantity(want)
    ok = have >= target if mode == "at_least" else have == target
    return None if ok else f"{str(found)[:16]} != {want}"


async def resource_baseline(spec: ResourceBaselineCheck, cluster: Cluster, now: float) -> Outcome:
    """9.1: containers' requests and limits match the component table."""
    scope = Scope(spec)
    workloads = await scope.workloads(cluster, SCALABLE)
    tally = Tally(spec, now, "workloads off the resource baseline")
    for index, component in enumerate(spec.components):
        selector = parse_selector(component.selector)
        chosen = [w for w in workloads if matches(selector, w.pod_labels)
                  or matches(selector, labels_of(w.obj))]
        if not chosen:
            raise await scope.nothing(
                cluster, f"workload of component {component.name}",
                f"`components[{index}].selector: {component.selector}` matches none")
        wants = (("requests", "cpu", component.cpu_request),
                 ("limits", "cpu", component.cpu_limit),
                 ("requests", "memory", component.memory_request),
                 ("limits", "memory", component.memory_limit))
        for workload in chosen:
            gaps = []
            for container in _containers(workload, False):
                if component.container and container.get("name") != component.container:
                    continue
                res = container.get("resources") or {}
                for kind, what, want in wants:
                    gap = _compare((res.get(kind) or {}).get(what), want, spec.baseline_mode)
                    if gap:
                        gaps.append(f"{container.get('name')} {kind}.{what} {gap}")
            tally.workload(workload, not gaps,
                           f"{component.name}: {'; '.join(gaps[:2])}")
    return tally.outcome(f"all {tally.evaluated} component workloads match the baseline")


async def hpa(spec: HpaCheck, cluster: Cluster, now: float) -> Outcome:
    """4.2.2: every scalable workload is targeted by an HPA with minReplicas >= floor."""
    scope = Scope(spec)
    workloads = await scope.workloads(cluster, SCALABLE)
    hpas = await scope.items(cluster, r.HPAS)
    targets: dict[tuple[str, str, str], dict[str, Any]] = {}
    for found in hpas:
        ref = (found.get("spec") or {}).get("scaleTargetRef") or {}
        targets[(ns_of(found), str(ref.get("kind")), str(ref.get("name")))] = found
    tally = Tally(spec, now, "scalable workloads without an adequate HPA",
                  "scalable workloads")
    for workload in workloads:
        item = targets.get((workload.namespace, workload.kind, workload.name))
        if item is None:
            tally.workload(workload, False, "no HPA")
            continue
        minimum = int((item.get("spec") or {}).get("minReplicas") or 1)
        tally.add(HPA_MIN_REPLICAS, float(minimum), workload.gauge_labels())
        tally.workload(workload, minimum >= spec.min_replicas,
                       f"HPA {name_of(item)} minReplicas {minimum} < {spec.min_replicas}")
    return tally.outcome()


def pdb_allowed(pdb: Mapping[str, Any], replicas: int) -> tuple[int, str]:
    """Disruptions a PDB allows at `replicas`, and which field decided it."""
    pspec = pdb.get("spec") or {}
    if pspec.get("maxUnavailable") is not None:
        value = pspec["maxUnavailable"]
        return int_or_percent(value, replicas, round_up=True), f"maxUnavailable {value}"
    value = pspec.get("minAvailable", 1)
    needed = int_or_percent(value, replicas, round_up=True)
    return replicas - needed, f"minAvailable {value}"


def _selects(pdb: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """policy/v1: a null selector selects no pods, an empty one every pod of the namespace."""
    return matches((pdb.get("spec") or {}).get("selector"), labels)


def _replicated(spec: ReplicatedCheck, workloads: list[Workload]) -> list[Workload]:
    return [w for w in workloads if w.replicas >= spec.min_replicas]


def _none_replicated(spec: ReplicatedCheck, workloads: list[Workload], what: str) -> Outcome:
    """The pass of an assertion about replicated workloads when none is replicated: it
    says what was checked (the workloads in scope all run fewer replicas)."""
    return Outcome.passed(
        f"none of the {len(workloads)} workloads in scope runs >= {spec.min_replicas} "
        f"replicas: no {what} required",
        (Measurement(OBJECTS_EVALUATED.name, 0.0), Measurement(OBJECTS_FAILING.name, 0.0)))


class _PdbsByNamespace:
    """Each PDB of a namespace with the workloads whose pods it selects, worked out once
    per namespace (one selector match per PDB and workload, never a walk of every
    workload per workload)."""

    def __init__(self, pdbs: list[Any], workloads: list[Workload]) -> None:
        self._pdbs = by_namespace(pdbs)
        self._workloads: dict[str, list[Workload]] = {}
        for workload in workloads:
            self._workloads.setdefault(workload.namespace, []).append(workload)
        self._covering: dict[str, dict[tuple[str, str, str],
                                       list[tuple[Any, list[Workload]]]]] = {}

    def covering(self, workload: Workload) -> list[tuple[Any, list[Workload]]]:
        """The PDBs selecting `workload`'s pods, each with every workload it selects."""
        namespace = workload.namespace
        index = self._covering.get(namespace)
        if index is None:
            index = self._covering[namespace] = {}
            every = self._workloads.get(namespace, [])
            for pdb in self._pdbs.get(namespace, ()):
                covered = [w for w in every if _selects(pdb, w.pod_labels)]
                for one in covered:
                    index.setdefault(_key(one), []).append((pdb, covered))
        return index.get(_key(workload), [])


def _key(workload: Workload) -> tuple[str, str, str]:
    return (workload.kind, workload.namespace, workload.name)


async def pdb_coverage(spec: PdbCoverageCheck, cluster: Cluster, now: float) -> Outcome:
    """4.2.3: workloads with replicas >= floor have exactly one PDB allowing a disruption.

    A PDB is judged against every pod it covers: the replicas of all the Deployments and
    StatefulSets of its namespace whose pod template it selects, as the disruption
    controller counts them (two Deployments of 3 and 2 under `minAvailable: 3` allow 2
    disruptions).
    """
    scope = Scope(spec)
    in_scope = await scope.workloads(cluster, SCALABLE)
    workloads = _replicated(spec, in_scope)
    if not workloads:
        return _none_replicated(spec, in_scope, "PodDisruptionBudget")
    pdbs = await scope.items(cluster, r.PDBS)
    every = await scope.all_workloads(cluster, SCALABLE)
    known = {_key(w) for w in every}
    by_ns = _PdbsByNamespace(pdbs, every + [w for w in workloads if _key(w) not in known])
    tally = Tally(spec, now, "replicated workloads without a PDB allowing a disruption",
                  "replicated workloads")
    for workload in workloads:
        selecting = by_ns.covering(workload)
        chosen = [pdb for pdb, _ in selecting]
        if not chosen:
            tally.workload(workload, False, "no PDB")
            continue
        if len(chosen) > 1:
            names = ", ".join(sorted(name_of(p) for p in chosen))
            tally.workload(workload, False, f"several PDBs ({names}): evictions fail")
            continue
        covered = selecting[0][1]
        pods = sum(w.replicas for w in covered)
        allowed, why = pdb_allowed(chosen[0], pods)
        tally.add(PDB_ALLOWED, float(max(allowed, 0)), workload.gauge_labels())
        shared = (f" pods of {', '.join(sorted(w.name for w in covered))}"
                  if len(covered) > 1 else "")
        tally.workload(workload, allowed >= 1, f"PDB {name_of(chosen[0])} {why} of "
                       f"{pods}{shared} blocks drains")
    return tally.outcome()


def _term_spreads(term: Mapping[str, Any], workload: Workload, keys: list[str]) -> bool:
    if term.get("topologyKey") not in keys:
        return False
    namespaces = term.get("namespaces") or []
    if namespaces and workload.namespace not in namespaces:
        return False
    return matches(term.get("labelSelector"), workload.pod_labels)


def spreads(workload: Workload, keys: list[str]) -> bool:
    """Pod anti-affinity against its own pods, or a topology spread, on one of `keys`."""
    pod = workload.pod_spec
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        if _term_spreads(term, workload, keys):
            return True
    for weighted in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        if _term_spreads(weighted.get("podAffinityTerm") or {}, workload, keys):
            return True
    for constraint in pod.get("topologySpreadConstraints") or []:
        if constraint.get("topologyKey") in keys and matches(
                constraint.get("labelSelector"), workload.pod_labels):
            return True
    return False


async def anti_affinity(spec: AntiAffinityCheck, cluster: Cluster, now: float) -> Outcome:
    """4.2.4: replicated workloads spread their pods over hosts or zones."""
    in_scope = await Scope(spec).workloads(cluster, SCALABLE)
    workloads = _replicated(spec, in_scope)
    if not workloads:
        return _none_replicated(spec, in_scope, "spreading")
    tally = Tally(spec, now, "replicated workloads without anti-affinity or spread",
                  "replicated workloads")
    for workload in workloads:
        tally.workload(workload, spreads(workload, spec.topology_keys),
                       "no anti-affinity/spread on " + "/".join(spec.topology_keys))
    return tally.outcome()


def _rollout(workload: Workload) -> tuple[int, int, str | None]:
    """(desired, available, problem) of one workload's rollout."""
    status = workload.obj.get("status") or {}
    desired = workload.replicas
    generation = int((workload.obj.get("metadata") or {}).get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if workload.kind == "StatefulSet":
        available = int(status.get("readyReplicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        if status.get("updateRevision") and status.get("currentRevision") not in (
                None, status.get("updateRevision")):
            return desired, available, "rollout in progress"
    else:
        available = int(status.get("availableReplicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
    if observed < generation:
        return desired, available, "spec change not yet observed"
    if available < desired:
        return desired, available, f"{available}/{desired} available"
    if updated < desired:
        return desired, available, f"{updated}/{desired} updated"
    return desired, available, None


async def deployments_available(spec: DeploymentsAvailableCheck, cluster: Cluster,
                                now: float) -> Outcome:
    """7.3: the app's Deployments (and StatefulSets if asked) are fully available."""
    scope = Scope(spec)
    workloads = await scope.workloads(cluster, ("Deployment",), required=not spec.workloads)
    tally = Tally(spec, now, "workloads not fully available")
    seen = {w.ref for w in workloads} | {w.name for w in workloads}
    for wanted in spec.workloads:
        if wanted not in seen:
            tally.judge(None, False, f"{wanted} (absent)")
    for workload in workloads:
        desired, available, problem = _rollout(workload)
        tally.add(REPLICAS_DESIRED, float(desired), workload.gauge_labels())
        tally.add(REPLICAS_AVAILABLE, float(available), workload.gauge_labels())
        tally.workload(workload, problem is None, problem or "")
    return tally.outcome(f"all {tally.evaluated} workloads fully available")


