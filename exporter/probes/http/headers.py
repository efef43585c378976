"""Checks on the main response's headers: HSTS, rate-limit headers, correlation ids."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from exporter.model import Findings
from exporter.probes.http import metrics as m
from exporter.probes.http.spec import CorrelationIdSpec, HstsSpec

# --------------------------------------------------------------------------- HSTS


@dataclass(frozen=True, slots=True)
class Hsts:
    """A parsed Strict-Transport-Security header."""

    max_age: int
    include_subdomains: bool
    preload: bool


def parse_hsts(value: str) -> Hsts | None:
    """Parse `max-age=N; includeSubDomains; preload` (RFC 6797); None when invalid.

    Directive names are case-insensitive, values may be quoted, a directive may appear
    only once, and max-age is required.
    """
    seen: dict[str, str | None] = {}
    for raw in value.split(";"):
        directive = raw.strip()
        if not directive:
            continue
        name, sep, arg = directive.partition("=")
        key = name.strip().lower()
        if key in seen:
            return None
        seen[key] = arg.strip().strip('"') if sep else None
    max_age = seen.get("max-age")
    if max_age is None or not max_age.isdigit():
        return None
    return Hsts(int(max_age), "includesubdomains" in seen, "preload" in seen)


def hsts_objective(spec: HstsSpec, report: Findings) -> None:
    """The required minimum max-age, recorded before any request so that an `error` run
    (endpoint unreachable) exports it too."""
    report.measure(m.HSTS_MAX_AGE_TARGET, spec.min_max_age)


def check_hsts(spec: HstsSpec, headers: CIMultiDictProxy[str], https: bool,
               report: Findings) -> None:
    """2.2.2: the header is present and its max-age is at least the minimum.

    The objective is recorded by `hsts_objective` before the request.
    """
    values = headers.getall("Strict-Transport-Security", [])
    # Browsers honour only the first header field (RFC 6797 section 8.1).
    parsed = parse_hsts(values[0]) if values else None
    report.measure(m.HSTS_PRESENT, 1 if parsed else 0)
    report.measure(m.HSTS_MAX_AGE, parsed.max_age if parsed else 0)
    report.measure(m.HSTS_INCLUDE_SUBDOMAINS, 1 if parsed and parsed.include_subdomains else 0)
    report.measure(m.HSTS_PRELOAD, 1 if parsed and parsed.preload else 0)
    if not https:
        report.problem("HSTS is checked over http://: browsers ignore it there, use https://")
        return
    if not values:
        report.problem("no Strict-Transport-Security header")
        return
    if parsed is None:
        report.problem("Strict-Transport-Security header is invalid (no valid max-age)")
        return
    if parsed.max_age < spec.min_max_age:
        report.problem(f"HSTS max-age {parsed.max_age} < {spec.min_max_age}")
    if spec.require_include_subdomains and not parsed.include_subdomains:
        report.problem("HSTS lacks includeSubDomains")
    if spec.require_preload and not parsed.preload:
        report.problem("HSTS lacks preload")
    flags = "".join([", includeSubDomains" if parsed.include_subdomains else "",
                     ", preload" if parsed.preload else ""])
    report.note(f"HSTS max-age {parsed.max_age}{flags}")


# --------------------------------------------------------------------------- rate limit

_LIMIT_HEADERS = ("RateLimit-Limit", "X-RateLimit-Limit", "X-Rate-Limit-Limit")
_REMAINING_HEADERS = ("RateLimit-Remaining", "X-RateLimit-Remaining", "X-Rate-Limit-Remaining")
_OTHER_HEADERS = ("RateLimit", "RateLimit-Policy", "RateLimit-Reset", "X-RateLimit-Reset",
                  "X-Rate-Limit-Reset")
_LEADING_INT = re.compile(r"\s*(\d+)")
# IETF draft structured field: `RateLimit: "default";r=50;t=30` or `limit=100, remaining=50`.
_PARAM_RE = re.compile(r"(?:^|[;,\s])(r|remaining|l|limit|q)=(\d+)")


def _first_int(value: str | None) -> int | None:
    if value is None:
        return None
    match = _LEADING_INT.match(value)
    return int(match.group(1)) if match else None


def rate_limit_values(headers: CIMultiDictProxy[str]) -> tuple[bool, int | None, int | None]:
    """(headers present, limit, remaining) from RateLimit-* / X-RateLimit-* headers."""
    names = _LIMIT_HEADERS + _REMAINING_HEADERS + _OTHER_HEADERS
    present = any(name in headers for name in names)
    limit = next((v for v in (_first_int(headers.get(n)) for n in _LIMIT_HEADERS)
                  if v is not None), None)
    remaining = next((v for v in (_first_int(headers.get(n)) for n in _REMAINING_HEADERS)
                      if v is not None), None)
    for name in ("RateLimit", "RateLimit-Policy"):
        for key, number in _PARAM_RE.findall(headers.get(name, "")):
            if key in ("r", "remaining") and remaining is None:
                remaining = int(number)
            elif key in ("l", "limit", "q") and limit is None:
                limit = int(number)
    return present, limit, remaining


def check_rate_limit_headers(headers: CIMultiDictProxy[str], report: Findings) -> None:
    """2.2.4: RateLimit-* or X-RateLimit-* headers are on the response."""
    present, limit, remaining = rate_limit_values(headers)
    report.measure(m.RATE_LIMIT_HEADERS, 1 if present else 0)
    if limit is not None:
        report.measure(m.RATE_LIMIT_LIMIT, limit)
    if remaining is not None:
        report.measure(m.RATE_LIMIT_REMAINING, remaining)
    if not present:
        report.problem("no RateLimit-* / X-RateLimit-* headers")
    else:
        report.note("rate-limit headers present" + (f" (limit {limit})" if limit else "")
                    + "; headers alone do not show that requests are counted")


# --------------------------------------------------------------------------- correlation


def new_correlation_id(header: str) -> str:
    """A fresh random id for `header`: a W3C traceparent, or an opaque token."""
    if header.lower() == "traceparent":
        return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    return f"readiness-{uuid.uuid4().hex}"


def _trace_id(traceparent: str) -> str | None:
    parts = traceparent.strip().lower().split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else None


def is_echoed(header: str, sent_id: str, values: list[str]) -> bool:
    """Whether the response echoed `sent_id` (for traceparent: the same trace-id, since a
    server answers with its own span id)."""
    if header.lower() == "traceparent":
        wanted = _trace_id(sent_id)
        return wanted is not None and any(_trace_id(v) == wanted for v in values)
    return any(v.strip() == sent_id for v in values)


def check_correlation(spec: CorrelationIdSpec, headers: CIMultiDictProxy[str],
                      sent_id: str | None, report: Findings) -> None:
    """5.2.4: the response echoes the fresh id sent in `echo_header` (with `echo_header:
    null`, only one of the correlation headers must be present)."""
    names = list(spec.headers)
    if spec.echo_header is not None and spec.echo_header.lower() not in map(str.lower, names):
        names.append(spec.echo_header)
    found = next((name for name in names if headers.get(name, "").strip()), None)
    report.measure(m.CORRELATION_PRESENT, 1 if found else 0)
    if spec.echo_header is not None and sent_id is not None:
        echoed = is_echoed(spec.echo_header, sent_id, headers.getall(spec.echo_header, []))
        report.measure(m.CORRELATION_ECHOED, 1 if echoed else 0)
        if echoed:
            report.note(f"{spec.echo_header} sent was echoed")
        elif headers.get(spec.echo_header, "").strip():
            report.problem(f"{spec.echo_header} answered with another id than the one sent "
                           "(a constant or regenerated id)")
        else:
            report.problem(f"{spec.echo_header} sent was not echoed")
        return
    if found is None:
        shown = ", ".join(spec.headers[:4]) + (", ..." if len(spec.headers) > 4 else "")
        report.problem(f"no correlation id header ({shown})")
    else:
        report.note(f"correlation id in {found} (presence only, echo not checked)")
