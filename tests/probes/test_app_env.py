"""The application's environment through the Kubernetes API (issue 11: 1.2.2, 1.2.3, 2.1.1,
6.1): the real kubernetes-asyncio client, through a kubeconfig, against the stand-in API
server of k8s_apiserver.py serving the objects of k8s_fixtures/appenv/ (shaped like
`kubectl get -o json`). Each rule is shown both ways, with the near miss the old rule (the
exporter's own environment, presence only) let through.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.runner import run_check
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

FIXTURES = Path(__file__).parent / "k8s_fixtures" / "appenv"
ENV_EXAMPLE = FIXTURES / "env.example"
K8S_TOKEN = "tok-APPENV-bearer-do-not-leak-8812"
LITERAL = "Lit3ral-DB-Passw0rd-do-not-leak-4471"
WEAK_JWT = "qbitel-production-jwt-secret-2024"
WORKLOAD = {"namespace": "qbitel", "selector": "app.kubernetes.io/part-of=qbitel"}
MARKETPLACE = ["STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "AWS_ACCESS_KEY_ID",
               "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"]

Objects = list[dict[str, Any]]
Start = Callable[..., Awaitable[RuntimeContext]]


def fixture_objects() -> Objects:
    """Every object of k8s_fixtures/appenv (a fresh copy to change)."""
    items: Objects = []
    for path in sorted(FIXTURES.glob("*.json")):
        items += json.loads(path.read_text())["items"]
    return copy.deepcopy(items)


def secret_values() -> list[str]:
    """Every value stored in the fixture Secrets (none may appear in any output)."""
    return [base64.b64decode(v).decode() for o in fixture_objects() if o["kind"] == "Secret"
            for v in o["data"].values()]


def _pod_specs(objects: Objects) -> Iterator[dict[str, Any]]:
    for obj in objects:
        if obj["kind"] == "Deployment":
            yield obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod" and obj["metadata"]["name"].startswith("qbitel-api"):
            yield obj["spec"]


def set_env(objects: Objects, name: str, entry: dict[str, Any] | None) -> Objects:
    """Replace (or add, or with None remove) env entry `name` of the api container, in the
    Deployment's template and in its running pods alike."""
    for spec in _pod_specs(objects):
        container = spec["containers"][0]
        env = [e for e in container["env"] if e["name"] != name]
        container["env"] = env + ([{"name": name, **entry}] if entry is not None else [])
    return objects


def set_config(objects: Objects, key: str, value: str | None, name: str = "qbitel-config"
               ) -> Objects:
    """Set (or with None remove) a key of a ConfigMap."""
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == name:
            if value is None:
                obj["data"].pop(key, None)
            else:
                obj["data"][key] = value
    return objects


def set_secret(objects: Objects, key: str, value: str) -> Objects:
    for obj in objects:
        if obj["kind"] == "Secret":
            obj["data"][key] = base64.b64encode(value.encode()).decode()
    return objects


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start a stand-in API server with the given objects; the context of a `kubernetes`
    connection to it (`secrets:` as asked)."""
    servers: list[FakeApiServer] = []
    contexts: list[RuntimeContext] = []

    async def _start(objects: Objects | None = None, secrets: str = "data"
                     ) -> RuntimeContext:
        server = FakeApiServer(token=K8S_TOKEN)
        server.add(fixture_objects() if objects is None else objects)
        await server.start(free_port())
        servers.append(server)
        kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{len(servers)}",
                                      f"http://127.0.0.1:{server.port}", K8S_TOKEN)
        document = {"connections": {"kubernetes": {
            "kind": "kubernetes", "kubeconfig": str(kubeconfig), "context": "test",
            "request_timeout": "3s", "secrets": secrets}}, "checks": []}
        cfg = config.load_document(document, "test", tmp_path, environ={})
        ctx = RuntimeContext(cfg.connections, state_dir=tmp_path / f"state-{len(servers)}")
        contexts.append(ctx)
        return ctx

    _start.servers = servers  # type: ignore[attr-defined]
    yield _start
    for ctx in contexts:
        await ctx.aclose()
    for server in servers:
        await server.stop()


def preset_checks(tmp_path: Path, *, workload: bool = True) -> dict[str, CheckSpec]:
    """The qbitel-production preset's checks of these items, as a user configures them."""
    (tmp_path / ".env.example").write_text(ENV_EXAMPLE.read_text())
    document: dict[str, Any] = {"include": ["qbitel-production"],
                                "inputs": {"app_workload": WORKLOAD if workload else None}}
    cfg = config.load_document(document, "test", tmp_path, environ={})
    return {c.id: c for c in cfg.checks
            if c.id in ("1.2.2", "1.2.3", "2.1.1", "6.1", "6.1-encryption-key")}


