"""Secrets assertions (4.4.x, 8.1, 1.2.4): presence, etcd encryption, RBAC, Helm, TLS."""

from __future__ import annotations

import asyncio
import base64
import fnmatch
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter.model import Measurement, MetricFamily, Outcome, ProbeError, Reason
from exporter.probes.kubernetes import resources as r
from exporter.probes.kubernetes.common import Scope, Tally, labels_of, name_of, ns_of
from exporter.probes.kubernetes.encryption import (
    MAX_BYTES,
    EncryptionConfigInvalid,
    SecretsEncryption,
    provider_config_path,
    secrets_encryption,
)
from exporter.probes.kubernetes.resources import Resource
from exporter.probes.kubernetes.snapshot import Cluster
from exporter.probes.kubernetes.spec import (
    EtcdEncryptionCheck,
    HelmRollbackCheck,
    SecretsPresentCheck,
    SecretsRbacCheck,
    TlsSecretsCheck,
)

HELM_REVISIONS = MetricFamily(
    "readiness_kubernetes_helm_release_revisions",
    "Revisions kept in the Helm history of the release (from Secret metadata only).",
    ("namespace", "release"))
HELM_ROLLBACK = MetricFamily(
    "readiness_kubernetes_helm_rollback_available",
    "1 when the release has an earlier deployed/superseded revision to roll back to.",
    ("namespace", "release"))
TLS_EXPIRY = MetricFamily(
    "readiness_kubernetes_tls_secret_expiry_timestamp_seconds",
    "Earliest notAfter of the certificates in a kubernetes.io/tls Secret.",
    ("namespace", "secret"))

ENCRYPTION_PROVIDER = MetricFamily(
    "readiness_kubernetes_secrets_encryption_provider_info",
    "The provider new Secrets are written with in etcd, from the EncryptionConfiguration "
    "(value 1; identity = unencrypted).", ("provider",))

READ_VERBS = {"get", "list", "watch", "*"}
_LEVEL = {"none": 0, "metadata": 1, "data": 2}


def _require(cluster: Cluster, level: str, why: str) -> None:
    if _LEVEL[cluster.spec.secrets] < _LEVEL[level]:
        raise ProbeError(Reason.CONFIG, f"{why} needs `secrets: {level}` on the kubernetes "
                         f"connection (reading Secrets is opt-in; it is "
                         f"`{cluster.spec.secrets}`)")


def _ready(obj: Mapping[str, Any]) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


async def secrets_present(spec: SecretsPresentCheck, cluster: Cluster, now: float) -> Outcome:
    """4.4.1: required Secrets exist (metadata only) and ExternalSecrets are Ready."""
    tally = Tally(spec, now, "Secrets missing or ExternalSecrets not Ready")
    if spec.required_secrets:
        _require(cluster, "metadata", "required_secrets")
        wanted = [ref.split("/", 1) for ref in spec.required_secrets]
        spaces = sorted({ns for ns, _ in wanted})
        lists = await asyncio.gather(*(cluster.list_all(r.SECRETS, ns, metadata_only=True)
                                       for ns in spaces))
        present = {(ns_of(obj) or ns, name_of(obj)) for ns, listing in zip(spaces, lists,
                                                                           strict=True)
                   for obj in listing.items}
        for ns, name in wanted:
            tally.judge(None, (ns, name) in present, f"Secret {ns}/{name} (absent)")
    external = 0
    if spec.external_secrets:
        scope = Scope(spec)
        listing = await cluster.list_scoped(r.EXTERNAL_SECRETS, scope.include)
        items = [i for i in listing.items if scope.namespace_in(ns_of(i))]
        external = len(items)
        for item in items:
            tally.judge(item, _ready(item), f"ExternalSecret {ns_of(item)}/{name_of(item)} "
                        "(not Ready)")
        if not items and not spec.required_secrets:
            if not listing.served:
                raise ProbeError(Reason.CONFIG, "the API does not serve ExternalSecret and "
                                 "no required_secrets are configured: list the Secrets the "
                                 "application needs in `required_secrets`")
            raise await scope.nothing(cluster, "ExternalSecret",
                                      "or list the Secrets in `required_secrets`")
    return tally.outcome(f"{len(spec.required_secrets)} required Secrets present, "
                         f"{external} ExternalSecrets Ready")


