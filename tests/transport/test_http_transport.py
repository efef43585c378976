"""The HTTP transport against real HTTPS servers: TLS options (rotated CA files,
server_name, insecure_skip_verify), one client per TLS configuration, and the
deprecation warning of an old TLS option spelling at `validate`."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from exporter.context import RuntimeContext
from exporter.model import ProbeError, Reason, Status
from exporter.probes.http.probe import KIND as HTTP_KIND
from exporter.probes.http.spec import HttpCheck
from exporter.probes.prometheus_query import KIND as PROM_KIND
from exporter.probes.prometheus_query import PrometheusQueryCheck
from exporter.transport.http import HTTP, HttpOptions, target_of
from exporter.transport.tls import TlsClientOptions
from tests.support.servers import free_port

EXE = Path(sys.executable).parent / "readiness-exporter"


async def _serve(ca: trustme.CA, *names: str) -> tuple[web.AppRunner, int]:
    async def answer(request: web.Request) -> web.Response:
        if request.path == "/api/v1/query":
            return web.json_response({"status": "success", "data": {
                "resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner, port


@pytest.fixture
async def named_server() -> AsyncIterator[tuple[trustme.CA, int]]:
    """An HTTPS server on 127.0.0.1 whose certificate names only api.internal.test."""
    ca = trustme.CA()
    runner, port = await _serve(ca, "api.internal.test")
    yield ca, port
    await runner.cleanup()


def _http(port: int, **tls: object) -> HttpCheck:
    return HttpCheck.model_validate({"id": "h", "section": "6.2", "title": "t", "kind": "http",
                                     "url": f"https://127.0.0.1:{port}/health", "tls": tls})


async def test_server_name_is_sent_and_verified(named_server: tuple[trustme.CA, int],
                                                ctx: RuntimeContext, tmp_path: Path) -> None:
    ca, port = named_server
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca_file = str(tmp_path / "ca.pem")
    by_address = await HTTP_KIND.run(_http(port, ca_file=ca_file), ctx)
    assert by_address.status is Status.ERROR and by_address.reason is Reason.TLS
    assert f"127.0.0.1:{port}" in by_address.message
    assert "not valid for '127.0.0.1'" in by_address.message  # the verification reason
    assert "tls.server_name" in by_address.message  # and what to change
    named = await HTTP_KIND.run(_http(port, ca_file=ca_file, server_name="api.internal.test"),
                                ctx)
    assert named.status is Status.PASS, named.message
    # prometheus_query has the same vocabulary now, server_name included
    prom = PrometheusQueryCheck.model_validate({
        "id": "p", "section": "5.1", "title": "t", "kind": "prometheus_query",
        "url": f"https://127.0.0.1:{port}", "query": "up",
        "tls": {"ca_file": ca_file, "server_name": "api.internal.test"}})
    outcome = await PROM_KIND.run(prom, ctx)
    assert outcome.status is Status.PASS, outcome.message


async def test_insecure_skip_verify_accepts_an_unknown_ca(
        named_server: tuple[trustme.CA, int], ctx: RuntimeContext) -> None:
    _, port = named_server
    assert (await HTTP_KIND.run(_http(port), ctx)).reason is Reason.TLS
    skipped = await HTTP_KIND.run(_http(port, insecure_skip_verify=True), ctx)
    assert skipped.status is Status.PASS, skipped.message


async def test_a_rotated_ca_file_is_read_again(tmp_path: Path, ctx: RuntimeContext) -> None:
    """The context is cached while the file is unchanged and rebuilt when it changes."""
    old_ca, new_ca = trustme.CA(), trustme.CA()
    runner, port = await _serve(new_ca, "127.0.0.1")
    try:
        ca_file = tmp_path / "ca.pem"
        old_ca.cert_pem.write_to_path(str(ca_file))
        options = HttpOptions(tls=TlsClientOptions(ca_file=ca_file))
        first = await ctx.client(HTTP, options)
        assert await ctx.client(HTTP, options) is first  # reused while unchanged
        assert (await HTTP_KIND.run(_http(port, ca_file=str(ca_file)), ctx)).reason \
            is Reason.TLS
        new_ca.cert_pem.write_to_path(str(ca_file))
        os.utime(ca_file, (1, 1))  # a different modification time, whatever the clock
        assert await ctx.client(HTTP, options) is not first
        rotated = await HTTP_KIND.run(_http(port, ca_file=str(ca_file)), ctx)
        assert rotated.status is Status.PASS, rotated.message
    finally:
        await runner.cleanup()


async def test_one_client_per_tls_configuration(tmp_path: Path) -> None:
    context = RuntimeContext(state_dir=tmp_path)
    try:
        plain = await context.client(HTTP, HttpOptions())
        assert await context.client(HTTP, HttpOptions(option_path="api.tls")) is plain
        insecure = await context.client(
            HTTP, HttpOptions(tls=TlsClientOptions(insecure_skip_verify=True)))
        assert insecure is not plain and insecure.session is plain.session  # one session
    finally:
        await context.aclose()


async def test_a_body_over_the_limit_is_a_protocol_error(
        named_server: tuple[trustme.CA, int], ctx: RuntimeContext) -> None:
    _, port = named_server
    client = await ctx.client(HTTP, HttpOptions(tls=TlsClientOptions(insecure_skip_verify=True)))
    with pytest.raises(ProbeError) as caught:
        await client.request("GET", f"https://127.0.0.1:{port}/", budget=5, max_body_bytes=1,
                             limit_option="max_bytes")
    assert caught.value.reason is Reason.PROTOCOL
    assert caught.value.message == f"127.0.0.1:{port}: response body exceeds max_bytes (1 bytes)"


def test_targets_are_host_and_port_only() -> None:
    assert target_of("https://user@api.test:8443/v1/x?token=abc#f") == "api.test:8443"
    assert target_of("http://[::1]:9090/") == "[::1]:9090"
    assert target_of("https://api.test/") == "api.test:443"  # the default port is named


def test_validate_warns_about_an_old_tls_spelling(tmp_path: Path) -> None:
    (tmp_path / "readiness.yaml").write_text("""
