"""The options of `kind: kubernetes` checks: one model per assertion (issue 15).

`assert:` picks the assertion and, with it, the model: `KubernetesCheck` holds what
every assertion has (the connection, `max_offenders`), `ScopedCheck` adds the scope
(`namespaces`, `exclude_namespaces`, `label_selector`), `WorkloadCheck` the workload
filters; each assertion's model adds only its own options. Validating with
`KubernetesCheck` dispatches on `assert`, so an option of another assertion is an error
naming the assertion, not a silently ignored key. `VARIANTS` maps each assertion to its
model (the `schema` and `list` commands show them as a union discriminated on `assert`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from exporter.model import CheckSpec
from exporter.probes.kubernetes.quantities import parse_quantity
from exporter.probes.kubernetes.selectors import SelectorError, parse_selector

Assertion = Literal[
    "server_version", "namespaces_exist", "resource_quotas", "network_policies",
    "pod_security", "resource_limits", "resource_baseline", "hpa", "pdb_coverage",
    "anti_affinity", "deployments_available", "istio_installed", "mtls_strict",
    "sidecar_injection", "traffic_policies", "secrets_present", "etcd_encryption",
    "secrets_rbac", "helm_rollback", "tls_secrets",
]
WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]

DEFAULT_BROAD_SUBJECTS = [
    "Group:system:authenticated", "Group:system:unauthenticated",
    "Group:system:serviceaccounts", "Group:system:serviceaccounts:*",
    "User:system:anonymous", "ServiceAccount:default",
]


class Component(BaseModel):
    """One row of the recommended resource table (9.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="component name shown in messages")
    selector: str = Field(min_length=1, description="label selector of its workloads, "
                          "e.g. 'app.kubernetes.io/component=ai-engine'")
    container: str | None = Field(default=None, description="container name (default: "
                                  "every container of the workload)")
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        parse_quantity(value)
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        parse_selector(value)
        return value