CONFIG_MAPS = Resource("configmaps")
ATTESTED = ("the attested alternative applies (a signed 4.4.2 attestation, the preset's "
            "4.4.2-attested)")


def _read_text(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError("larger than 1 MiB")
    return data.decode("utf-8")


async def _file_text(path: Path) -> str | None:
    """The file's text, or None when this process cannot read it."""
    try:
        return await asyncio.to_thread(_read_text, path)
    except (OSError, ValueError):
        return None


def _judge(text: str, source: str) -> SecretsEncryption:
    try:
        return secrets_encryption(text, source)
    except EncryptionConfigInvalid as exc:
        raise ProbeError(Reason.CONFIG, str(exc)) from None


def _provider_gauge(found: SecretsEncryption) -> Measurement:
    return Measurement(ENCRYPTION_PROVIDER.name, 1.0, {"provider": found.provider})


def _verdict(found: SecretsEncryption, source: str) -> Outcome:
    measurements = (_provider_gauge(found),)
    if found.encrypted:
        return Outcome.passed(f"Secrets are written with {found.detail} (first provider "
                              f"for secrets in {source})", measurements)
    return Outcome.failed(f"Secrets are stored unencrypted in etcd: the first provider for "
                          f"secrets is {found.detail} in {source}", measurements)


async def _configmap_text(spec: EtcdEncryptionCheck, cluster: Cluster) -> tuple[str, str]:
    ref = str(spec.encryption_config_configmap)
    namespace, name = ref.split("/", 1)
    source = f"ConfigMap {ref} (`encryption_config_configmap`)"
    obj = await cluster.get(CONFIG_MAPS, name, namespace)
    if obj is None:
        raise ProbeError(Reason.CONFIG, f"{source} does not exist")
    data = obj.get("data") or {}
    key = spec.encryption_config_key
    if key is None and len(data) == 1:
        key = next(iter(data))
    if key is None or key not in data:
        raise ProbeError(Reason.CONFIG, f"{source} has no key "
                         f"{key or '(several: set encryption_config_key)'}")
    return str(data[key]), f"ConfigMap {ref} key {key}"


async def etcd_encryption(spec: EtcdEncryptionCheck, cluster: Cluster, now: float) -> Outcome:
    """4.4.2: the first provider for Secrets in the EncryptionConfiguration is not identity.

    The configuration is read from `encryption_config_file`, from
    `encryption_config_configmap`, or from the path each kube-apiserver pod passes in
    `--encryption-provider-config` when that file is readable here. Not visible (managed
    control plane, another node): `skipped`, the attested alternative applies.
    """
    if spec.encryption_config_file is not None:
        path = spec.encryption_config_file
        text = await _file_text(path)
        if text is None:
            raise ProbeError(Reason.CONFIG, f"encryption_config_file: {path} cannot be read")
        source = f"{path} (`encryption_config_file`)"
        return _verdict(_judge(text, source), source)
    if spec.encryption_config_configmap is not None:
        text, source = await _configmap_text(spec, cluster)
        return _verdict(_judge(text, source), source)
    return await _from_apiserver_pods(spec, cluster, now)


async def _from_apiserver_pods(spec: EtcdEncryptionCheck, cluster: Cluster,
                               now: float) -> Outcome:
    try:
        listing = await cluster.list_all(r.PODS, spec.apiserver_namespace,
                                         label_selector=spec.apiserver_selector)
    except ProbeError as exc:
        if exc.reason is not Reason.AUTH:
            raise
        return Outcome.skipped(f"the EncryptionConfiguration is not visible: API server "
                               f"pods cannot be read ({exc.message}); {ATTESTED}")
    if not listing.items:
        return Outcome.skipped(f"the EncryptionConfiguration is not visible: no pod matching "
                               f"{spec.apiserver_selector} in {spec.apiserver_namespace} "
                               f"(managed control plane?); {ATTESTED}")
    tally = Tally(spec, now, "kube-apiserver pods writing Secrets unencrypted",
                  "kube-apiserver pods")
    unseen: list[str] = []
    providers: set[str] = set()
    for pod in listing.items:
        ref = f"{ns_of(pod)}/{name_of(pod)}"
        where = provider_config_path(pod)
        if where is None:
            tally.judge(pod, False, f"{ref} (no --encryption-provider-config: identity)")
            continue
        text = await _file_text(Path(where))
        if text is None:
            unseen.append(where)
            continue
        found = _judge(text, f"{where} (--encryption-provider-config of {ref})")
        providers.add(found.detail)
        if not any(m.labels.get("provider") == found.provider for m in tally.measurements):
            tally.measurements.append(_provider_gauge(found))
        tally.judge(pod, found.encrypted, f"{ref} (first provider for secrets in {where} "
                    f"is {found.detail})")
    if unseen and not tally.offenders:
        return Outcome.skipped(
            f"the EncryptionConfiguration is not visible: {', '.join(sorted(set(unseen)))} "
            f"(--encryption-provider-config) cannot be read from the exporter; {ATTESTED}")
    return tally.outcome(f"all {tally.evaluated} kube-apiserver pods write Secrets with "
                         f"{', '.join(sorted(providers))}")


def _grants_secret_read(role: Mapping[str, Any] | None) -> bool:
    for rule in (role or {}).get("rules") or []:
        groups = rule.get("apiGroups") or []
        kinds = rule.get("resources") or []
        verbs = set(rule.get("verbs") or [])
        if rule.get("resourceNames"):
            continue
        if ("" in groups or "*" in groups) and ("secrets" in kinds or "*" in kinds) \
                and verbs & READ_VERBS:
            return True
    return False


def _broad(subject: Mapping[str, Any], patterns: list[str]) -> bool:
    text = f"{subject.get('kind')}:{subject.get('name')}"
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)


