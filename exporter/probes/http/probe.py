"""`http`: one request to an endpoint, judged on status, latency, body and headers.

Opt-in sub-blocks add HSTS (2.2.2), CORS (2.2.3), rate limiting (2.2.4), input
validation (2.2.5), WAF (2.2.6), correlation ids (5.2.4), OIDC discovery and SAML
metadata (2.1.4) and Prometheus exposition (6.2, 7.4). Credentials come from secret
references and never appear in a message, label or log line.
"""

from __future__ import annotations

import json
import re

from yarl import URL

from exporter.model import Findings, Outcome, ProbeContext, ProbeError, ProbeKind
from exporter.probes.http import metrics as m
from exporter.probes.http.active import (
    check_burst,
    check_cors,
    check_input_validation,
    check_waf,
)
from exporter.probes.http.app_issuer import check_application_issuer
from exporter.probes.http.assertions import evaluate
from exporter.probes.http.client import Caller, Deadline, Response
from exporter.probes.http.documents import (
    check_exposition,
    check_oidc,
    check_saml,
    parse_json,
)
from exporter.probes.http.headers import (
    check_correlation,
    check_hsts,
    check_rate_limit_headers,
    hsts_objective,
    new_correlation_id,
)
from exporter.probes.http.spec import HttpCheck
from exporter.probes.http.timed import timed_call
from exporter.transport.base import request_budget
from exporter.transport.http import HTTP, HttpOptions, reject_credentials
from exporter.transport.http_auth import credential_headers

__all__ = ["KIND", "HttpCheck", "run"]

_BIG_TEXT = 64 * 1024


