"""The preset's 4.4.2 on a managed control plane: the real `kubernetes` check skips (no
kube-apiserver pod visible, through the real client against the fake API server) and
its `any_of` alternative, the signed `4.4.2-attested` record made with `attest`, decides
whether `readiness-exporter check` says GO."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter import cli
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port

EXE = Path(sys.executable).parent / "readiness-exporter"
TOKEN = "tok-ANYOF-k8s-bearer-do-not-leak-5521"


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(token=TOKEN)
    server.load_fixtures()
    server.remove("Pod", "kube-system", "kube-apiserver-cp-1")  # a managed control plane
    await server.start(free_port())
    yield server
    await server.stop()


def attest(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["attest", *argv]) == 0
    return out.getvalue()


def setup_files(root: Path, api: FakeApiServer, override: str = "") -> Path:
    kubeconfig = write_kubeconfig(root / "kubeconfig", f"http://127.0.0.1:{api.port}", TOKEN)
    printed = attest("keygen", "--private-key", str(root / "devops.pem"), "--key-id", "devops",
                     "--name", "Dana Ops", "--role", "DevOps Lead")
    entry = "\n".join(line for line in printed.splitlines() if not line.startswith("#"))
    (root / "keyring.yaml").write_text("keys:\n" + entry + "\n")
    (root / "attestations").mkdir()
    path = root / "config.yaml"
    path.write_text(f"""
include: [qbitel-production]
inputs:
  attestations_dir: {root}/attestations
  keyring: {root}/keyring.yaml
connections:
  kubernetes: {{kind: kubernetes, kubeconfig: {kubeconfig}, context: test}}
{override}""")
    return path


def sign(root: Path) -> None:
    attest("sign", "--private-key", str(root / "devops.pem"), "--key-id", "devops",
           "--item", "4.4.2-attested", "--role", "DevOps Lead", "--release", "2.1.0",
           "--expires", "2d", "--dir", str(root / "attestations"))


async def check(path: Path) -> tuple[int, dict[str, Any], str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(path.parent)}
    process = await asyncio.create_subprocess_exec(
        str(EXE), "check", "--config.file", str(path), "--only", "4.4.2", "--output", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=path.parent)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    text = out.decode() + err.decode()
    assert TOKEN not in text
    return process.returncode, json.loads(out), err.decode()


def row(document: dict[str, Any], check_id: str) -> dict[str, Any]:
    (found,) = [c for c in document["checks"] if c["id"] == check_id]
    return found


async def test_managed_control_plane_without_a_record_is_no_go(api: FakeApiServer,
                                                               tmp_path: Path) -> None:
    code, document, _ = await check(setup_files(tmp_path, api))
    assert row(document, "4.4.2")["status"] == "skipped"
    assert row(document, "4.4.2-attested")["status"] == "fail"
    assert code == 1 and document["go_live"] is False
    assert document["blocking"] == ["4.4.2"] and document["stood_in"] == {}
    assert row(document, "4.4.2")["satisfied_by"] is None


async def test_managed_control_plane_with_the_signed_record_is_go(api: FakeApiServer,
                                                                  tmp_path: Path) -> None:
    path = setup_files(tmp_path, api)
    sign(tmp_path)
    code, document, _ = await check(path)
    skipped, attested = row(document, "4.4.2"), row(document, "4.4.2-attested")
    assert skipped["status"] == "skipped" and attested["status"] == "pass"
    assert skipped["any_of"] == ["4.4.2-attested"]
    assert skipped["satisfied_by"] == "4.4.2-attested"
    assert code == 0 and document["go_live"] is True and document["blocking"] == []
    assert document["stood_in"] == {"4.4.2": "4.4.2-attested"}
    assert "4.4.2 by 4.4.2-attested" in document["verdict"]


async def test_without_any_of_the_same_record_leaves_the_skip_blocking(
        api: FakeApiServer, tmp_path: Path) -> None:
    """The old rule, restored by overriding the preset's any_of: NO-GO forever."""
    path = setup_files(tmp_path, api, override='checks:\n  - {id: "4.4.2", any_of: []}\n')
    sign(tmp_path)
    code, document, _ = await check(path)
    assert row(document, "4.4.2-attested")["status"] == "pass"
    assert row(document, "4.4.2")["status"] == "skipped"
    assert code == 1 and document["blocking"] == ["4.4.2"]