async def secrets_rbac(spec: SecretsRbacCheck, cluster: Cluster, now: float) -> Outcome:
    """4.4.3: no (Cluster)RoleBinding grants Secrets read to broad subjects."""
    scope = Scope(spec)
    crbs, croles, rbs, roles = await asyncio.gather(
        cluster.list_all(r.CLUSTER_ROLE_BINDINGS), cluster.list_all(r.CLUSTER_ROLES),
        scope.items(cluster, r.ROLE_BINDINGS), scope.items(cluster, r.ROLES))
    cluster_roles = {name_of(role): role for role in croles.items}
    ns_roles = {(ns_of(role), name_of(role)): role for role in roles}
    tally = Tally(spec, now, "bindings granting Secrets read to broad subjects")
    bindings = [(b, True) for b in crbs.items] + [(b, False) for b in rbs]
    for binding, clusterwide in bindings:
        ref = binding.get("roleRef") or {}
        role = (cluster_roles.get(str(ref.get("name"))) if ref.get("kind") == "ClusterRole"
                else ns_roles.get((ns_of(binding), str(ref.get("name")))))
        broad = [f"{s.get('kind')}:{s.get('name')}" for s in binding.get("subjects") or []
                 if _broad(s, spec.broad_subjects)]
        bad = bool(broad) and _grants_secret_read(role)
        label = ("ClusterRoleBinding " + name_of(binding) if clusterwide
                 else f"RoleBinding {ns_of(binding)}/{name_of(binding)}")
        tally.judge(binding, not bad, f"{label} -> {', '.join(broad[:2])}")
    return tally.outcome(f"none of {tally.evaluated} bindings grants Secrets read to a "
                         "broad subject")


