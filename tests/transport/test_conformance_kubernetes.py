"""Conformance of the Kubernetes transport: the same failure gives the same reason as
from the other transports (tests/transport/test_conformance*.py), through the real
kubernetes-asyncio client and a kubeconfig, from a GET (`server_version`) and from a
paginated LIST (`pdb_coverage`); the bearer token never shows.

Servers: the stand-in API server (tests/probes/k8s_apiserver.py, the one allowed
stand-in) over HTTP and over TLS with a trustme certificate, a refused loopback port,
a name under `.invalid`, and a server that accepts connections and never answers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, ConnectionSpec, Outcome, Reason, Status
from exporter.runner import run_check
from tests.probes.k8s_apiserver import FakeApiServer
from tests.support.servers import free_port
from tests.transport.kv_servers import UNRESOLVABLE_HOST, refused, silent_server

TOKEN = "k8s-conformance-TOKEN-" + uuid.uuid4().hex
WRONG = "k8s-conformance-WRONG-" + uuid.uuid4().hex
REQUESTS = "readiness_kubernetes_api_requests_total"
REQUEST_TIMEOUT = 1.0
CHECK_TIMEOUT = 4.0
SUBJECTS = ("server_version", "pdb_coverage")
"""A GET (/version) and paginated LISTs (Deployments, StatefulSets, PDBs)."""


@dataclass(frozen=True)
class Case:
    """One failure and the reason the Kubernetes checks must give for it (the same as
    every other transport's for the same failure)."""

    name: str
    reason: Reason
    transport_reached: bool = True
    """The kubeconfig was usable and a request was attempted: the request counter is
    kept on the error outcome."""


CASES = [
    Case("refused", Reason.CONNECT),
    Case("dns", Reason.DNS),
    Case("silent", Reason.TIMEOUT),
    Case("wrong_ca", Reason.TLS),
    Case("wrong_credentials", Reason.AUTH),
    Case("malformed_kubeconfig", Reason.CONFIG, transport_reached=False),
    Case("missing_ca_file", Reason.CONFIG, transport_reached=False),
]


def kubeconfig(path: Path, server: str, token: str, *, ca_pem: bytes | None = None,
               ca_file: Path | None = None) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return path


def built(assertion: str, path: Path) -> tuple[CheckSpec, dict[str, ConnectionSpec]]:
    spec = registry.probe_kind("kubernetes").spec.model_validate(
        {"id": "k8s-conformance", "section": "4.1", "title": "conformance",
         "kind": "kubernetes", "assert": assertion, "connection": "k8s",
         "timeout": CHECK_TIMEOUT})
    connection = registry.connection_kind("kubernetes").spec.model_validate(
        {"kind": "kubernetes", "kubeconfig": str(path), "request_timeout": REQUEST_TIMEOUT})
    return spec, {"k8s": connection}


async def run(assertion: str, path: Path, tmp_path: Path) -> Outcome:
    spec, connections = built(assertion, path)
    context = RuntimeContext(connections, state_dir=tmp_path / "state")
    try:
        outcome, _ = await run_check(spec, context)
    finally:
        await context.aclose()
    return outcome


@contextlib.asynccontextmanager
async def api_server(ca: trustme.CA | None = None) -> AsyncIterator[str]:
    """The stand-in API server with the fixture cluster; HTTPS with a cert of `ca`."""
    server = FakeApiServer(token=TOKEN)
    server.load_fixtures()
    context = None
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
    url = await server.start(free_port(), context)
    try:
        yield url
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def configured(case: Case, tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "kubeconfig"
    if case.name == "refused":
        target = refused()
        yield kubeconfig(path, f"http://{target.host}:{target.port}", TOKEN)
    elif case.name == "dns":
        yield kubeconfig(path, f"https://{UNRESOLVABLE_HOST}:6443", TOKEN)
    elif case.name == "silent":
        async with silent_server() as target:
            yield kubeconfig(path, f"http://{target.host}:{target.port}", TOKEN)
    elif case.name == "wrong_ca":
        async with api_server(trustme.CA()) as url:
            yield kubeconfig(path, url, TOKEN, ca_pem=trustme.CA().cert_pem.bytes())
    elif case.name == "wrong_credentials":
        async with api_server() as url:
            yield kubeconfig(path, url, WRONG)
    elif case.name == "malformed_kubeconfig":
        path.write_text(f"clusters: [\n  - token: {TOKEN}\n  cluster: {{")
        yield path
    elif case.name == "missing_ca_file":
        yield kubeconfig(path, "https://127.0.0.1:6443", TOKEN,
                         ca_file=tmp_path / "missing-ca.pem")
    else:  # pragma: no cover - a new case needs its set-up here
        raise AssertionError(case.name)


def secret_free(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    for secret in (TOKEN, WRONG):
        assert secret not in repr(outcome)
        for measurement in outcome.measurements:
            assert secret not in "".join(measurement.labels.values())
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in repr(record.__dict__)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("assertion", SUBJECTS)
async def test_same_failure_same_reason(assertion: str, case: Case, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with configured(case, tmp_path) as path:
        outcome = await run(assertion, path, tmp_path)
    assert outcome.status is Status.ERROR, outcome
    assert outcome.reason is case.reason, outcome.message
    secret_free(outcome, caplog)
    if case.transport_reached:
        assert REQUESTS in {m.family for m in outcome.measurements}, outcome.measurements


async def test_messages_name_what_to_change(tmp_path: Path) -> None:
    """Errors name the API server (host) or the kubeconfig option and file to fix."""
    outcomes = {}
    for name in ("dns", "malformed_kubeconfig", "missing_ca_file", "silent"):
        case = next(c for c in CASES if c.name == name)
        async with configured(case, tmp_path) as path:
            outcomes[name] = await run("server_version", path, tmp_path)
    assert UNRESOLVABLE_HOST in outcomes["dns"].message
    for name in ("malformed_kubeconfig", "missing_ca_file"):
        assert "connections.k8s.kubeconfig" in outcomes[name].message
        assert str(tmp_path / "kubeconfig") in outcomes[name].message
    assert "missing-ca.pem" in outcomes["missing_ca_file"].message
    assert "127.0.0.1" in outcomes["silent"].message


@pytest.mark.parametrize("assertion", SUBJECTS)
async def test_the_right_ca_and_token_pass(assertion: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The wrong-CA and wrong-credentials cases are only about the CA and the token: the
    same TLS server with its own CA and the right token gives a verdict, not an error."""
    caplog.set_level(logging.DEBUG)
    ca = trustme.CA()
    async with api_server(ca) as url:
        path = kubeconfig(tmp_path / "kubeconfig", url, TOKEN, ca_pem=ca.cert_pem.bytes())
        outcome = await run(assertion, path, tmp_path)
    assert outcome.status in (Status.PASS, Status.FAIL), outcome
    assert outcome.reason is None
    secret_free(outcome, caplog)