SERVE_CONFIG = """
settings: {{first_round_spread: 0.2}}
connections:
  kubernetes: {{kind: kubernetes, kubeconfig: {kubeconfig}, context: test, snapshot_ttl: 1s}}
checks:
  - {{id: "4.4.2", section: "4.4", title: Secrets encrypted at rest in etcd,
     severity: critical, kind: kubernetes, assert: etcd_encryption,
     any_of: ["4.4.2-attested"], interval: 2s, timeout: 10s}}
  - {{id: "4.4.2-attested", section: "4.4", title: Secrets encrypted at rest (attested),
     severity: info, kind: attestation, directory: {root}/attestations,
     keyring: {root}/keyring.yaml, roles: [DevOps Lead], bind_release: false,
     interval: 1s}}
  - {{id: "11.3.1", section: "11.3", title: Every critical check passes, severity: critical,
     kind: aggregate, severities: [critical], interval: 1s, timeout: 10s}}
"""


def fetch(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def poll(url: str, wanted: str, seconds: float = 60.0) -> str:
    """The body of `url` once it contains `wanted`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    body = ""
    while loop.time() < deadline:
        with contextlib.suppress(OSError):
            body = await asyncio.to_thread(fetch, url)
            if wanted in body:
                return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"{url} never showed {wanted!r}; last body:\n{body[-2000:]}")


async def test_serve_gauge_api_board_and_aggregate_agree(api: FakeApiServer, tmp_path: Path,
                                                         start_daemon: Any) -> None:
    setup_files(tmp_path, api)
    sign(tmp_path)
    path = tmp_path / "serve.yaml"
    path.write_text(SERVE_CONFIG.format(kubeconfig=tmp_path / "kubeconfig", root=tmp_path))
    daemon = await asyncio.to_thread(start_daemon, ["--config.file", str(path)])
    await poll(daemon.url + "/readyz", "ready")
    metrics = await poll(daemon.url + "/metrics", "readiness_go_live 1.0")
    assert 'readiness_check_status{check="4.4.2",section="4.4",severity="critical",' \
           'status="skipped"} 1.0' in metrics
    await poll(daemon.url + "/metrics", 'check="11.3.1",section="11.3",severity="critical",'
                                        'status="pass"} 1.0')
    rows = {r["id"]: r for r in json.loads(await asyncio.to_thread(
        fetch, daemon.url + "/api/v1/checks"))}
    assert rows["4.4.2"]["satisfied_by"] == "4.4.2-attested"
    board = await asyncio.to_thread(fetch, daemon.url + "/")
    assert "<h1>GO</h1>" in board and "does not block go-live: alternative" in board
    page = await asyncio.to_thread(fetch, daemon.url + "/check/4.4.2")
    assert "Does not block go-live: alternative" in page

    for record in (tmp_path / "attestations").glob("*.json"):
        record.unlink()  # the record is withdrawn: the next runs see no valid signature
    await poll(daemon.url + "/metrics", "readiness_go_live 0.0")
    board = await poll(daemon.url + "/", "no alternative passes: 4.4.2-attested is fail")
    assert "<h1>NO-GO</h1>" in board
    rows = {r["id"]: r for r in json.loads(await asyncio.to_thread(
        fetch, daemon.url + "/api/v1/checks"))}
    assert rows["4.4.2"]["status"] == "skipped" and rows["4.4.2"]["satisfied_by"] is None
    assert TOKEN not in daemon.logs()
