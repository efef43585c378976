"""The options of `kind: kubernetes` checks (one kind, `assert:` picks the assertion)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class KubernetesCheck(CheckSpec):
    """`kind: kubernetes` options; which ones apply depends on `assert`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    connection_fields: ClassVar[dict[str, str]] = {"connection": "kubernetes"}

    kind: Literal["kubernetes"]
    connection: str = Field(default="kubernetes", description="a kubernetes connection")
    assertion: Assertion = Field(alias="assert", description="which assertion to run")
    namespaces: list[str] | None = Field(
        default=None, min_length=1, description="only these namespaces; listed one by one "
        "(works with namespace-scoped RBAC). Unset: cluster-wide lists")
    exclude_namespaces: list[str] = Field(
        default=["kube-system", "kube-public", "kube-node-lease"],
        description="namespaces left out of a cluster-wide evaluation")
    label_selector: str | None = Field(default=None, description="only objects (workloads, "
                                       "namespaces) whose labels match this selector")
    max_offenders: int = Field(default=5, ge=1, le=50,
                               description="offending objects named in the message")
    workload_kinds: list[WorkloadKind] | None = Field(
        default=None, description="workload kinds evaluated (default depends on assert)")
    min_version: str = Field(default="1.24", pattern=r"^\d+\.\d+$")
    required_namespaces: list[str] = []
    pss_levels: list[Literal["privileged", "baseline", "restricted"]] = ["baseline",
                                                                         "restricted"]
    require_egress_deny: bool = False
    require_allow_rules: bool = Field(
        default=False, description="a workload must be selected by a policy with ingress "
        "rules, not only by the default-deny")
    quota_resources: list[str] = Field(default=[], description="keys every ResourceQuota "
                                       "must set under hard, e.g. limits.memory")
    min_replicas: int = Field(default=2, ge=1, description="HPA minReplicas floor; PDB and "
                              "anti-affinity apply to workloads with at least this many")
    topology_keys: list[str] = ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    include_init_containers: bool = False
    components: list[Component] = []
    baseline_mode: Literal["exact", "at_least"] = "exact"
    istio_namespace: str = "istio-system"
    istiod_deployment: str = "istiod"
    istio_groups: list[str] = ["networking.istio.io", "security.istio.io"]
    services: list[str] = Field(default=[], description="Services needing a DestinationRule "
                                "with a trafficPolicy (default: every Service in scope)")
    required_secrets: list[str] = Field(default=[], description="'namespace/name' of Secrets "
                                        "that must exist (needs secrets: metadata)")
    external_secrets: bool = Field(default=True, description="ExternalSecrets in scope must "
                                   "be Ready")
    broad_subjects: list[str] = Field(default=DEFAULT_BROAD_SUBJECTS, description="'Kind:name' "
                                      "subjects that must not read Secrets ('*' suffix ok)")
    workloads: list[str] = Field(default=[], description="'namespace/name' or 'name' of "
                                 "workloads (default: every one in scope)")
    releases: list[str] = Field(default=[], description="Helm release names (default: all)")
    warn_days: float = Field(default=30.0, gt=0)
    apiserver_namespace: str = "kube-system"
    apiserver_selector: str = "component=kube-apiserver"
    encryption_config_file: Path | None = Field(
        default=None, description="the EncryptionConfiguration as a file readable by the "
        "exporter (default: the path in the kube-apiserver pods' --encryption-provider-config)")
    encryption_config_configmap: str | None = Field(
        default=None, pattern=r"^[^/]+/[^/]+$", description="'namespace/name' of a ConfigMap "
        "holding a copy of the EncryptionConfiguration")
    encryption_config_key: str | None = Field(
        default=None, description="its key (default: the ConfigMap's only key)")

    @field_validator("label_selector", "apiserver_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_selector(value)
            except SelectorError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _needs(self) -> KubernetesCheck:
        if self.assertion == "namespaces_exist" and not self.required_namespaces:
            raise ValueError("assert namespaces_exist needs required_namespaces")
        if self.assertion == "resource_baseline" and not self.components:
            raise ValueError("assert resource_baseline needs components")
        if self.assertion == "secrets_present" and not (self.required_secrets
                                                         or self.external_secrets):
            raise ValueError("assert secrets_present needs required_secrets or "
                             "external_secrets: true")
        for ref in self.required_secrets:
            if ref.count("/") != 1:
                raise ValueError(f"required_secrets: {ref!r} is not 'namespace/name'")
        return self