def _request_body(spec: HttpCheck) -> tuple[bytes | None, dict[str, str]]:
    headers: dict[str, str] = {}
    if spec.json_body is not None:
        data: bytes | None = json.dumps(spec.json_body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    elif spec.body is not None:
        data = spec.body.encode("utf-8")
    else:
        data = None
    if spec.content_type is not None:
        headers["Content-Type"] = spec.content_type
    return data, headers


async def _judge_body(spec: HttpCheck, response: Response, ctx: ProbeContext,
                      report: Findings) -> None:
    if spec.body_regex is not None:
        text = response.text()
        if len(text) > _BIG_TEXT:  # a long search must not stall the event loop
            found = await ctx.run_blocking(re.search, spec.body_regex, text)
        else:
            found = re.search(spec.body_regex, text)
        matched = found is not None
        report.measure(m.BODY_REGEX, 1 if matched else 0)
        if not matched:
            report.problem("body does not match body_regex")
    if spec.json_assertions:
        try:
            document = await parse_json(response, ctx)
        except ValueError:
            for index, assertion in enumerate(spec.json_assertions):
                report.measure(m.JSON_ASSERTION, 0, index=str(index), path=assertion.path)
            report.problem("body is not JSON")
            return
        failed = 0
        for index, assertion in enumerate(spec.json_assertions):
            problem = evaluate(assertion, document)
            report.measure(m.JSON_ASSERTION, 0 if problem else 1, index=str(index),
                           path=assertion.path)
            if problem:
                failed += 1
                report.problem(problem)
        if not failed:
            count = len(spec.json_assertions)
            report.note(f"{count} JSON assertion{'s' if count > 1 else ''} hold")


def _judge_status(spec: HttpCheck, response: Response, report: Findings) -> bool:
    """Status and latency of the main answer; whether the status is an expected one."""
    status_ok = response.status in spec.expected_status
    if not status_ok and spec.authenticated and response.status in (401, 403):
        raise reject_credentials(spec.url, response.status)
    if not status_ok:
        expected = "/".join(str(code) for code in spec.expected_status)
        report.problem(f"status {response.status}, expected {expected}")
    else:
        report.note(f"{response.status} in {response.elapsed * 1000:.0f} ms")
    if spec.max_latency is not None and response.elapsed > spec.max_latency:
        report.problem(f"took {response.elapsed * 1000:.0f} ms > {spec.max_latency * 1000:.0f} ms")
    return status_ok


async def _judge_answer(spec: HttpCheck, response: Response, sent_id: str | None,
                        caller: Caller, ctx: ProbeContext, report: Findings) -> None:
    """The sub-checks that read the main answer (headers always, documents on success)."""
    status_ok = _judge_status(spec, response, report)
    https = URL(response.url).scheme == "https"
    if spec.hsts is not None:
        check_hsts(spec.hsts, response.headers, https, report)
    if spec.correlation_id is not None:
        check_correlation(spec.correlation_id, response.headers, sent_id, report)
    if spec.rate_limit is not None and spec.rate_limit.require_headers:
        check_rate_limit_headers(response.headers, report)
    if not status_ok:  # body checks only make sense on the expected answer
        return
    await _judge_body(spec, response, ctx, report)
    if spec.oidc is not None:
        idp = await check_oidc(spec.oidc, response, caller, ctx, report)
        if idp is not None and spec.oidc.application is not None:
            await check_application_issuer(spec.oidc.application, idp, caller, ctx, report)
    if spec.saml_metadata is not None:
        await check_saml(spec.saml_metadata, response, ctx, report)
    if spec.prometheus_exposition is not None:
        await check_exposition(spec.prometheus_exposition, response, ctx, report)


async def _active_checks(spec: HttpCheck, caller: Caller, report: Findings) -> None:
    """The sub-checks that send their own requests."""
    if spec.cors is not None:
        await check_cors(spec.cors, spec.url, caller, report)
    if spec.input_validation is not None:
        await check_input_validation(spec.input_validation, spec.url, caller, report)
    if spec.waf is not None:
        await check_waf(spec.waf, spec.url, caller, report)
    if spec.rate_limit is not None and spec.rate_limit.burst is not None:
        await check_burst(spec.rate_limit.burst, spec.url, caller, report)


async def _run_checks(spec: HttpCheck, ctx: ProbeContext, report: Findings) -> None:
    # objectives first: kept when the run ends in error (credentials, refused, timeout)
    if spec.max_latency is not None:
        report.measure(m.DURATION_TARGET, spec.max_latency)
    if spec.hsts is not None:
        hsts_objective(spec.hsts, report)
    auth = credential_headers(bearer_token=spec.bearer_token, scheme=spec.token_scheme,
                              basic_auth=spec.basic_auth, secret_headers=spec.secret_headers)
    data, extra = _request_body(spec)
    client = await ctx.client(HTTP, HttpOptions(tls=spec.tls))
    caller = Caller(client=client, deadline=Deadline(request_budget(spec.timeout)),
                    headers=dict(spec.headers), auth_headers=auth,
                    max_body_bytes=spec.max_body_bytes)
    sent_id: str | None = None
    if spec.correlation_id is not None and spec.correlation_id.echo_header is not None:
        sent_id = new_correlation_id(spec.correlation_id.echo_header)
        extra[spec.correlation_id.echo_header] = sent_id

    try:
        if spec.max_latency is not None:  # a latency verdict: timed off the main loop
            response = await timed_call(caller, ctx, spec.method, spec.url,
                                        extra_headers=extra, data=data,
                                        follow_redirects=spec.follow_redirects)
        else:
            response = await caller.call(spec.method, spec.url, extra_headers=extra,
                                         data=data, follow_redirects=spec.follow_redirects)
    except ProbeError:
        report.measure(m.STATUS_CODE, 0)
        raise
    report.measure(m.STATUS_CODE, response.status)
    report.measure(m.DURATION, response.elapsed)
    report.measure(m.RESPONSE_BYTES, len(response.body))
    await _judge_answer(spec, response, sent_id, caller, ctx, report)
    await _active_checks(spec, caller, report)


async def run(spec: HttpCheck, ctx: ProbeContext) -> Outcome:
    """Send the request(s) and judge the answer."""
    report = Findings()
    try:
        await _run_checks(spec, ctx, report)
    except ProbeError as exc:
        if not report.failed:
            return report.error(exc)
        # The target already answered "not ready": keep that, mention the later error.
        report.problem(f"then: {exc.message}")
    return report.outcome()


KIND = ProbeKind(
    name="http",
    spec=HttpCheck,
    run=run,
    summary="HTTP endpoint: status, latency, JSON/regex body, HSTS, CORS, rate limits, "
            "input validation, WAF, correlation ids, OIDC/SAML metadata, /metrics.",
    metrics=m.ALL,
)
