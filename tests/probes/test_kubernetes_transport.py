"""The Kubernetes transport (exporter/transport/kubernetes.py) through the runtime: a bad
kubeconfig is `error/config` naming the option, and credentials that expire (an exec
plugin's tokens, a rotated token file) are fetched again, so checks keep passing."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter.context import RuntimeContext
from exporter.model import Outcome, ProbeError, Reason, Status
from exporter.probes.kubernetes.connection import KubernetesConnection, cluster_of
from exporter.probes.kubernetes.probe import KIND
from exporter.probes.kubernetes.spec import KubernetesCheck
from exporter.transport.kubernetes import KUBERNETES, KubeOptions
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

STATIC = "tok-STATIC-do-not-leak-5521"
TOKEN_LIFE = 3.0
"""Seconds an exec-plugin token is accepted by the stand-in."""

# An exec credential plugin (client.authentication.k8s.io/v1): each call issues a new
# token that names its issue time, valid TOKEN_LIFE seconds, and appends to a call log.
EXEC_PLUGIN = """
import datetime, json, sys, time
issued = time.time()
with open(sys.argv[1], "a") as log:
    log.write(f"{issued}\\n")
expiry = datetime.datetime.fromtimestamp(issued + LIFE, datetime.UTC)
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
    "status": {"token": f"exp-{issued:.6f}-SECRET-do-not-leak",
               "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}))
"""


def expiring_token_ok(token: str) -> bool:
    """The stand-in's check: an `exp-<issued>-...` token younger than TOKEN_LIFE."""
    if not token.startswith("exp-"):
        return False
    issued = float(token.split("-")[1])
    return time.time() < issued + TOKEN_LIFE


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(token=STATIC)
    server.load_fixtures()
    await server.start(free_port())
    yield server
    await server.stop()


def check(assertion: str, **kw: Any) -> KubernetesCheck:
    return KubernetesCheck.model_validate({"id": kw.pop("id", "4.1.1"), "section": "4.1",
                                           "title": "t", "kind": "kubernetes",
                                           "assert": assertion, **kw})


def runtime(kubeconfig: Path, tmp_path: Path, **kw: Any) -> RuntimeContext:
    connection = KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig, **kw)
    return RuntimeContext({"k8s": connection}, state_dir=tmp_path / "state")


def kubeconfig_with_user(path: Path, server: str, user: dict[str, Any]) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return path


