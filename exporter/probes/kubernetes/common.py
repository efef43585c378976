"""What every assertion shares: scope, workload extraction and the verdict tally."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from exporter.model import Measurement, MetricFamily, Outcome, ProbeError, Reason
from exporter.probes.kubernetes import resources as r
from exporter.probes.kubernetes.exemptions import ExemptionState, exemption_for
from exporter.probes.kubernetes.records import Meta, metadata_of
from exporter.probes.kubernetes.selectors import matches, parse_selector
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import KubernetesCheck, ScopedCheck, WorkloadCheck

WORKLOAD_COMPLIANT = MetricFamily(
    "readiness_kubernetes_workload_compliant",
    "1 when the workload satisfies the check (or is exempted), 0 when it violates it.",
    ("namespace", "workload", "kind"))
NAMESPACE_COMPLIANT = MetricFamily(
    "readiness_kubernetes_namespace_compliant",
    "1 when the namespace satisfies the check (or is exempted), 0 when it violates it.",
    ("namespace",))
OBJECTS_EVALUATED = MetricFamily(
    "readiness_kubernetes_objects_evaluated",
    "Objects (workloads, namespaces, bindings...) the check evaluated in its last run.")
OBJECTS_FAILING = MetricFamily(
    "readiness_kubernetes_objects_failing",
    "Objects that violate the check and are not exempted.")
EXEMPTIONS = MetricFamily(
    "readiness_kubernetes_exemptions",
    "Violating objects carrying an exemption annotation for the check, by state "
    "(honoured, expired, invalid); only honoured ones are forgiven.",
    ("state",))


_EMPTY: Mapping[str, Any] = {}

_Obj = TypeVar("_Obj", bound=Mapping[str, Any])


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """`obj.metadata` (empty when absent)."""
    return metadata_of(obj) or _EMPTY


def ns_of(obj: Mapping[str, Any]) -> str:
    metadata = metadata_of(obj)
    if type(metadata) is Meta:  # a record: read the attribute
        return metadata.namespace or ""
    return (metadata or _EMPTY).get("namespace") or ""


def name_of(obj: Mapping[str, Any]) -> str:
    metadata = metadata_of(obj)
    if type(metadata) is Meta:
        return metadata.name or ""
    return (metadata or _EMPTY).get("name") or ""


def by_namespace(objs: Iterable[_Obj]) -> dict[str, list[_Obj]]:
    """`objs` grouped by their namespace (list order kept)."""
    grouped: dict[str, list[_Obj]] = {}
    for obj in objs:
        grouped.setdefault(ns_of(obj), []).append(obj)
    return grouped


@functools.lru_cache(maxsize=65_536)
def namespace_labels(namespace: str) -> Mapping[str, str]:
    """The labels of a namespace's gauges: one shared, read-only mapping per namespace
    (every namespace-level check of every cycle would otherwise build its own)."""
    return {"namespace": namespace}


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    metadata = metadata_of(obj)
    if type(metadata) is Meta:
        return metadata.labels or _EMPTY
    return (metadata or _EMPTY).get("labels") or _EMPTY


class Workload:
    """A Deployment, StatefulSet or DaemonSet as the assertions see it (fields read once)."""

    __slots__ = ("_gauge", "kind", "name", "namespace", "obj", "pod_labels", "pod_spec",
                 "replicas", "template")

    def __init__(self, kind: str, obj: Mapping[str, Any]) -> None:
        self.kind = kind
        self.obj = obj
        self._gauge: dict[str, str] | None = None
        metadata = obj.get("metadata") or _EMPTY
        self.namespace: str = metadata.get("namespace") or ""
        self.name: str = metadata.get("name") or ""
        spec = obj.get("spec") or _EMPTY
        self.template: Mapping[str, Any] = spec.get("template") or _EMPTY
        self.pod_labels: Mapping[str, str] = labels_of(self.template)
        self.pod_spec: Mapping[str, Any] = self.template.get("spec") or _EMPTY
        if kind == "DaemonSet":
            status = obj.get("status") or _EMPTY
            self.replicas = int(status.get("desiredNumberScheduled") or 0)
        else:
            value = spec.get("replicas")
            self.replicas = 1 if value is None else int(value)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def gauge_labels(self) -> Mapping[str, str]:
        """The bounded labels of this workload's gauges (one shared mapping)."""
        if self._gauge is None:
            self._gauge = {"namespace": self.namespace, "workload": self.name,
                           "kind": self.kind}
        return self._gauge


