"""`http` probe: status, latency, body assertions, transport errors, credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import ValidationError

from exporter.context import RuntimeContext
from exporter.model import Measurement, Outcome, Reason, Status
from exporter.probes.http.probe import KIND, run
from exporter.probes.http.spec import ApplicationIssuerSpec, JsonAssertion, parse_json_path
from tests.probes.test_http_support import Tls, app_with, make_check, raw_server, serve
from tests.support.servers import free_port


def values(outcome: Outcome, family: str) -> list[Measurement]:
    return [m for m in outcome.measurements if m.family == family]


def value(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in values(outcome, family)
             if all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, outcome.measurements)
    return found[0]


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy", "checks": {"db": {"latency_ms": 3}},
                              "components": [{"name": "db", "ok": True}], "version": "1.4.2"})


async def degraded(request: web.Request) -> web.Response:
    return web.json_response({"status": "degraded"}, status=503)


async def not_json(request: web.Request) -> web.Response:
    return web.Response(text="<html>OK</html>", content_type="text/html")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.3)
    return web.Response(text="ok")


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 200_000)


@pytest.fixture
async def app_url() -> Any:
    app = app_with({"/health": health, "/degraded": degraded, "/html": not_json,
                    "/slow": slow, "/big": big})
    async with serve(app) as url:
        yield url


# --------------------------------------------------------------------------- basics


async def test_health_json_passes_and_exports_status_and_duration(ctx: RuntimeContext,
                                                                   app_url: str) -> None:
    spec = make_check(url=f"{app_url}/health",
                      json_assertions=[{"path": "status", "value": "healthy"}])
    outcome = await run(spec, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_http_status_code") == 200
    assert 0 < value(outcome, "readiness_http_duration_seconds") < 5
    assert value(outcome, "readiness_http_json_assertion_ok", index="0", path="status") == 1


async def test_unexpected_status_fails_and_skips_body_checks(ctx: RuntimeContext,
                                                             app_url: str) -> None:
    spec = make_check(url=f"{app_url}/degraded",
                      json_assertions=[{"path": "status", "value": "healthy"}])
    outcome = await run(spec, ctx)
    assert outcome.status is Status.FAIL
    assert "status 503, expected 200" in outcome.message
    assert value(outcome, "readiness_http_status_code") == 503
    assert values(outcome, "readiness_http_json_assertion_ok") == []


async def test_expected_status_list_accepts_other_codes(ctx: RuntimeContext,
                                                        app_url: str) -> None:
    spec = make_check(url=f"{app_url}/degraded", expected_status=[200, 503])
    assert (await run(spec, ctx)).status is Status.PASS


@pytest.mark.parametrize(("assertion", "ok"), [
    ({"path": "status", "op": "!=", "value": "down"}, True),
    ({"path": "checks.db.latency_ms", "op": "<", "value": 10}, True),
    ({"path": "checks.db.latency_ms", "op": ">=", "value": 10}, False),
    ({"path": "components[0].ok", "op": "==", "value": True}, True),
    ({"path": "components[0].ok", "op": "==", "value": 1}, False),  # true is not 1
    ({"path": "components[-1].name", "op": "in", "value": ["db", "cache"]}, True),
    ({"path": "version", "op": "exists"}, True),
    ({"path": "checks.cache", "op": "exists"}, False),
    ({"path": "components", "op": "not_empty"}, True),
    ({"path": "status", "op": ">", "value": 3}, False),  # a string is not comparable to 3
    ({"path": "$", "op": "not_empty"}, True),
])
async def test_json_assertion_operators(ctx: RuntimeContext, app_url: str,
                                        assertion: dict[str, Any], ok: bool) -> None:
    outcome = await run(make_check(url=f"{app_url}/health", json_assertions=[assertion]), ctx)
    assert (outcome.status is Status.PASS) is ok, outcome.message
    if not ok:
        assert assertion["path"].split(".")[0].split("[")[0] in outcome.message


async def test_json_assertion_on_non_json_body_fails(ctx: RuntimeContext, app_url: str) -> None:
    outcome = await run(make_check(url=f"{app_url}/html",
                                   json_assertions=[{"path": "status", "value": "ok"}]), ctx)
    assert outcome.status is Status.FAIL and "not JSON" in outcome.message


async def test_body_regex(ctx: RuntimeContext, app_url: str) -> None:
    good = await run(make_check(url=f"{app_url}/html", body_regex=r"<html>OK"), ctx)
    bad = await run(make_check(url=f"{app_url}/html", body_regex=r"healthy"), ctx)
    assert good.status is Status.PASS and value(good, "readiness_http_body_regex_matched") == 1
    assert bad.status is Status.FAIL and value(bad, "readiness_http_body_regex_matched") == 0


async def test_max_latency_exceeded_fails_and_exports_target(ctx: RuntimeContext,
                                                             app_url: str) -> None:
    outcome = await run(make_check(url=f"{app_url}/slow", max_latency="50ms"), ctx)
    assert outcome.status is Status.FAIL and "ms >" in outcome.message
    assert value(outcome, "readiness_http_duration_target_seconds") == pytest.approx(0.05)
    assert value(outcome, "readiness_http_duration_seconds") >= 0.3


async def test_body_over_limit_is_protocol_error(ctx: RuntimeContext, app_url: str) -> None:
    outcome = await run(make_check(url=f"{app_url}/big", max_body_bytes=100_000), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.PROTOCOL
    assert "max_body_bytes" in outcome.message


async def test_redirect_not_followed_by_default(ctx: RuntimeContext) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/health")

    async with serve(app_with({"/old": moved, "/health": health})) as url:
        kept = await run(make_check(url=f"{url}/old"), ctx)
        followed = await run(make_check(url=f"{url}/old", follow_redirects=True), ctx)
    assert kept.status is Status.FAIL and value(kept, "readiness_http_status_code") == 302
    assert followed.status is Status.PASS


# --------------------------------------------------------------------------- transport errors


async def test_refused_port_is_connect_error(ctx: RuntimeContext) -> None:
    outcome = await run(make_check(url=f"http://127.0.0.1:{free_port()}/health"), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONNECT
    assert value(outcome, "readiness_http_status_code") == 0


async def test_silent_port_is_timeout(ctx: RuntimeContext) -> None:
    async with raw_server("silent") as port:
        outcome = await run(make_check(url=f"http://127.0.0.1:{port}/", timeout=0.5), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.TIMEOUT


async def test_resetting_port_is_error_not_crash(ctx: RuntimeContext) -> None:
    async with raw_server("reset") as port:
        outcome = await run(make_check(url=f"http://127.0.0.1:{port}/"), ctx)
    assert outcome.status is Status.ERROR
    assert outcome.reason in (Reason.PROTOCOL, Reason.CONNECT)


async def test_non_http_answer_is_protocol_error(ctx: RuntimeContext) -> None:
    async with raw_server("garbage") as port:
        outcome = await run(make_check(url=f"http://127.0.0.1:{port}/"), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.PROTOCOL


async def test_https_to_plain_http_port_is_tls_error(ctx: RuntimeContext, app_url: str) -> None:
    outcome = await run(make_check(url=app_url.replace("http://", "https://") + "/health"), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.TLS


async def test_untrusted_certificate_is_tls_error_and_ca_file_fixes_it(
        ctx: RuntimeContext, tmp_path: Path) -> None:
    tls = Tls(tmp_path)
    async with serve(app_with({"/health": health}), tls.server_context()) as url:
        untrusted = await run(make_check(url=f"{url}/health"), ctx)
        trusted = await run(make_check(url=f"{url}/health", tls={"ca_file": tls.ca_file}), ctx)
        skipped = await run(make_check(url=f"{url}/health",
                                       tls={"insecure_skip_verify": True}), ctx)
    assert untrusted.status is Status.ERROR and untrusted.reason is Reason.TLS
    assert "certificate" in untrusted.message
    assert trusted.status is Status.PASS, trusted.message
    assert skipped.status is Status.PASS


async def test_wrong_server_name_is_tls_error(ctx: RuntimeContext, tmp_path: Path) -> None:
    tls = Tls(tmp_path)
    async with serve(app_with({"/health": health}), tls.server_context()) as url:
        outcome = await run(make_check(url=f"{url}/health", tls={
            "ca_file": tls.ca_file, "server_name": "other.example"}), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.TLS


async def test_missing_ca_file_is_config_error(ctx: RuntimeContext, tmp_path: Path) -> None:
    outcome = await run(make_check(url="https://127.0.0.1:1/",
                                   tls={"ca_file": tmp_path / "nope.pem"}), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG


class _NoSuchHost(AbstractResolver):
    """Answers every lookup with 'name not known' (keeps the DNS test on loopback)."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