MALFORMED = {
    "empty": "",
    "not-yaml": "clusters: [\n  - name: x\n  cluster: {",
    "a-list": "- apiVersion: v1\n- kind: Config\n",
    "no-contexts": "apiVersion: v1\nkind: Config\nclusters: []\n",
    "unknown-current-context": json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [], "contexts": []}),
    "cluster-without-server-entry": json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [], "users": [],
        "contexts": [{"name": "c", "context": {"cluster": "missing", "user": "u"}}]}),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_kubeconfig_is_config_naming_the_option(text: str,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    ctx = runtime(path, tmp_path)
    try:
        outcome = await KIND.run(check("server_version", connection="k8s"), ctx)
    finally:
        await ctx.aclose()
    assert outcome.status is Status.ERROR
    assert outcome.reason is Reason.CONFIG, outcome.message
    assert "connections.k8s.kubeconfig" in outcome.message
    assert str(path) in outcome.message


async def test_missing_kubeconfig_and_exec_command_are_config(tmp_path: Path) -> None:
    ctx = runtime(tmp_path / "nowhere", tmp_path)
    plugin = kubeconfig_with_user(tmp_path / "exec", "http://127.0.0.1:1", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": str(tmp_path / "no-such-plugin")}})
    ctx2 = runtime(plugin, tmp_path)
    try:
        missing = await KIND.run(check("server_version", connection="k8s"), ctx)
        no_plugin = await KIND.run(check("server_version", connection="k8s"), ctx2)
    finally:
        await ctx.aclose()
        await ctx2.aclose()
    assert missing.reason is Reason.CONFIG and "does not exist" in missing.message
    assert "connections.k8s.kubeconfig" in missing.message
    assert no_plugin.reason is Reason.CONFIG and "exec credential plugin" in no_plugin.message


async def test_exec_plugin_tokens_are_refreshed_across_expiries(
        api: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.token_check = expiring_token_ok
    script = tmp_path / "plugin.py"
    script.write_text(EXEC_PLUGIN.replace("LIFE", str(TOKEN_LIFE)))
    calls = tmp_path / "calls.log"
    kubeconfig = kubeconfig_with_user(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                      {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                "command": sys.executable,
                                                "args": [str(script), str(calls)]}})
    ctx = runtime(kubeconfig, tmp_path, snapshot_ttl=0)
    checks = [check("server_version", connection="k8s"),
              check("namespaces_exist", id="4.1.2", connection="k8s",
                    required_namespaces=["qbitel"])]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < 3.5 * TOKEN_LIFE:  # several expiries
            outcomes += [await KIND.run(c, ctx) for c in checks]
            await asyncio.sleep(0.25)
    finally:
        await ctx.aclose()
    assert all(o.status is Status.PASS for o in outcomes), \
        [o.message for o in outcomes if o.status is not Status.PASS]
    issued = calls.read_text().split()
    assert len(issued) >= 4  # a new token before each expiry, not one per request
    assert len(issued) < len(outcomes)
    rejected = [r for r in api.requests if r.status == 401]
    # renewed before expiry (a 401-only refresh would see one per expiry, 3 or more);
    # a slow request on a loaded machine may still cross one or two boundaries
    assert len(rejected) <= 2
    for o in outcomes:
        assert "SECRET" not in o.message
    assert not [r for r in caplog.records if "SECRET" in r.getMessage()]


async def test_token_file_is_read_again_after_a_401(api: FakeApiServer,
                                                    tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(STATIC)
    kubeconfig = kubeconfig_with_user(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                      {"tokenFile": str(token_file)})
    ctx = runtime(kubeconfig, tmp_path, snapshot_ttl=0)
    version = check("server_version", connection="k8s")
    try:
        before = await KIND.run(version, ctx)
        client = await ctx.client(KUBERNETES, (await cluster_of(ctx, "k8s")).options)
        api.token = "tok-ROTATED-do-not-leak-9090"  # the server now wants the new token
        token_file.write_text(api.token)  # ...which the kubelet wrote into the file
        after = await KIND.run(version, ctx)
        still = await ctx.client(KUBERNETES, (await cluster_of(ctx, "k8s")).options)
    finally:
        await ctx.aclose()
    assert before.status is Status.PASS and after.status is Status.PASS, after.message
    assert still is client  # same client: only the credential was fetched again
    assert client.credential.fetches == 2
    assert [r.status for r in api.requests if r.path == "/version"] == [200, 401, 200]


async def test_rejected_credentials_are_auth_after_one_retry(api: FakeApiServer,
                                                             tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  "tok-WRONG-do-not-leak")
    ctx = runtime(kubeconfig, tmp_path)
    try:
        outcome = await KIND.run(check("server_version", connection="k8s"), ctx)
    finally:
        await ctx.aclose()
    assert outcome.reason is Reason.AUTH and "401" in outcome.message
    assert "do-not-leak" not in outcome.message
    assert [r.status for r in api.requests] == [401, 401]


async def test_a_stream_refreshes_the_token_once_after_a_401(api: FakeApiServer,
                                                             tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(STATIC)
    kubeconfig = kubeconfig_with_user(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                      {"tokenFile": str(token_file)})
    ctx = runtime(kubeconfig, tmp_path)
    try:
        client = await ctx.client(KUBERNETES, (await cluster_of(ctx, "k8s")).options)
        api.token = "tok-ROTATED-do-not-leak-7070"
        token_file.write_text(api.token)
        async with client.stream("/version", connect_timeout=5, read_timeout=5) as response:
            assert response.status == 200
            assert "gitVersion" in json.loads(await response.read())
        assert not client.streams  # closed on leaving
        api.token = "tok-OTHER-do-not-leak-8080"  # the file keeps the old one: rejected
        with pytest.raises(ProbeError) as rejected:
            async with client.stream("/version", connect_timeout=5, read_timeout=5):
                pass
    finally:
        await ctx.aclose()
    assert rejected.value.reason is Reason.AUTH and "401" in rejected.value.message
    assert "do-not-leak" not in rejected.value.message
    assert [r.status for r in api.requests if r.path == "/version"] == [401, 200, 401, 401]


async def test_connections_with_one_kubeconfig_share_one_client(api: FakeApiServer,
                                                                tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}",
                                  STATIC)
    spec = KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig, context="test")
    ctx = RuntimeContext({"a": spec, "b": spec}, state_dir=tmp_path / "s")
    try:
        a, b = await cluster_of(ctx, "a"), await cluster_of(ctx, "b")
        assert a is not b
        assert await a.client() is await b.client()
    finally:
        await ctx.aclose()


async def test_in_cluster_token_file_is_read_again_after_a_401(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = FakeApiServer(token=STATIC)
    server.load_fixtures()
    port = free_port()
    await server.start(port, server_ctx)
    account = tmp_path / "serviceaccount"  # as mounted into a pod
    account.mkdir()
    (account / "token").write_text(STATIC)
    (account / "ca.crt").write_bytes(ca.cert_pem.bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
    ctx = RuntimeContext({}, state_dir=tmp_path / "s")
    try:
        client = await ctx.client(KUBERNETES, KubeOptions(in_cluster_dir=account))
        before = await client.request("/version", budget=5)
        server.token = "tok-PROJECTED-rotated-do-not-leak"  # the kubelet rotated it
        (account / "token").write_text(server.token)
        after = await client.request("/version", budget=5)
    finally:
        await ctx.aclose()
        await server.stop()
    assert client.target == f"127.0.0.1:{port}"
    assert (before.status, after.status) == (200, 200)
    assert [r.status for r in server.requests] == [200, 401, 200]
