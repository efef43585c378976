"""Checks that send their own requests: CORS, rate-limit burst, input validation, WAF."""

from __future__ import annotations

import asyncio

from exporter.model import Findings, ProbeError, Reason
from exporter.probes.http import metrics as m
from exporter.probes.http.client import Caller, Response
from exporter.probes.http.headers import rate_limit_values
from exporter.probes.http.spec import BurstSpec, CorsSpec, InputValidationSpec, WafSpec

# --------------------------------------------------------------------------- CORS

CORS_FINDINGS = ("foreign_origin_allowed", "origin_reflected", "wildcard_with_credentials",
                 "null_origin_allowed", "trusted_origin_refused")


def _allow_origin(response: Response) -> tuple[str | None, bool]:
    origin = response.headers.get("Access-Control-Allow-Origin")
    credentials = response.headers.get("Access-Control-Allow-Credentials", "")
    return (origin.strip() if origin is not None else None,
            credentials.strip().lower() == "true")


def _judge(response: Response, origin: str, spec: CorsSpec, found: set[str]) -> None:
    allowed, credentials = _allow_origin(response)
    if allowed is None:
        return
    if allowed == "*":
        if credentials:
            found.add("wildcard_with_credentials")
        if not spec.allow_wildcard:
            found.add("null_origin_allowed" if origin == "null" else "foreign_origin_allowed")
    elif allowed.lower() == origin.lower():
        if origin == "null":
            found.add("null_origin_allowed")
        else:
            found.add("foreign_origin_allowed")
            found.add("origin_reflected")


async def check_cors(spec: CorsSpec, url: str, caller: Caller, report: Findings) -> None:
    """2.2.3: preflight and simple request from a foreign origin are not allowed."""
    target = spec.url or url
    preflight_headers = {
        "Access-Control-Request-Method": spec.request_method,
        "Access-Control-Request-Headers": ", ".join(spec.request_headers),
    }
    found: set[str] = set()
    origins = [spec.foreign_origin] + (["null"] if spec.check_null_origin else [])
    for origin in origins:
        preflight = await caller.call("OPTIONS", target, authenticated=False,
                                      extra_headers={"Origin": origin, **preflight_headers})
        if origin == spec.foreign_origin:
            report.measure(m.CORS_PREFLIGHT_STATUS, preflight.status)
        _judge(preflight, origin, spec, found)
        # Browsers also read Access-Control-Allow-Origin on the actual response.
        simple = await caller.call("GET", target, authenticated=False,
                                   extra_headers={"Origin": origin}, read_body=False)
        _judge(simple, origin, spec, found)
    if spec.allowed_origin is not None:
        trusted = await caller.call("OPTIONS", target, authenticated=False,
                                    extra_headers={"Origin": spec.allowed_origin,
                                                   **preflight_headers})
        allowed, _ = _allow_origin(trusted)
        if allowed is None or allowed.lower() not in (spec.allowed_origin.lower(), "*"):
            found.add("trusted_origin_refused")
    for finding in CORS_FINDINGS:
        report.measure(m.CORS_FINDING, 1 if finding in found else 0, finding=finding)
    texts = {
        "foreign_origin_allowed": f"CORS allows foreign origin {spec.foreign_origin}",
        "origin_reflected": "CORS reflects any Origin",
        "wildcard_with_credentials": "CORS sends * with Allow-Credentials: true",
        "null_origin_allowed": "CORS allows Origin: null",
        "trusted_origin_refused": f"CORS refuses trusted origin {spec.allowed_origin}",
    }
    for finding in CORS_FINDINGS:
        if finding in found:
            report.problem(texts[finding])
    if not found:
        report.note("CORS restricted")


# --------------------------------------------------------------------------- burst


async def check_burst(spec: BurstSpec, url: str, caller: Caller, report: Findings) -> None:
    """2.2.4: at most `spec.requests` requests; pass at the first 429, or once the
    remaining count on the burst's answers has decreased (the limiter counts them).

    A constant remaining count (a static header) is not evidence of limiting.
    """
    target = spec.url or url
    sent = 0
    throttled_at: int | None = None
    remaining_seen: list[int] = []
    failures: list[ProbeError] = []
    stop = asyncio.Event()

    async def worker() -> None:
        nonlocal sent, throttled_at
        while not stop.is_set() and sent < spec.requests:
            sent += 1
            number = sent
            try:
                response = await caller.call(spec.method, target)
            except ProbeError as exc:
                failures.append(exc)
                if exc.reason is Reason.TIMEOUT or len(failures) >= 5:
                    stop.set()  # the run's deadline is spent, or the endpoint is failing
                continue
            if response.status == 429:
                throttled_at = number if throttled_at is None else min(throttled_at, number)
                stop.set()
            _, _, remaining = rate_limit_values(response.headers)
            if remaining is not None:
                remaining_seen.append(remaining)
                if min(remaining_seen) < remaining_seen[0]:
                    stop.set()

    await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, spec.requests))))
    decreased = bool(remaining_seen) and min(remaining_seen) < remaining_seen[0]
    report.measure(m.BURST_REQUESTS, sent)
    report.measure(m.BURST_THROTTLED, 1 if throttled_at is not None else 0)
    report.measure(m.BURST_REMAINING_DECREASED, 1 if decreased else 0)
    if throttled_at is not None:
        report.note(f"burst throttled (429) after {throttled_at} requests")
    elif decreased:
        report.note(f"remaining count fell from {remaining_seen[0]} to "
                    f"{min(remaining_seen)} during a burst of {sent} requests")
    elif failures and stop.is_set():
        timeouts = [f for f in failures if f.reason is Reason.TIMEOUT]
        raise (timeouts or failures)[0]
    else:
        counts = (f"stayed at {remaining_seen[0]}" if remaining_seen
                  else "was not reported")
        report.problem(f"no 429 after a burst of {sent} requests, and the remaining "
                       f"count {counts}")


# --------------------------------------------------------------------------- input, WAF


async def check_input_validation(spec: InputValidationSpec, url: str, caller: Caller,
                                 report: Findings) -> None:
    """2.2.5 (opt-in): a malformed body is refused with 4xx, never 5xx or success."""
    response = await caller.call(spec.method, spec.url or url,
                                 extra_headers={"Content-Type": spec.content_type},
                                 data=spec.body.encode("utf-8"))
    report.measure(m.INPUT_VALIDATION_STATUS, response.status)
    if response.status in spec.expected_status:
        report.note(f"malformed body answered {response.status}")
    elif response.status >= 500:
        report.problem(f"malformed body caused a server error ({response.status})")
    elif response.status in (401, 403):
        report.problem(f"malformed body answered {response.status}: not authenticated, "
                    "validation not reached")
    else:
        report.problem(f"malformed body answered {response.status}, expected "
                    f"{'/'.join(map(str, spec.expected_status))}")


async def check_waf(spec: WafSpec, url: str, caller: Caller, report: Findings) -> None:
    """2.2.6 (opt-in): a benign attack signature is blocked (403/406)."""
    response = await caller.call(spec.method, spec.url or url, extra_headers=spec.headers,
                                 params=spec.query)
    blocked = response.status in spec.expected_status
    report.measure(m.WAF_STATUS, response.status)
    report.measure(m.WAF_BLOCKED, 1 if blocked else 0)
    if blocked:
        report.note(f"attack signature blocked ({response.status})")
    else:
        report.problem(f"attack signature not blocked ({response.status})")
