"""`kind: kubernetes`: cluster, workload, mesh and secrets assertions on one snapshot.

`assert:` picks the assertion; every check of a cycle shares the connection's snapshot
(one paginated LIST per resource kind), so API requests grow with kinds and pages,
never with workloads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from exporter.model import (
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.kubernetes import assert_cluster as cl
from exporter.probes.kubernetes import assert_mesh as mesh
from exporter.probes.kubernetes import assert_secrets as sec
from exporter.probes.kubernetes import assert_workloads as wl
from exporter.probes.kubernetes.common import (
    EXEMPTIONS,
    NAMESPACE_COMPLIANT,
    OBJECTS_EVALUATED,
    OBJECTS_FAILING,
    WORKLOAD_COMPLIANT,
)
from exporter.probes.kubernetes.connection import cluster_of
from exporter.probes.kubernetes.selectors import SelectorError
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import KubernetesCheck

API_REQUESTS = MetricFamily(
    "readiness_kubernetes_api_requests_total",
    "API requests made by the connection this check uses (all checks sharing it).",
    type="counter")

Runner = Callable[[Any, Cluster, float], Awaitable[Outcome]]
"""An assertion; it takes its own model (`spec.VARIANTS`), which `evaluate` hands it."""

ASSERTIONS: dict[str, Runner] = {
    "server_version": cl.server_version,
    "namespaces_exist": cl.namespaces_exist,
    "resource_quotas": cl.resource_quotas,
    "network_policies": cl.network_policies,
    "pod_security": cl.pod_security,
    "resource_limits": wl.resource_limits,
    "resource_baseline": wl.resource_baseline,
    "hpa": wl.hpa,
    "pdb_coverage": wl.pdb_coverage,
    "anti_affinity": wl.anti_affinity,
    "deployments_available": wl.deployments_available,
    "istio_installed": mesh.istio_installed,
    "mtls_strict": mesh.mtls_strict,
    "sidecar_injection": mesh.sidecar_injection,
    "traffic_policies": mesh.traffic_policies,
    "secrets_present": sec.secrets_present,
    "etcd_encryption": sec.etcd_encryption,
    "secrets_rbac": sec.secrets_rbac,
    "helm_rollback": sec.helm_rollback,
    "tls_secrets": sec.tls_secrets,
}


async def evaluate(spec: KubernetesCheck, cluster: Cluster, now: float) -> Outcome:
    """Run one assertion against `cluster`, mapping expected failures to outcomes."""
    try:
        outcome = await ASSERTIONS[spec.assertion](spec, cluster, now)
    except ProbeError as exc:
        outcome = Outcome.errored(exc.reason, exc.message)
    except SelectorError as exc:
        outcome = Outcome.errored(Reason.PROTOCOL, f"an object carries an invalid "
                                  f"selector: {exc}")
    requests = Measurement(API_REQUESTS.name, float(cluster.stats.total))
    return Outcome(outcome.status, outcome.message, (*outcome.measurements, requests),
                   outcome.reason)


async def run(spec: KubernetesCheck, ctx: ProbeContext) -> Outcome:
    """Evaluate the check on the shared snapshot of its connection."""
    try:
        cluster = await cluster_of(ctx, spec.connection)
    except ProbeError as exc:
        return Outcome.errored(exc.reason, exc.message)
    return await evaluate(spec, cluster, ctx.now())


KIND = ProbeKind(
    name="kubernetes",
    spec=KubernetesCheck,
    run=run,
    summary="Kubernetes and Istio readiness (PDB, HPA, limits, quotas, policies, PSS, mTLS, "
            "Helm rollback) on one shared, paginated cluster snapshot per cycle.",
    metrics=(WORKLOAD_COMPLIANT, NAMESPACE_COMPLIANT, OBJECTS_EVALUATED, OBJECTS_FAILING,
             EXEMPTIONS, cl.SERVER_VERSION, wl.HPA_MIN_REPLICAS, wl.PDB_ALLOWED,
             wl.REPLICAS_DESIRED, wl.REPLICAS_AVAILABLE, sec.HELM_REVISIONS,
             sec.HELM_ROLLBACK, sec.TLS_EXPIRY, sec.ENCRYPTION_PROVIDER, API_REQUESTS),
)