class _DnsContext(RuntimeContext):
    def __init__(self, tmp: Path) -> None:
        super().__init__(state_dir=tmp)
        self._session: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_NoSuchHost()))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await super().aclose()


async def test_unresolvable_host_is_dns_error(tmp_path: Path) -> None:
    context = _DnsContext(tmp_path)
    try:
        outcome = await run(make_check(url="https://no-such-host.invalid/health"), context)
    finally:
        await context.aclose()
    assert outcome.status is Status.ERROR and outcome.reason is Reason.DNS
    assert "no-such-host.invalid" in outcome.message


# --------------------------------------------------------------------------- credentials

TOKEN = "tok-7f3c9a51e0b24d6f8c1e-never-show"
PASSWORD = "pw-2b8e61d94c7a05f3-never-show"
API_KEY = "key-93d0c1b7aa5e42f6-never-show"


async def protected(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    key = request.headers.get("X-Api-Key")
    basic = "Basic " + base64.b64encode(f"smoke:{PASSWORD}".encode()).decode()
    if auth in (f"Bearer {TOKEN}", basic) or key == API_KEY:
        return web.json_response({"assistant": "ready", "echo": "nothing secret"})
    return web.json_response({"error": "unauthorized"}, status=401)


def _assert_no_secret(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    dumped = repr(outcome) + json.dumps([dict(m.labels) for m in outcome.measurements])
    logs = "\n".join(r.getMessage() + repr(r.args) + repr(r.__dict__)
                     for r in caplog.records)
    for secret in (TOKEN, PASSWORD, API_KEY):
        assert secret not in dumped
        assert secret not in logs


async def test_bearer_token_pass_and_never_shown(ctx: RuntimeContext,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("API_SMOKE_TOKEN", TOKEN)
    async with serve(app_with({"/api/v1/copilot/": protected})) as url:
        spec = make_check(url=f"{url}/api/v1/copilot/", bearer_token="${API_SMOKE_TOKEN}",
                          json_assertions=[{"path": "assistant", "value": "ready"}])
        outcome = await run(spec, ctx)
        unauth = await run(make_check(url=f"{url}/api/v1/copilot/"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert TOKEN not in repr(spec)
    assert unauth.status is Status.FAIL and "401" in unauth.message  # no credentials: fail
    _assert_no_secret(outcome, caplog)


async def test_rejected_credentials_are_auth_error(ctx: RuntimeContext,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("API_SMOKE_TOKEN", TOKEN + "-wrong")
    async with serve(app_with({"/api": protected})) as url:
        outcome = await run(make_check(url=f"{url}/api", bearer_token="${API_SMOKE_TOKEN}"),
                            ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.AUTH
    assert value(outcome, "readiness_http_status_code") == 401
    _assert_no_secret(outcome, caplog)
    assert TOKEN + "-wrong" not in repr(outcome)


async def test_basic_auth_and_secret_header(ctx: RuntimeContext, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    monkeypatch.setenv("SMOKE_API_KEY", API_KEY)
    async with serve(app_with({"/api": protected})) as url:
        basic = await run(make_check(url=f"{url}/api", basic_auth={
            "username": "smoke", "password": {"file": str(password_file)}}), ctx)
        keyed = await run(make_check(url=f"{url}/api",
                                     secret_headers={"X-Api-Key": "${SMOKE_API_KEY}"}), ctx)
    assert basic.status is Status.PASS, basic.message
    assert keyed.status is Status.PASS, keyed.message
    _assert_no_secret(basic, caplog)
    _assert_no_secret(keyed, caplog)


async def test_unset_token_is_config_error_naming_the_variable(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_SMOKE_TOKEN_UNSET", raising=False)
    outcome = await run(make_check(url="http://127.0.0.1:1/",
                                   bearer_token="${API_SMOKE_TOKEN_UNSET}"), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "API_SMOKE_TOKEN_UNSET" in outcome.message


# --------------------------------------------------------------------------- spec validation


@pytest.mark.parametrize(("fields", "where"), [
    ({"url": "ftp://host/x"}, "url"),
    ({"url": "https://user:pw@host/"}, "url"),
    ({"headers": {"Authorization": "Bearer abc"}}, "headers"),
    ({"bearer_token": "inline-token-value"}, "bearer_token"),
    ({"expected_status": [700]}, "expected_status"),
    ({"json_assertions": [{"path": "a..b", "value": 1}]}, "json_assertions.0.path"),
    ({"json_assertions": [{"path": "status"}]}, "json_assertions.0"),
    ({"json_assertions": [{"path": "a", "op": "in", "value": "x"}]}, "json_assertions.0"),
    ({"json_assertions": [{"path": "a", "op": "exists", "value": 1}]}, "json_assertions.0"),
    ({"body_regex": "("}, "body_regex"),
    ({"hsts": {"min_max_age": -1}}, "hsts.min_max_age"),
    ({"rate_limit": {"burst": {"requests": 10}}}, "rate_limit.burst.own_endpoint"),
    ({"rate_limit": {"burst": {"own_endpoint": True, "requests": 100000}}},
     "rate_limit.burst.requests"),
    ({"cors": {"foreign_origin": "https://evil.example/path"}}, "cors.foreign_origin"),
    ({"tls": {"cert_file": "/x.pem"}}, "tls"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_specs_are_rejected_with_a_path(fields: dict[str, Any], where: str) -> None:
    base = {"url": "https://app.example/health"}
    with pytest.raises(ValidationError) as info:
        make_check(**{**base, **fields})
    locations = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert where in locations, locations


def test_json_path_syntax() -> None:
    assert parse_json_path("$.a.b[2]['c.d']") == ("a", "b", 2, "c.d")
    assert parse_json_path("status") == ("status",)
    assert parse_json_path("$") == ()
    with pytest.raises(ValueError):
        parse_json_path("a[x]")


def test_json_path_options_are_checked_when_read() -> None:
    assert JsonAssertion.model_validate({"path": "checks['db'].status", "op": "exists"}).path \
        == "checks['db'].status"
    url = "https://app.example/.well-known/app"
    assert ApplicationIssuerSpec.model_validate(
        {"discovery_url": url, "issuer_path": "auth.issuer"}).issuer_path == "auth.issuer"
    with pytest.raises(ValidationError) as assertion:
        JsonAssertion.model_validate({"path": "checks[db]", "op": "exists"})
    assert [e["loc"] for e in assertion.value.errors()] == [("path",)]
    with pytest.raises(ValidationError) as issuer:
        ApplicationIssuerSpec.model_validate({"discovery_url": url, "issuer_path": "a..b"})
    assert [e["loc"] for e in issuer.value.errors()] == [("issuer_path",)]


def test_kind_is_registered_with_metrics() -> None:
    from exporter import registry

    assert registry.probe_kind("http") is KIND
    names = [family.name for family in KIND.metrics]
    assert len(names) == len(set(names))
    assert all(name.startswith("readiness_http_") for name in names)