async def helm_rollback(spec: HelmRollbackCheck, cluster: Cluster, now: float) -> Outcome:
    """8.1: each Helm release has an earlier revision to roll back to (metadata only)."""
    _require(cluster, "metadata", "reading Helm history")
    scope = Scope(spec)
    listing = await cluster.list_scoped(r.SECRETS, scope.include, label_selector="owner=helm",
                                        metadata_only=True)
    history: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for obj in listing.items:
        labels = labels_of(obj)
        if not scope.namespace_in(ns_of(obj)) or "name" not in labels:
            continue
        try:
            version = int(labels.get("version", ""))
        except ValueError:
            continue
        history[(ns_of(obj), labels["name"])].append((version, labels.get("status", "")))
    tally = Tally(spec, now, "Helm releases without a rollback target")
    names = set(spec.releases)
    for wanted in spec.releases:
        if not any(release == wanted for _, release in history):
            tally.judge(None, False, f"{wanted} (no release found)")
    for (namespace, release), revisions in sorted(history.items()):
        if names and release not in names:
            continue
        deployed = [v for v, status in revisions if status == "deployed"]
        current = max(deployed) if deployed else None
        earlier = [v for v, status in revisions if status in ("superseded", "deployed")
                   and current is not None and v < current]
        labels = {"namespace": namespace, "release": release}
        tally.add(HELM_REVISIONS, float(len(revisions)), labels)
        tally.add(HELM_ROLLBACK, 1.0 if earlier else 0.0, labels)
        detail = "no deployed revision" if current is None else (
            f"revision {current} has no earlier deployed/superseded revision")
        tally.judge(None, bool(earlier), f"{namespace}/{release} ({detail})")
    return tally.outcome(f"all {tally.evaluated} releases can roll back")


def _earliest_expiry(pem_b64: str) -> float:
    from cryptography import x509

    data = base64.b64decode(pem_b64)
    certs = x509.load_pem_x509_certificates(data)
    return min(cert.not_valid_after_utc.timestamp() for cert in certs)


async def tls_secrets(spec: TlsSecretsCheck, cluster: Cluster, now: float) -> Outcome:
    """1.2.4: certificates in kubernetes.io/tls Secrets do not expire within warn_days."""
    _require(cluster, "data", "reading TLS Secrets")
    scope = Scope(spec)
    namespaces: list[str | None] = [None] if scope.include is None else [*scope.include]
    lists = await asyncio.gather(*(cluster.list_all(r.SECRETS, ns, keep=False,
                                                field_selector="type=kubernetes.io/tls")
                                   for ns in namespaces))
    tally = Tally(spec, now, f"TLS Secrets expiring within {spec.warn_days:g} days")
    horizon = now + spec.warn_days * 86400
    for listing in lists:
        for secret in listing.items:
            if secret.get("type") != "kubernetes.io/tls" or not scope.object_in(secret):
                continue
            ref = f"{ns_of(secret)}/{name_of(secret)}"
            pem = (secret.get("data") or {}).get("tls.crt")
            secret.pop("data", None)
            try:
                expiry = await asyncio.to_thread(_earliest_expiry, str(pem or ""))
            except Exception:  # any parse failure is reported without content
                tally.judge(secret, False, f"{ref} (tls.crt unreadable)")
                continue
            tally.add(TLS_EXPIRY, expiry, namespace=ns_of(secret), secret=name_of(secret))
            days = (expiry - now) / 86400
            detail = "expired" if days < 0 else f"expires in {days:.0f} days"
            tally.judge(secret, expiry > horizon, f"{ref} ({detail})")
    return tally.outcome(f"all {tally.evaluated} TLS Secrets valid beyond "
                         f"{spec.warn_days:g} days")