class Scope:
    """Which namespaces and objects a check looks at."""

    def __init__(self, spec: ScopedCheck) -> None:
        self.spec = spec
        self.workload_kinds = spec.workload_kinds if isinstance(spec, WorkloadCheck) else None
        self.workload_names = list(spec.workloads) if isinstance(spec, WorkloadCheck) else []
        self.include = list(spec.namespaces) if spec.namespaces is not None else None
        self.exclude = set(spec.exclude_namespaces)
        self.selector = parse_selector(spec.label_selector) if spec.label_selector else None

    def namespace_in(self, namespace: str) -> bool:
        if self.include is not None:
            return namespace in self.include
        return namespace not in self.exclude

    def object_in(self, obj: Mapping[str, Any]) -> bool:
        namespace = ns_of(obj)
        if namespace and not self.namespace_in(namespace):
            return False
        return self.selector is None or matches(self.selector, labels_of(obj))

    def _workload_in(self, workload: Workload) -> bool:
        if self.include is not None:
            if workload.namespace not in self.include:
                return False
        elif workload.namespace in self.exclude:
            return False
        return self.selector is None or matches(self.selector, labels_of(workload.obj))

    async def items(self, cluster: Cluster, resource: r.Resource, *,
                    filter_labels: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
        """Items of `resource` in scope (per-namespace LISTs when namespaces are given)."""
        listing = await cluster.list_scoped(resource, self.include, **kwargs)
        if filter_labels:
            return [item for item in listing.items if self.object_in(item)]
        if self.include is not None:
            return listing.items
        exclude = self.exclude
        return [item for item in listing.items if ns_of(item) not in exclude]

    async def namespaces(self, cluster: Cluster, *, need_labels: bool = False
                         ) -> tuple[list[dict[str, Any]], list[str]]:
        """Namespace objects in scope, and the included names that do not exist.

        With `namespaces:` set each one is read by GET. Under namespace-scoped RBAC that
        GET may be forbidden; checks that do not read namespace labels then go on with
        the names alone (their LISTs per namespace tell the rest). No namespace in
        scope at all is `error/config`; some of several absent is the caller's verdict.
        """
        if self.include is not None:
            try:
                got = await asyncio.gather(*(cluster.get(r.NAMESPACES, name)
                                             for name in self.include))
            except ProbeError as exc:
                if exc.reason is not Reason.AUTH or need_labels:
                    raise
                got = [{"metadata": {"name": name}} for name in self.include]
            found = [obj for obj in got if obj is not None]
            missing = [name for name, obj in zip(self.include, got, strict=True) if obj is None]
        else:
            listing = await cluster.list_all(r.NAMESPACES)
            found = [obj for obj in listing.items if name_of(obj) not in self.exclude]
            missing = []
        if self.selector is not None:
            found = [obj for obj in found if matches(self.selector, labels_of(obj))]
        if not found:
            raise await self.nothing(cluster, "namespace")
        return found, missing

    def where(self) -> str:
        """The scope in words, naming the options that set it (for error messages)."""
        if self.include is not None:
            text = f"namespaces {', '.join(self.include)} (`namespaces`)"
        else:
            text = ("every namespace except " + ", ".join(sorted(self.exclude))
                    + " (`exclude_namespaces`)" if self.exclude else "every namespace")
        if self.spec.label_selector:
            text += f" matching `label_selector: {self.spec.label_selector}`"
        return text

    async def absent(self, cluster: Cluster) -> list[str]:
        """The `namespaces:` entries that do not exist (none when they cannot be read)."""
        if self.include is None:
            return []
        try:
            got = await asyncio.gather(*(cluster.get(r.NAMESPACES, name)
                                         for name in self.include))
        except ProbeError:
            return []
        return [name for name, obj in zip(self.include, got, strict=True) if obj is None]

    async def nothing(self, cluster: Cluster, what: str, hint: str = "") -> ProbeError:
        """The `error/config` of an assertion that found no `what` to judge.

        "All 0 comply" would be a pass that claims nothing: a misspelled namespace or a
        selector matching nothing must be fixed in the configuration, so the message
        names the namespaces and selector to change.
        """
        absent = await self.absent(cluster)
        message = f"nothing in scope: no {what} in {self.where()}"
        if absent:
            message += f"; namespace {', '.join(absent)} does not exist"
        if hint:
            message += f"; {hint}"
        return ProbeError(Reason.CONFIG, message + "; change the scope or disable the check")

    async def workloads(self, cluster: Cluster, kinds: Iterable[str], *,
                        required: bool = True) -> list[Workload]:
        """Workloads of the given kinds in scope (built once per snapshot listing).

        None in scope is `error/config` (see `nothing`) unless `required` is false.
        """
        wanted = list(self.workload_kinds or kinds)
        result = [w for w in await self._listed(cluster, wanted) if self._workload_in(w)]
        if self.workload_names:
            names = set(self.workload_names)
            result = [w for w in result if w.ref in names or w.name in names]
        if required and not result:
            hint = (f"`workloads: {', '.join(self.workload_names)}` matched none"
                    if self.workload_names else "")
            raise await self.nothing(cluster, " or ".join(wanted), hint)
        return result

    async def all_workloads(self, cluster: Cluster, kinds: Iterable[str]) -> list[Workload]:
        """Every workload of `kinds` in the namespaces in scope, whatever
        `label_selector`, `workloads` and `workload_kinds` say (the pods a PDB covers
        belong to workloads the check may not judge)."""
        return [w for w in await self._listed(cluster, list(kinds))
                if self.namespace_in(w.namespace)]

    async def _listed(self, cluster: Cluster, kinds: list[str]) -> list[Workload]:
        """The listed workloads of `kinds` (built once per snapshot listing)."""
        listings = await asyncio.gather(*(cluster.list_scoped(r.WORKLOAD_RESOURCES[kind],
                                                              self.include) for kind in kinds))
        result: list[Workload] = []
        for kind, listing in zip(kinds, listings, strict=True):
            built = listing.derived.get("workloads")
            if built is None:
                built = listing.derived["workloads"] = [Workload(kind, o) for o in listing.items]
            result.extend(built)
        return result


@dataclass
class Tally:
    """Collects per-object verdicts, exemptions and gauges, and renders the outcome."""

    spec: KubernetesCheck
    now: float
    noun: str
    subject: str = "objects"
    evaluated: int = 0
    offenders: list[str] = field(default_factory=list)
    exempted: dict[ExemptionState, int] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def judge(self, obj: Mapping[str, Any] | None, ok: bool, label: str,
              gauge: tuple[MetricFamily, Mapping[str, str]] | None = None) -> bool:
        """Record one object's verdict; a violation may be forgiven by an exemption."""
        self.evaluated += 1
        if not ok and obj is not None:
            exemption = exemption_for(obj, {self.spec.id, self.spec.item_id}, self.now)
            if exemption.state is not ExemptionState.NONE:
                self.exempted[exemption.state] = self.exempted.get(exemption.state, 0) + 1
            if exemption.state is ExemptionState.HONOURED:
                ok = True
        if not ok:
            self.offenders.append(label)
        if gauge is not None:
            family, labels = gauge
            self.measurements.append(Measurement(family.name, 1.0 if ok else 0.0, labels))
        return ok

    def absent(self, missing: Iterable[str]) -> None:
        """Record each required namespace that does not exist as a violation."""
        for name in missing:
            self.judge(None, False, f"{name} (namespace absent)")

    def workload(self, workload: Workload, ok: bool, detail: str = "") -> bool:
        # The label names offenders only: not built for a workload that complies.
        label = "" if ok else f"{workload.ref} ({detail})" if detail else workload.ref
        return self.judge(workload.obj, ok, label,
                          (WORKLOAD_COMPLIANT, workload.gauge_labels()))

    def namespace(self, obj: Mapping[str, Any], ok: bool, detail: str = "") -> bool:
        name = name_of(obj)
        label = f"{name} ({detail})" if detail and not ok else name
        return self.judge(obj, ok, label, (NAMESPACE_COMPLIANT, namespace_labels(name)))

    def add(self, family: MetricFamily, value: float, labels: Mapping[str, str] | None = None,
            **more: str) -> None:
        self.measurements.append(Measurement(family.name, value, labels or more))

    def outcome(self, passed_message: str | None = None) -> Outcome:
        """The verdict; `error/config` when nothing was judged (never "all 0 comply")."""
        if not self.evaluated and not self.notes:
            where = (Scope(self.spec).where() if isinstance(self.spec, ScopedCheck)
                     else "the cluster")
            raise ProbeError(Reason.CONFIG, f"nothing in scope: no {self.subject} in "
                             f"{where}; change the scope or disable the check")
        failing = len(self.offenders)
        self.add(OBJECTS_EVALUATED, float(self.evaluated))
        self.add(OBJECTS_FAILING, float(failing))
        for state in (ExemptionState.HONOURED, ExemptionState.EXPIRED, ExemptionState.INVALID):
            self.add(EXEMPTIONS, float(self.exempted.get(state, 0)), state=state.value)
        honoured = self.exempted.get(ExemptionState.HONOURED, 0)
        tail = []
        if honoured:
            tail.append(f"{honoured} exempted")
        expired = self.exempted.get(ExemptionState.EXPIRED, 0)
        if expired:
            tail.append(f"{expired} with an expired exemption")
        invalid = self.exempted.get(ExemptionState.INVALID, 0)
        if invalid:
            tail.append(f"{invalid} with an invalid exemption (reason required)")
        suffix = f" ({', '.join(tail)})" if tail else ""
        measurements = tuple(self.measurements)
        if failing or self.notes:
            shown = self.offenders[: self.spec.max_offenders]
            more = f" and {failing - len(shown)} more" if failing > len(shown) else ""
            parts = list(self.notes)
            if failing:
                parts.append(f"{failing} of {self.evaluated} {self.noun}: "
                             f"{', '.join(shown)}{more}")
            return Outcome.failed("; ".join(parts) + suffix, measurements)
        message = passed_message or f"all {self.evaluated} {self.subject} comply"
        return Outcome.passed(message + suffix, measurements)


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString (`1`, `"25%"`) scaled against `total` like Kubernetes does."""
    if isinstance(value, str) and value.endswith("%"):
        percent = int(value[:-1])
        scaled = percent * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(value)
