"""`http` probe security sub-checks against local aiohttp apps: HSTS, CORS, rate limits,
input validation, WAF, correlation ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.http.headers import parse_hsts
from exporter.probes.http.probe import run
from exporter.probes.http.spec import HttpCheck
from tests.probes.test_http_support import Tls, app_with, make_check, serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def value(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in outcome.measurements if m.family == family
             and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, outcome.measurements)
    return found[0]


def preset_check(check_id: str) -> HttpCheck:
    """An `http` check of the qbitel-production preset (21-http.yaml), inputs at defaults."""
    loaded = config.build(config.preset_file("qbitel-production", "21-http.yaml"), "test", {})
    found = next(spec for spec in loaded.checks if spec.id == check_id)
    assert isinstance(found, HttpCheck)
    return found


def with_headers(headers: dict[str, str], status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"}, status=status, headers=headers)
    return handler


# --------------------------------------------------------------------------- HSTS


@pytest.mark.parametrize(("header", "expected"), [
    ("max-age=31536000; includeSubDomains; preload", (31536000, True, True)),
    ('MAX-AGE="63072000"', (63072000, False, False)),
    ("max-age=0", (0, False, False)),
    ("includeSubDomains", None),
    ("max-age=abc", None),
    ("max-age=1; max-age=2", None),
])
def test_parse_hsts(header: str, expected: tuple[int, bool, bool] | None) -> None:
    parsed = parse_hsts(header)
    got = None if parsed is None else (parsed.max_age, parsed.include_subdomains,
                                       parsed.preload)
    assert got == expected


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path)


@pytest.mark.parametrize(("headers", "status", "fragment"), [
    ({"Strict-Transport-Security": "max-age=31536000; includeSubDomains"}, Status.PASS,
     "HSTS max-age 31536000, includeSubDomains"),
    ({"Strict-Transport-Security": "max-age=86400"}, Status.FAIL, "max-age 86400 < 31536000"),
    ({}, Status.FAIL, "no Strict-Transport-Security"),
    ({"Strict-Transport-Security": "includeSubDomains"}, Status.FAIL, "invalid"),
])
async def test_hsts_over_https(ctx: RuntimeContext, tls: Tls, headers: dict[str, str],
                               status: Status, fragment: str) -> None:
    async with serve(app_with({"/": with_headers(headers)}), tls.server_context()) as url:
        outcome = await run(make_check(url=f"{url}/", hsts={},
                                       tls={"ca_file": tls.ca_file}), ctx)
    assert outcome.status is status, outcome.message
    assert fragment in outcome.message
    assert value(outcome, "readiness_http_hsts_max_age_target_seconds") == 31536000
    expected_age = {"max-age=31536000; includeSubDomains": 31536000, "max-age=86400": 86400}
    assert value(outcome, "readiness_http_hsts_max_age_seconds") == expected_age.get(
        headers.get("Strict-Transport-Security", ""), 0)


async def test_hsts_required_flags(ctx: RuntimeContext, tls: Tls) -> None:
    headers = {"Strict-Transport-Security": "max-age=63072000"}
    async with serve(app_with({"/": with_headers(headers)}), tls.server_context()) as url:
        outcome = await run(make_check(url=f"{url}/", tls={"ca_file": tls.ca_file},
                                       hsts={"require_include_subdomains": True,
                                             "require_preload": True}), ctx)
    assert outcome.status is Status.FAIL
    assert "includeSubDomains" in outcome.message and "preload" in outcome.message
    assert value(outcome, "readiness_http_hsts_include_subdomains") == 0
    assert value(outcome, "readiness_http_hsts_max_age_seconds") == 63072000


async def test_hsts_over_plain_http_fails(ctx: RuntimeContext) -> None:
    headers = {"Strict-Transport-Security": "max-age=31536000"}
    async with serve(app_with({"/": with_headers(headers)})) as url:
        outcome = await run(make_check(url=f"{url}/", hsts={}), ctx)
    assert outcome.status is Status.FAIL and "http://" in outcome.message


# --------------------------------------------------------------------------- CORS

TRUSTED = "https://app.qbitel.example"


def cors_app(policy: str) -> web.Application:
    """`restricted`: only TRUSTED; `reflect`: echoes any origin with credentials;
    `wildcard`: `*`; `wildcard_credentials`: `*` + credentials; `null`: allows null;
    `none`: no CORS at all."""

    async def handler(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        headers: dict[str, str] = {}
        if policy == "restricted" and origin == TRUSTED:
            headers["Access-Control-Allow-Origin"] = TRUSTED
            headers["Vary"] = "Origin"
        elif policy == "reflect" and origin:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
        elif policy in ("wildcard", "wildcard_credentials"):
            headers["Access-Control-Allow-Origin"] = "*"
            if policy == "wildcard_credentials":
                headers["Access-Control-Allow-Credentials"] = "true"
        elif policy == "null" and origin in ("null", TRUSTED):
            headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS" and "Access-Control-Allow-Origin" in headers:
            headers["Access-Control-Allow-Methods"] = "GET, POST"
            headers["Access-Control-Allow-Headers"] = "authorization, content-type"
            return web.Response(status=204, headers=headers)
        return web.json_response({"status": "healthy"}, headers=headers)

    return app_with({"/api": handler}, methods=("GET", "OPTIONS"))


@pytest.mark.parametrize(("policy", "findings"), [
    ("restricted", set()),
    ("none", set()),
    ("reflect", {"foreign_origin_allowed", "origin_reflected", "null_origin_allowed"}),
    ("wildcard", {"foreign_origin_allowed", "null_origin_allowed"}),
    ("wildcard_credentials", {"foreign_origin_allowed", "wildcard_with_credentials",
                              "null_origin_allowed"}),
    ("null", {"null_origin_allowed"}),
])
async def test_cors_findings(ctx: RuntimeContext, policy: str, findings: set[str]) -> None:
    async with serve(cors_app(policy)) as url:
        outcome = await run(make_check(url=f"{url}/api", cors={}), ctx)
    exported = {m.labels["finding"] for m in outcome.measurements
                if m.family == "readiness_http_cors_finding" and m.value == 1}
    assert exported == findings
    assert (outcome.status is Status.PASS) is (not findings), outcome.message
    assert len([m for m in outcome.measurements
                if m.family == "readiness_http_cors_finding"]) == 5


async def test_cors_wildcard_allowed_for_public_api_but_not_with_credentials(
        ctx: RuntimeContext) -> None:
    async with serve(cors_app("wildcard")) as url:
        public = await run(make_check(url=f"{url}/api", cors={"allow_wildcard": True}), ctx)
    async with serve(cors_app("wildcard_credentials")) as url:
        creds = await run(make_check(url=f"{url}/api", cors={"allow_wildcard": True}), ctx)
    assert public.status is Status.PASS, public.message
    assert creds.status is Status.FAIL and "Allow-Credentials" in creds.message


async def test_cors_trusted_origin_must_be_allowed(ctx: RuntimeContext) -> None:
    async with serve(cors_app("restricted")) as url:
        ok = await run(make_check(url=f"{url}/api", cors={"allowed_origin": TRUSTED}), ctx)
    async with serve(cors_app("none")) as url:
        off = await run(make_check(url=f"{url}/api", cors={"allowed_origin": TRUSTED}), ctx)
    assert ok.status is Status.PASS, ok.message
    assert off.status is Status.FAIL and "trusted origin" in off.message
    assert value(off, "readiness_http_cors_finding", finding="trusted_origin_refused") == 1


# --------------------------------------------------------------------------- rate limits


class Limited:
    """An endpoint allowing `limit` requests, then 429; counts every request it gets."""

    def __init__(self, limit: int | None, headers: bool = True) -> None:
        self.limit = limit
        self.headers = headers
        self.count = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.count += 1
        headers: dict[str, str] = {}
        if self.headers and self.limit is not None:
            left = max(self.limit - self.count, 0)
            headers = {"X-RateLimit-Limit": str(self.limit),
                       "X-RateLimit-Remaining": str(left)}
        if self.limit is not None and self.count > self.limit:
            return web.json_response({"error": "slow down"}, status=429, headers=headers)
        return web.json_response({"status": "healthy"}, headers=headers)


async def test_rate_limit_headers_present(ctx: RuntimeContext) -> None:
    async with serve(app_with({"/api": Limited(1000).handle})) as url:
        outcome = await run(make_check(url=f"{url}/api", rate_limit={}), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_http_rate_limit_headers_present") == 1
    assert value(outcome, "readiness_http_rate_limit_limit") == 1000
    assert value(outcome, "readiness_http_rate_limit_remaining") == 999


async def test_ietf_ratelimit_header_fields(ctx: RuntimeContext) -> None:
    headers = {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=42;t=30'}
    async with serve(app_with({"/api": with_headers(headers)})) as url:
        outcome = await run(make_check(url=f"{url}/api", rate_limit={}), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_http_rate_limit_limit") == 100
    assert value(outcome, "readiness_http_rate_limit_remaining") == 42


async def test_rate_limit_headers_absent_fail(ctx: RuntimeContext) -> None:
    async with serve(app_with({"/api": Limited(None).handle})) as url:
        outcome = await run(make_check(url=f"{url}/api", rate_limit={}), ctx)
    assert outcome.status is Status.FAIL and "RateLimit" in outcome.message
    assert value(outcome, "readiness_http_rate_limit_headers_present") == 0


async def test_burst_stops_at_first_429(ctx: RuntimeContext) -> None:
    endpoint = Limited(8, headers=False)
    async with serve(app_with({"/api": endpoint.handle})) as url:
        outcome = await run(make_check(url=f"{url}/api", rate_limit={
            "require_headers": False,
            "burst": {"own_endpoint": True, "requests": 200, "concurrency": 4}}), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_http_rate_limit_burst_throttled") == 1
    sent = value(outcome, "readiness_http_rate_limit_burst_requests")
    # 1 main request + 8 allowed burst requests, then a 429; in-flight workers finish.
    assert 8 <= sent <= 8 + 4
    assert endpoint.count == sent + 1


async def test_burst_without_limit_fails_and_respects_the_cap(ctx: RuntimeContext) -> None:
    endpoint = Limited(None)
    async with serve(app_with({"/api": endpoint.handle})) as url:
        outcome = await run(make_check(url=f"{url}/api", rate_limit={
            "require_headers": False,
            "burst": {"own_endpoint": True, "requests": 30, "concurrency": 7}}), ctx)
    assert outcome.status is Status.FAIL and "no 429 after a burst of 30" in outcome.message
    assert "was not reported" in outcome.message
    assert endpoint.count == 31  # the main request + exactly the cap
    assert value(outcome, "readiness_http_rate_limit_burst_throttled") == 0


STATIC_HEADERS = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "100"}


async def test_static_rate_limit_header_passes_the_header_rule_but_fails_the_burst(
        ctx: RuntimeContext) -> None:
    """A limiter that is not there but a header that is: the old (header) rule said pass."""
    async with serve(app_with({"/api": with_headers(STATIC_HEADERS)})) as url:
        header_only = await run(make_check(url=f"{url}/api", rate_limit={}), ctx)
        burst = await run(make_check(url=f"{url}/api", rate_limit={
            "require_headers": False,
            "burst": {"own_endpoint": True, "requests": 10, "concurrency": 1}}), ctx)
    assert header_only.status is Status.PASS  # the proxy, documented as such
    assert burst.status is Status.FAIL, burst.message
    assert "remaining count stayed at 100" in burst.message
    assert value(burst, "readiness_http_rate_limit_burst_remaining_decreased") == 0
    assert value(burst, "readiness_http_rate_limit_burst_requests") == 10


async def test_burst_passes_when_the_remaining_count_decreases(ctx: RuntimeContext) -> None:
    endpoint = Limited(1000)  # never 429 within the budget, but it counts
    async with serve(app_with({"/api": endpoint.handle})) as url:
        outcome = await run(make_check(url=f"{url}/api", rate_limit={
            "require_headers": False,
            "burst": {"own_endpoint": True, "requests": 10, "concurrency": 1}}), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert "remaining count fell from 998 to 997" in outcome.message
    assert value(outcome, "readiness_http_rate_limit_burst_remaining_decreased") == 1
    assert value(outcome, "readiness_http_rate_limit_burst_throttled") == 0
    assert endpoint.count == 3  # the main request + 2: the burst stops at the evidence


async def test_preset_rate_limit_burst_is_on_with_a_small_budget() -> None:
    check = preset_check("2.2.4")
    assert check.rate_limit is not None and check.rate_limit.burst is not None
    assert not check.rate_limit.require_headers  # a header alone is not evidence
    assert check.rate_limit.burst.requests <= 20


# --------------------------------------------------------------------------- input, WAF


def validating_app(validates: bool) -> web.Application:
    async def submit(request: web.Request) -> web.Response:
        text = await request.text()
        try:
            payload = json.loads(text)
        except ValueError:
            if validates:
                return web.json_response({"error": "malformed JSON"}, status=400)
            raise web.HTTPInternalServerError(text="Traceback ...") from None
        return web.json_response({"received": len(payload)})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    app = app_with({"/health": health})
    app.router.add_post("/api/v1/submit", submit)
    return app


@pytest.mark.parametrize(("validates", "status", "code"), [(True, Status.PASS, 400),
                                                           (False, Status.FAIL, 500)])
async def test_input_validation(ctx: RuntimeContext, validates: bool, status: Status,
                                code: int) -> None:
    async with serve(validating_app(validates)) as url:
        outcome = await run(make_check(url=f"{url}/health", input_validation={
            "url": f"{url}/api/v1/submit"}), ctx)
    assert outcome.status is status, outcome.message
    assert value(outcome, "readiness_http_input_validation_status_code") == code
    if not validates:
        assert "server error (500)" in outcome.message


async def test_input_validation_accepting_garbage_fails(ctx: RuntimeContext) -> None:
    async def lax(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async with serve(app_with({"/x": lax}, methods=("GET", "POST"))) as url:
        outcome = await run(make_check(url=f"{url}/x", input_validation={}), ctx)
    assert outcome.status is Status.FAIL and "answered 200" in outcome.message


def waf_app(blocks: bool) -> web.Application:
    async def search(request: web.Request) -> web.Response:
        query = " ".join(request.query.values()).lower()
        if blocks and ("<script" in query or "' or '1'='1" in query):
            return web.Response(status=403, text="Request blocked")
        return web.json_response({"results": []})

    return app_with({"/search": search})


@pytest.mark.parametrize(("blocks", "status"), [(True, Status.PASS), (False, Status.FAIL)])
async def test_waf(ctx: RuntimeContext, blocks: bool, status: Status) -> None:
    async with serve(waf_app(blocks)) as url:
        outcome = await run(make_check(url=f"{url}/search", waf={}), ctx)
    assert outcome.status is status, outcome.message
    assert value(outcome, "readiness_http_waf_blocked") == (1 if blocks else 0)
    assert value(outcome, "readiness_http_waf_status_code") == (403 if blocks else 200)


# --------------------------------------------------------------------------- correlation


def correlating_app(mode: str) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        headers: dict[str, str] = {}
        if mode == "echo":
            headers["X-Request-ID"] = request.headers.get("X-Request-ID", "generated-1")
        elif mode == "traceparent":
            headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        elif mode == "fixed":
            headers["X-Request-ID"] = "always-the-same"
        elif mode == "trace-echo":  # same trace-id, the server's own span id
            sent = request.headers.get("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01")
            headers["traceparent"] = sent[:36] + "aaaaaaaaaaaaaaaa-01"
        return web.json_response({"status": "healthy"}, headers=headers)

    return app_with({"/": handler})


@pytest.mark.parametrize(("mode", "spec", "status"), [
    ("echo", {}, Status.PASS),
    # a constant header was enough before: the default now sends a fresh id
    ("traceparent", {}, Status.FAIL),
    ("fixed", {}, Status.FAIL),
    ("none", {}, Status.FAIL),
    ("echo", {"echo_header": "X-Request-ID"}, Status.PASS),
    ("fixed", {"echo_header": "X-Request-ID"}, Status.FAIL),
    ("trace-echo", {"echo_header": "traceparent"}, Status.PASS),
    ("traceparent", {"echo_header": "traceparent"}, Status.FAIL),
    ("traceparent", {"echo_header": None}, Status.PASS),
    ("traceparent", {"headers": ["X-Correlation-ID"], "echo_header": None}, Status.FAIL),
])
async def test_correlation_id(ctx: RuntimeContext, mode: str, spec: dict[str, Any],
                              status: Status) -> None:
    async with serve(correlating_app(mode)) as url:
        outcome = await run(make_check(url=f"{url}/", correlation_id=spec), ctx)
    assert outcome.status is status, outcome.message
    present = value(outcome, "readiness_http_correlation_id_present")
    assert present == (0 if mode == "none" or "headers" in spec else 1)
    if spec.get("echo_header", "X-Request-ID") is not None:
        assert value(outcome, "readiness_http_correlation_id_echoed") == (
            1 if mode in ("echo", "trace-echo") else 0)


def test_preset_correlation_id_sends_a_fresh_id() -> None:
    check = preset_check("5.2.4")
    assert check.correlation_id is not None
    assert check.correlation_id.echo_header == "X-Request-ID"


async def test_correlation_id_is_random_per_run(ctx: RuntimeContext) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Request-ID"])
        return web.json_response({}, headers={"X-Request-ID": request.headers["X-Request-ID"]})

    async with serve(app_with({"/": handler})) as url:
        for _ in range(2):
            outcome = await run(make_check(url=f"{url}/", correlation_id={}), ctx)
            assert outcome.status is Status.PASS, outcome.message
    assert len(set(seen)) == 2


async def test_burst_ends_at_the_run_deadline(ctx: RuntimeContext) -> None:
    count = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        await asyncio.sleep(0.1)
        return web.json_response({"status": "healthy"})

    async with serve(app_with({"/api": slow})) as url:
        outcome = await run(make_check(url=f"{url}/api", timeout=0.6, rate_limit={
            "require_headers": False,
            "burst": {"own_endpoint": True, "requests": 1000, "concurrency": 2}}), ctx)
        seen = count
        await asyncio.sleep(0.3)
        assert count == seen  # nothing keeps sending after the run ended
    assert outcome.status is Status.ERROR and outcome.reason is Reason.TIMEOUT
    assert seen < 20


def test_secret_headers_cannot_follow_redirects() -> None:
    with pytest.raises(ValueError, match="follow_redirects"):
        make_check(url="https://app.example/", follow_redirects=True,
                   secret_headers={"X-Api-Key": "${SOME_KEY}"})