def _check_selector(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_selector(value)
        except SelectorError as exc:
            raise ValueError(str(exc)) from None
    return value


class KubernetesCheck(CheckSpec):
    """`kind: kubernetes`: the options every assertion has; `assert` picks the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    connection_fields: ClassVar[dict[str, str]] = {"connection": "kubernetes"}

    kind: Literal["kubernetes"]
    connection: str = Field(default="kubernetes", description="a kubernetes connection")
    assertion: Assertion = Field(alias="assert", description="which assertion to run")
    max_offenders: int = Field(default=5, ge=1, le=50,
                               description="offending objects named in the message")

    variant_key: ClassVar[str] = "assertion"
    """The field whose value picks the model (`assert`)."""

    @classmethod
    def variants(cls) -> tuple[type[KubernetesCheck], ...]:
        """The model of each assertion, in `Assertion` order."""
        return tuple(VARIANTS.values())

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, data: Any, handler: Any) -> Any:
        """Validated through the base: the model of the assertion named by `assert`."""
        if cls is not KubernetesCheck or not isinstance(data, dict):
            return handler(data)
        model = VARIANTS.get(str(data.get("assert", data.get("assertion"))))
        if model is None:
            return handler(data)  # the Literal's error lists the assertions
        _reject_foreign(model, data)
        return model.model_validate(data)


class ScopedCheck(KubernetesCheck):
    """Assertions over the objects of some namespaces."""

    namespaces: list[str] | None = Field(
        default=None, min_length=1, description="only these namespaces; listed one by one "
        "(works with namespace-scoped RBAC). Unset: cluster-wide lists")
    exclude_namespaces: list[str] = Field(
        default=["kube-system", "kube-public", "kube-node-lease"],
        description="namespaces left out of a cluster-wide evaluation")
    label_selector: str | None = Field(default=None, description="only objects (workloads, "
                                       "namespaces, Services) whose labels match this selector")

    @field_validator("label_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        return _check_selector(value)


class WorkloadCheck(ScopedCheck):
    """Assertions over Deployments, StatefulSets and DaemonSets."""

    workload_kinds: list[WorkloadKind] | None = Field(
        default=None, description="workload kinds evaluated (default depends on assert)")
    workloads: list[str] = Field(default=[], description="'namespace/name' or 'name' of "
                                 "workloads (default: every one in scope)")


class ServerVersionCheck(KubernetesCheck):
    """4.1.1: the API server's version is at least `min_version`."""

    assertion: Literal["server_version"] = Field(alias="assert")
    min_version: str = Field(default="1.24", pattern=r"^\d+\.\d+$",
                             description="minimum major.minor")


class NamespacesExistCheck(KubernetesCheck):
    """4.1.2: the required namespaces exist."""

    assertion: Literal["namespaces_exist"] = Field(alias="assert")
    required_namespaces: list[str] = Field(min_length=1, description="names that must exist")


class ResourceQuotasCheck(ScopedCheck):
    """4.1.3: every namespace in scope has a ResourceQuota."""

    assertion: Literal["resource_quotas"] = Field(alias="assert")
    quota_resources: list[str] = Field(default=[], description="keys every ResourceQuota "
                                       "must set under hard, e.g. limits.memory")


class NetworkPoliciesCheck(WorkloadCheck):
    """4.1.4: default-deny per namespace, every workload selected by a policy."""

    assertion: Literal["network_policies"] = Field(alias="assert")
    require_egress_deny: bool = Field(default=False, description="also require a "
                                      "default-deny for egress")
    require_allow_rules: bool = Field(
        default=False, description="a workload must be selected by a policy with ingress "
        "rules, not only by the default-deny")


class PodSecurityCheck(ScopedCheck):
    """4.1.5: the namespaces enforce a Pod Security level."""

    assertion: Literal["pod_security"] = Field(alias="assert")
    pss_levels: list[Literal["privileged", "baseline", "restricted"]] = Field(
        default=["baseline", "restricted"], description="accepted enforce levels")


class ResourceLimitsCheck(WorkloadCheck):
    """4.2.1: every container sets cpu and memory requests and limits."""

    assertion: Literal["resource_limits"] = Field(alias="assert")
    include_init_containers: bool = Field(default=False, description="init containers too")


class ResourceBaselineCheck(WorkloadCheck):
    """9.1: containers' requests and limits match the component table."""

    assertion: Literal["resource_baseline"] = Field(alias="assert")
    components: list[Component] = Field(min_length=1, description="the component table")
    baseline_mode: Literal["exact", "at_least"] = Field(
        default="exact", description="quantities equal, or at least the row's")


class ReplicatedCheck(WorkloadCheck):
    """Assertions about workloads with several replicas."""

    min_replicas: int = Field(default=2, ge=1, description="HPA minReplicas floor; PDB and "
                              "anti-affinity apply to workloads with at least this many")


class HpaCheck(ReplicatedCheck):
    """4.2.2: every scalable workload is targeted by an HPA with minReplicas >= floor."""

    assertion: Literal["hpa"] = Field(alias="assert")


class PdbCoverageCheck(ReplicatedCheck):
    """4.2.3: replicated workloads are covered by one PDB allowing a disruption."""

    assertion: Literal["pdb_coverage"] = Field(alias="assert")


class AntiAffinityCheck(ReplicatedCheck):
    """4.2.4: replicated workloads spread their pods over hosts or zones."""

    assertion: Literal["anti_affinity"] = Field(alias="assert")
    topology_keys: list[str] = Field(
        default=["kubernetes.io/hostname", "topology.kubernetes.io/zone"],
        description="accepted topology keys")


class DeploymentsAvailableCheck(WorkloadCheck):
    """7.3: the app's Deployments (and StatefulSets if asked) are fully available."""

    assertion: Literal["deployments_available"] = Field(alias="assert")


class IstioInstalledCheck(KubernetesCheck):
    """4.3.1: the Istio API groups are served and istiod is available."""

    assertion: Literal["istio_installed"] = Field(alias="assert")
    istio_namespace: str = Field(default="istio-system", description="Istio root namespace")
    istiod_deployment: str = Field(default="istiod", description="istiod Deployment name")
    istio_groups: list[str] = Field(default=["networking.istio.io", "security.istio.io"],
                                    description="API groups that must be served")


class MtlsStrictCheck(ScopedCheck):
    """4.3.2: STRICT mesh-wide or per namespace, no PERMISSIVE/DISABLE override."""

    assertion: Literal["mtls_strict"] = Field(alias="assert")
    istio_namespace: str = Field(default="istio-system", description="Istio root namespace "
                                 "(the mesh-wide PeerAuthentication lives here)")


class SidecarInjectionCheck(ScopedCheck):
    """4.3.3: namespaces inject and running pods carry istio-proxy."""

    assertion: Literal["sidecar_injection"] = Field(alias="assert")


class TrafficPoliciesCheck(ScopedCheck):
    """4.3.4: Services have a DestinationRule with a trafficPolicy."""

    assertion: Literal["traffic_policies"] = Field(alias="assert")
    services: list[str] = Field(default=[], description="Services needing a DestinationRule "
                                "with a trafficPolicy (default: every Service in scope)")


class SecretsPresentCheck(ScopedCheck):
    """4.4.1: required Secrets exist and ExternalSecrets are Ready."""

    assertion: Literal["secrets_present"] = Field(alias="assert")
    required_secrets: list[str] = Field(default=[], description="'namespace/name' of Secrets "
                                        "that must exist (needs secrets: metadata)")
    external_secrets: bool = Field(default=True, description="ExternalSecrets in scope must "
                                   "be Ready")

    @model_validator(mode="after")
    def _needs(self) -> SecretsPresentCheck:
        if not (self.required_secrets or self.external_secrets):
            raise ValueError("assert secrets_present needs required_secrets or "
                             "external_secrets: true")
        for ref in self.required_secrets:
            if ref.count("/") != 1:
                raise ValueError(f"required_secrets: {ref!r} is not 'namespace/name'")
        return self


class EtcdEncryptionCheck(KubernetesCheck):
    """4.4.2: Secrets are written with an encrypting provider (EncryptionConfiguration)."""

    assertion: Literal["etcd_encryption"] = Field(alias="assert")
    apiserver_namespace: str = Field(default="kube-system", description="where the "
                                     "kube-apiserver static pods live")
    apiserver_selector: str = Field(default="component=kube-apiserver",
                                    description="their labels")
    encryption_config_file: Path | None = Field(
        default=None, description="the EncryptionConfiguration as a file readable by the "
        "exporter (default: the path in the kube-apiserver pods' --encryption-provider-config)")
    encryption_config_configmap: str | None = Field(
        default=None, pattern=r"^[^/]+/[^/]+$", description="'namespace/name' of a ConfigMap "
        "holding a copy of the EncryptionConfiguration")
    encryption_config_key: str | None = Field(
        default=None, description="its key (default: the ConfigMap's only key)")

    @field_validator("apiserver_selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        _check_selector(value)
        return value


class SecretsRbacCheck(ScopedCheck):
    """4.4.3: no binding grants Secrets read to broad subjects."""

    assertion: Literal["secrets_rbac"] = Field(alias="assert")
    broad_subjects: list[str] = Field(default=DEFAULT_BROAD_SUBJECTS, description="'Kind:name' "
                                      "subjects that must not read Secrets ('*' suffix ok)")


class HelmRollbackCheck(ScopedCheck):
    """8.1: each Helm release has an earlier revision to roll back to."""

    assertion: Literal["helm_rollback"] = Field(alias="assert")
    releases: list[str] = Field(default=[], description="Helm release names (default: all)")


class TlsSecretsCheck(ScopedCheck):
    """1.2.4: kubernetes.io/tls Secrets do not expire within warn_days."""

    assertion: Literal["tls_secrets"] = Field(alias="assert")
    warn_days: float = Field(default=30.0, gt=0, description="minimum remaining validity")


VARIANTS: dict[str, type[KubernetesCheck]] = {
    get_args(model.model_fields["assertion"].annotation)[0]: model
    for model in (
        ServerVersionCheck, NamespacesExistCheck, ResourceQuotasCheck, NetworkPoliciesCheck,
        PodSecurityCheck, ResourceLimitsCheck, ResourceBaselineCheck, HpaCheck,
        PdbCoverageCheck, AntiAffinityCheck, DeploymentsAvailableCheck, IstioInstalledCheck,
        MtlsStrictCheck, SidecarInjectionCheck, TrafficPoliciesCheck, SecretsPresentCheck,
        EtcdEncryptionCheck, SecretsRbacCheck, HelmRollbackCheck, TlsSecretsCheck)
}
"""Each assertion's model."""
assert set(VARIANTS) == set(get_args(Assertion)), "an assertion without its model"


def _keys(model: type[BaseModel]) -> set[str]:
    return {key for name, info in model.model_fields.items()
            for key in (name, info.alias) if key}


def applies_to(option: str) -> list[str]:
    """The assertions that have `option`."""
    return [name for name, model in VARIANTS.items() if option in _keys(model)]


def _reject_foreign(model: type[KubernetesCheck], data: dict[str, Any]) -> None:
    """An option of other assertions only: an error naming the assertion and the owners."""
    own = _keys(model)
    errors: list[InitErrorDetails] = []
    for key, value in data.items():
        if not isinstance(key, str) or key in own:
            continue
        owners = applies_to(key)
        if owners:
            errors.append(InitErrorDetails(
                type=PydanticCustomError(
                    "option_not_applicable",
                    "does not apply to assert: {assertion} (an option of {owners})",
                    {"assertion": data.get("assert", data.get("assertion")),
                     "owners": ", ".join(owners)}),
                loc=(key,), input=value))
    if errors:
        raise ValidationError.from_exception_data(model.__name__, errors)