checks:
  - id: api
    section: "6.2"
    title: API health
    kind: http
    url: https://api.internal.test/health
    tls: {client_cert: /etc/client.pem, client_key: /etc/client.key}
""")
    result = subprocess.run(
        [str(EXE), "validate", "--config.file", str(tmp_path / "readiness.yaml")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert ("warning: checks (id api).tls.client_cert is deprecated: write "
            "checks (id api).tls.cert_file") in result.stderr
    assert "checks (id api).tls.client_key is deprecated" in result.stderr


@pytest.mark.parametrize("kind", ["http", "prometheus_query", "alertmanager", "report"])
@pytest.mark.parametrize("url", ["ftp://host/x", "https://user:pw@host/", "/relative"])
def test_every_http_kind_checks_its_url_the_same_way(kind: str, url: str) -> None:
    from pydantic import ValidationError

    from exporter import registry

    extra = {"prometheus_query": {"query": "up"}, "alertmanager": {"mode": "active_alerts"},
             "report": {"format": "junit"}}.get(kind, {})
    with pytest.raises(ValidationError) as info:
        registry.probe_kind(kind).spec.model_validate(
            {"id": "x", "section": "1.1", "title": "t", "kind": kind, "url": url, **extra})
    assert [e["loc"] for e in info.value.errors()] == [("url",)]


async def test_user_agents(ctx: RuntimeContext) -> None:
    """`http` checks keep their User-Agent (WAF rules may name it); the other HTTP kinds
    now say who they are instead of aiohttp's default."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent", ""))
        if request.path == "/api/v1/query":
            return web.json_response({"status": "success",
                                      "data": {"resultType": "scalar", "result": [0, "1"]}})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        base = {"section": "6.2", "title": "t"}
        await HTTP_KIND.run(HttpCheck.model_validate(
            {**base, "id": "h", "kind": "http", "url": f"http://127.0.0.1:{port}/health"}), ctx)
        await PROM_KIND.run(PrometheusQueryCheck.model_validate(
            {**base, "id": "p", "kind": "prometheus_query", "url": f"http://127.0.0.1:{port}",
             "query": "1"}), ctx)
    finally:
        await runner.cleanup()
    assert seen == ["readiness-exporter/http-probe", "readiness-exporter"]