def default_checks() -> dict[str, CheckSpec]:
    """The embedded default's checks: the old rules (the exporter's own environment)."""
    return {c.id: c for c in config.load(None, {}).checks}


async def judge(spec: CheckSpec, ctx: RuntimeContext,
                caplog: pytest.LogCaptureFixture) -> Outcome:
    """Run through the runner (hints, redaction) and assert no secret leaked."""
    with caplog.at_level(logging.DEBUG):
        outcome, _ = await run_check(spec, ctx)
    texts = [outcome.message, *(json.dumps(dict(m.labels)) for m in outcome.measurements),
             *(r.getMessage() for r in caplog.records),
             *(json.dumps(getattr(r, "__dict__", {}), default=str) for r in caplog.records)]
    for text in texts:
        for secret in (*secret_values(), LITERAL, WEAK_JWT, K8S_TOKEN):
            assert secret not in text, (secret, text)
    return outcome


# --------------------------------------------------------------------------- 6.1


async def test_compliant_application_passes_6_1_from_its_pods(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = await start()
    outcome = await judge(preset_checks(tmp_path)["6.1"], ctx, caplog)
    assert outcome.status is Status.PASS, outcome.message
    assert "TLS_ENABLED is true" in outcome.message
    assert "ReplicaSet/qbitel-api-7d9f8c6b5" in outcome.message  # the running pods' owner
    assert "qbitel-migrate" not in outcome.message  # a finished Job's pod is not judged
    present = {m.labels["variable"]: m.value for m in outcome.measurements
               if m.family == "readiness_env_variable_present"}
    assert present["JWT_SECRET"] == 1.0  # a key of the envFrom Secret (name only)
    assert present["TLS_CERT_FILE"] == 1.0  # required because TLS is on
    assert "STRIPE_API_KEY" not in present  # Marketplace off: its block is not required


async def test_tls_disabled_fails_where_the_old_presence_rule_passed(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the old rule: TLS_ENABLED=false in the exporter's environment passes 6.1
    for line in ENV_EXAMPLE.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            monkeypatch.setenv(line.split("=")[0], "set-for-the-old-rule")
    monkeypatch.setenv("TLS_ENABLED", "false")
    old = await judge(default_checks()["6.1"], await start(), caplog)
    assert old.status is Status.PASS, old.message
    env_mode = await judge(preset_checks(tmp_path, workload=False)["6.1"], await start(),
                           caplog)
    assert env_mode.status is Status.FAIL and "TLS_ENABLED is not true" in env_mode.message
    # the application's pods: TLS_ENABLED=false in its ConfigMap, and as a literal
    ctx = await start(set_config(fixture_objects(), "TLS_ENABLED", "false"))
    outcome = await judge(preset_checks(tmp_path)["6.1"], ctx, caplog)
    assert outcome.status is Status.FAIL
    assert "ReplicaSet/qbitel-api-7d9f8c6b5: TLS_ENABLED is not true" in outcome.message
    expected = [m.value for m in outcome.measurements
                if m.family == "readiness_env_variable_expected"]
    assert expected == [0.0]
    literal = set_env(fixture_objects(), "TLS_ENABLED", {"value": "False"})
    outcome = await judge(preset_checks(tmp_path)["6.1"], await start(literal), caplog)
    assert outcome.status is Status.FAIL and "TLS_ENABLED is not true" in outcome.message


async def test_tls_enabled_requires_the_certificate_variables(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    objects = set_config(fixture_objects(), "TLS_KEY_FILE", None)
    outcome = await judge(preset_checks(tmp_path)["6.1"], await start(objects), caplog)
    assert outcome.status is Status.FAIL
    assert outcome.message.endswith("required missing: TLS_KEY_FILE")


async def test_tls_switch_from_a_secret_cannot_be_verified(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    objects = set_env(fixture_objects(), "TLS_ENABLED", {"valueFrom": {"secretKeyRef": {
        "name": "qbitel-app-secrets", "key": "JWT_SECRET"}}})
    outcome = await judge(preset_checks(tmp_path)["6.1"], await start(objects), caplog)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "TLS_ENABLED comes from Secret qbitel-app-secrets key JWT_SECRET: its value " \
           "cannot be verified" in outcome.message


async def test_marketplace_block_is_required_only_when_enabled(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["6.1"]
    enabled = set_config(fixture_objects(), "MARKETPLACE_ENABLED", "true")
    outcome = await judge(spec, await start(enabled), caplog)
    assert outcome.status is Status.FAIL
    assert f"required missing: {', '.join(MARKETPLACE)}" in outcome.message
    for name in MARKETPLACE[:4]:
        enabled = set_secret(enabled, name, f"value-of-{name.lower()}-0000")
    enabled = set_config(enabled, "S3_BUCKET", "qbitel-marketplace")
    outcome = await judge(spec, await start(enabled), caplog)
    assert outcome.status is Status.PASS, outcome.message


async def test_envfrom_secret_unreadable_is_an_error_not_a_pass(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for secrets in ("none", "metadata"):
        ctx = await start(secrets=secrets)
        outcome = await judge(preset_checks(tmp_path)["6.1"], ctx, caplog)
        assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
        assert "JWT_SECRET (may come from Secret qbitel-app-secrets, whose key names need " \
               "connections.kubernetes.secrets: data)" in outcome.message
        server = start.servers[-1]  # type: ignore[attr-defined]
        assert server.count("/secrets") == 0  # no Secret read without the opt-in
    # named with a secretKeyRef, the variable is known without reading the Secret
    objects = fixture_objects()
    for name in ("JWT_SECRET", "ENCRYPTION_KEY", "REDIS_PASSWORD"):
        objects = set_env(objects, name, {"valueFrom": {"secretKeyRef": {
            "name": "qbitel-app-secrets", "key": name}}})
    for spec in _pod_specs(objects):
        spec["containers"][0]["envFrom"] = spec["containers"][0]["envFrom"][:1]
    outcome = await judge(preset_checks(tmp_path)["6.1"], await start(objects, "metadata"),
                          caplog)
    assert outcome.status is Status.PASS, outcome.message
    assert start.servers[-1].count("/secrets") == 0  # type: ignore[attr-defined]


async def test_a_secret_key_ref_to_a_missing_key_is_missing(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    objects = set_env(fixture_objects(), "REDIS_PASSWORD", {"valueFrom": {"secretKeyRef": {
        "name": "qbitel-app-secrets", "key": "redis-password"}}})
    outcome = await judge(preset_checks(tmp_path)["6.1"], await start(objects), caplog)
    assert outcome.status is Status.FAIL
    assert outcome.message.endswith("required missing: REDIS_PASSWORD")


async def test_nothing_in_scope_is_a_config_error(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["6.1"].model_copy(update={"workload": preset_checks(
        tmp_path)["6.1"].workload.model_copy(update={"namespace": "qbitle"})})  # type: ignore[attr-defined]
    outcome = await judge(spec, await start(), caplog)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "no running pod matches namespace qbitle" in outcome.message


# --------------------------------------------------------------------------- 1.2.3


async def test_documented_list_matches_both_ways(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["1.2.3"]
    outcome = await judge(spec, await start(), caplog)
    assert outcome.status is Status.PASS, outcome.message
    assert "every name matches the documented list (30 names)" in outcome.message
    # a documented name the pods do not define
    missing = set_config(fixture_objects(), "REDIS_PORT", None)
    outcome = await judge(spec, await start(missing), caplog)
    assert outcome.status is Status.FAIL
    assert outcome.message.endswith("required missing: REDIS_PORT")
    # a variable the pods define that the list does not document
    extra = set_env(fixture_objects(), "FEATURE_FLAGS_URL", {"value": "http://flags:8080"})
    outcome = await judge(spec, await start(extra), caplog)
    assert outcome.status is Status.FAIL
    assert "not in the documented list: FEATURE_FLAGS_URL" in outcome.message
    assert [m.value for m in outcome.measurements
            if m.family == "readiness_env_undocumented_variables"] == [1.0]


async def test_mesh_sidecar_variables_are_not_the_application_s(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    objects = fixture_objects()
    for spec in _pod_specs(objects):  # what Istio's injector adds to every pod
        spec["containers"].append({"name": "istio-proxy", "image": "istio/proxyv2:1.22.0",
                                   "env": [{"name": "ISTIO_META_WORKLOAD_NAME",
                                            "value": "qbitel-api"},
                                           {"name": "PILOT_CERT_PROVIDER", "value": "istiod"}]})
        spec["initContainers"] = [{"name": "istio-init", "image": "istio/proxyv2:1.22.0",
                                   "env": [{"name": "ISTIO_INIT", "value": "1"}]}]
    spec = preset_checks(tmp_path)["1.2.3"]
    outcome = await judge(spec, await start(objects), caplog)
    assert outcome.status is Status.PASS, outcome.message
    every = spec.model_copy(update={"workload": spec.workload.model_copy(  # type: ignore[attr-defined]
        update={"exclude_containers": []})})
    outcome = await judge(every, await start(objects), caplog)
    assert outcome.status is Status.FAIL
    assert "not in the documented list: ISTIO_META_WORKLOAD_NAME, PILOT_CERT_PROVIDER" in \
        outcome.message


async def test_old_presence_rule_passed_an_undocumented_gap(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the old 1.2.3: the recommended names present in the exporter's environment pass,
    # though the application lacks REDIS_PORT (documented in .env.example)
    old = default_checks()["1.2.3"]
    for name in old.recommended:  # type: ignore[attr-defined]
        monkeypatch.setenv(name, "x")
    assert (await judge(old, await start(), caplog)).status is Status.PASS
    missing = set_config(fixture_objects(), "REDIS_PORT", None)
    outcome = await judge(preset_checks(tmp_path)["1.2.3"], await start(missing), caplog)
    assert outcome.status is Status.FAIL and "REDIS_PORT" in outcome.message


async def test_documented_list_file_missing_is_a_config_error(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["1.2.3"]
    (tmp_path / ".env.example").unlink()
    outcome = await judge(spec, await start(), caplog)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert ".env.example: cannot be read" in outcome.message


# --------------------------------------------------------------------------- 1.2.2


async def test_literal_password_fails_where_the_file_scan_passed(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    objects = set_env(fixture_objects(), "DATABASE_PASSWORD", {"value": LITERAL})
    ctx = await start(objects)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "app.yaml").write_text("database:\n  host: postgres\n")
    files_only = preset_checks(tmp_path, workload=False)["1.2.2"].model_copy(
        update={"paths": [str(tmp_path / "config")]})
    old = await judge(files_only, ctx, caplog)
    assert old.status is Status.PASS, old.message  # the old rule saw only files
    spec = preset_checks(tmp_path)["1.2.2"].model_copy(
        update={"paths": [str(tmp_path / "config")]})
    outcome = await judge(spec, ctx, caplog)
    assert outcome.status is Status.FAIL
    assert ("Deployment/qbitel-api container api: DATABASE_PASSWORD is a literal value"
            in outcome.message)
    findings = {m.labels["rule"]: m.value for m in outcome.measurements
                if m.family == "readiness_secret_scan_kubernetes_findings"}
    assert findings == {"literal_env": 1.0, "configmap_env": 0.0, "configmap_key": 0.0,
                        "configmap_value": 0.0, "unmanaged_secret": 0.0}


async def test_secret_references_pass(start: Start, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["1.2.2"].model_copy(update={"paths": []})
    # `$(DATABASE_PASSWORD)`: the kubelet substitutes the Secret-backed variable, no literal
    objects = set_env(fixture_objects(), "DB_PASSWORD", {"value": "$(DATABASE_PASSWORD)"})
    outcome = await judge(spec, await start(objects), caplog)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == (
        "no sensitive literal and no secret-like ConfigMap value in 1 workload(s) and "
        "2 ConfigMap(s) of namespace qbitel, selector app.kubernetes.io/part-of=qbitel")


async def test_secrets_kept_in_config_maps_fail(start: Start, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["1.2.2"].model_copy(update={"paths": []})
    # a sensitive key holding a value in the application's ConfigMap
    objects = set_config(fixture_objects(), "SPLUNK_HEC_TOKEN", LITERAL)
    outcome = await judge(spec, await start(objects), caplog)
    assert outcome.status is Status.FAIL
    assert "ConfigMap qbitel-config: key SPLUNK_HEC_TOKEN holds a value" in outcome.message
    # an empty sensitive key is not a value
    empty = set_config(fixture_objects(), "SPLUNK_HEC_TOKEN", "")
    assert (await judge(spec, await start(empty), caplog)).status is Status.PASS
    # a sensitive variable taken from a ConfigMap instead of a Secret
    via_map = set_env(fixture_objects(), "REDIS_PASSWORD", {"valueFrom": {
        "configMapKeyRef": {"name": "qbitel-config", "key": "REDIS_HOST"}}})
    outcome = await judge(spec, await start(via_map), caplog)
    assert outcome.status is Status.FAIL
    assert ("container api: REDIS_PASSWORD comes from ConfigMap qbitel-config key REDIS_HOST"
            in outcome.message)
    # a secret-like value inside a mounted configuration file of a ConfigMap
    aws = "server:\n  port: 8443\naws:\n  access_key_id: AKIAZ7QJ3LT4HX2PWM5B\n"
    mounted = set_config(fixture_objects(), "application.yaml", aws, name="qbitel-app-yaml")
    outcome = await judge(spec, await start(mounted), caplog)
    assert outcome.status is Status.FAIL
    assert "ConfigMap qbitel-app-yaml: a value found by aws" in outcome.message
    assert "AKIAZ7QJ3LT4HX2PWM5B" not in outcome.message


async def test_managed_by_requires_an_external_secret_behind_each_reference(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["1.2.2"].model_copy(
        update={"paths": [], "managed_by": ["ExternalSecret"]})
    outcome = await judge(spec, await start(), caplog)  # owned by its ExternalSecret
    assert outcome.status is Status.PASS, outcome.message
    # a Secret made by hand (kubectl create secret): in the cluster, not a secrets manager
    manual = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "qbitel-db-manual", "namespace": "qbitel",
                           "uid": "uid-manual", "resourceVersion": "5000",
                           "creationTimestamp": "2026-11-21T08:00:00Z"},
              "data": {"password": base64.b64encode(LITERAL.encode()).decode()}}
    objects = [*set_env(fixture_objects(), "DATABASE_PASSWORD", {"valueFrom": {
        "secretKeyRef": {"name": "qbitel-db-manual", "key": "password"}}}), manual]
    server_ctx = await start(objects, secrets="metadata")
    outcome = await judge(spec, server_ctx, caplog)
    assert outcome.status is Status.FAIL
    assert ("Deployment/qbitel-api container api: DATABASE_PASSWORD comes from Secret "
            "qbitel-db-manual, not managed by ExternalSecret") in outcome.message
    secret_reads = [r for r in start.servers[-1].requests  # type: ignore[attr-defined]
                    if "/secrets/" in r.path]
    assert secret_reads and all("as=PartialObjectMetadata" in r.accept for r in secret_reads)
    without = preset_checks(tmp_path)["1.2.2"].model_copy(update={"paths": []})
    assert (await judge(without, server_ctx, caplog)).status is Status.PASS  # opt-in rule
    outcome = await judge(spec, await start(secrets="none"), caplog)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG


# --------------------------------------------------------------------------- 2.1.1


async def test_jwt_secret_read_from_the_mounted_secret(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["2.1.1"]
    outcome = await judge(spec, await start(secrets="data"), caplog)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message.startswith("JWT_SECRET (envFrom Secret qbitel-app-secrets key "
                                      "JWT_SECRET) is strong")
    weak = set_secret(fixture_objects(), "JWT_SECRET", WEAK_JWT)
    outcome = await judge(spec, await start(weak, secrets="data"), caplog)
    assert outcome.status is Status.FAIL
    assert "is weak: strength estimate" in outcome.message


async def test_reading_a_secret_value_is_opt_in(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["2.1.1"]
    for secrets in ("none", "metadata"):
        outcome = await judge(spec, await start(secrets=secrets), caplog)
        assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
        assert "connections.kubernetes.secrets: data" in outcome.message


async def test_explicit_secret_key_and_a_literal_in_the_pod(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from exporter.probes.secret_strength import SecretStrengthCheck

    base = {"id": "2.1.1", "section": "2.1", "title": "t", "kind": "secret_strength"}
    explicit = SecretStrengthCheck.model_validate({**base, "secret": {
        "namespace": "qbitel", "name": "qbitel-app-secrets", "key": "JWT_SECRET"}})
    ctx = await start(set_secret(fixture_objects(), "JWT_SECRET", WEAK_JWT), secrets="data")
    outcome = await judge(explicit, ctx, caplog)
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("Secret qbitel/qbitel-app-secrets key JWT_SECRET is weak")
    absent = explicit.model_copy(update={"secret": explicit.secret.model_copy(  # type: ignore[union-attr]
        update={"key": "jwt"})})
    outcome = await judge(absent, ctx, caplog)
    assert outcome.status is Status.FAIL and outcome.message.endswith("is not set")
    literal = set_env(fixture_objects(), "JWT_SECRET", {"value": WEAK_JWT})
    outcome = await judge(preset_checks(tmp_path)["2.1.1"], await start(literal), caplog)
    assert outcome.status is Status.FAIL  # a literal is readable without secrets: data
    assert "JWT_SECRET (a literal value in ReplicaSet/qbitel-api-7d9f8c6b5) is weak" in \
        outcome.message


async def test_encryption_key_size_from_the_application_secret(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = preset_checks(tmp_path)["6.1-encryption-key"]
    outcome = await judge(spec, await start(secrets="data"), caplog)
    assert outcome.status is Status.PASS, outcome.message  # base64 of 32 random bytes
    short = set_secret(fixture_objects(), "ENCRYPTION_KEY",  # 20 bytes in hex
                       "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b")
    outcome = await judge(spec, await start(short, secrets="data"), caplog)
    assert outcome.status is Status.FAIL and "not a 32-byte key" in outcome.message


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(("check", "problem"), [
    ({"kind": "secret_strength", "env": "JWT_SECRET",
      "secret": {"namespace": "a", "name": "b", "key": "c"}},
     "set exactly one of 'env', 'file' or 'secret'"),
    ({"kind": "secret_strength", "file": "/x", "workload": WORKLOAD},
     "workload reads the variable named by 'env'"),
    ({"kind": "secret_scan"}, "set paths, workload or both"),
    ({"kind": "env", "env_file": "/x", "workload": WORKLOAD},
     "set at most one of 'env_file' or 'workload'"),
    ({"kind": "env", "workload": {**WORKLOAD, "selector": "tier in web"}},
     "set-based requirement needs (values)"),
    ({"kind": "env", "workload": {**WORKLOAD, "connection": "missing"}},
     "no connection named 'missing'"),
])
def test_options_are_validated(tmp_path: Path, check: dict[str, Any], problem: str) -> None:
    document = {"checks": [{"id": "x", "section": "6.1", "title": "t", **check}]}
    with pytest.raises(config.ConfigError) as error:
        config.load_document(document, "test", tmp_path, environ={})
    assert problem in str(error.value)


def test_fixtures_validate_against_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for item in fixture_objects():
        kubernetes_validate.validate(item, "1.29", strict=True)
