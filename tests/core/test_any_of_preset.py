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
