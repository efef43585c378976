"""Checks on the main response's body as a document: OIDC discovery, SAML metadata,
Prometheus exposition. Parsing runs in the thread pool."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from exporter.model import Findings, ProbeContext, ProbeError, Reason
from exporter.probes.http import metrics as m
from exporter.probes.http.client import Caller, Response
from exporter.probes.http.spec import OidcSpec, PrometheusExpositionSpec, SamlMetadataSpec
from exporter.probes.observed import describe

_BIG_BODY = 64 * 1024


async def parse_json(response: Response, ctx: ProbeContext) -> Any:
    """The body as JSON (parsed in the thread pool when large); `ValueError` if not JSON."""
    if len(response.body) > _BIG_BODY:
        return await ctx.run_blocking(json.loads, response.body)
    return json.loads(response.body)


# --------------------------------------------------------------------------- OIDC


def _is_https(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.scheme == "https" and bool(url.host)


def url_host(value: object) -> str | None:
    """The host of a URL string; None for anything else (messages name a URL by its host
    only: its path or query may carry a token)."""
    if not isinstance(value, str):
        return None
    try:
        return URL(value).host or None
    except ValueError:
        return None


def _issuer_shape(issuer: object) -> str:
    """A mismatching issuer by its host only: its path or query could carry a token."""
    host = url_host(issuer)
    return f"another URL (host {host})" if host else describe(issuer)


async def check_oidc(spec: OidcSpec, response: Response, caller: Caller, ctx: ProbeContext,
                     report: Findings) -> dict[str, Any] | None:
    """2.1.4: discovery document valid, issuer as configured, JWKS reachable with keys;
    the document when it is a JSON object."""
    problems: list[str] = []
    try:
        document = await parse_json(response, ctx)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        report.measure(m.OIDC_VALID, 0)
        report.problem("OIDC discovery document is not a JSON object")
        return None
    missing = [name for name in spec.required_fields if name not in document]
    if missing:
        problems.append(f"OIDC discovery lacks {', '.join(missing[:4])}")
    issuer = document.get("issuer")
    if "issuer" in document and issuer != spec.issuer:
        shown = _issuer_shape(issuer)
        problems.append(f"OIDC issuer is {shown}, configured {spec.issuer}")
    if spec.require_https:
        for name in ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint"):
            if name in document and not _is_https(document[name]):
                problems.append(f"OIDC {name} is not an https URL")
    jwks_uri = document.get("jwks_uri")
    if spec.fetch_jwks and isinstance(jwks_uri, str) and (_is_https(jwks_uri) or (
            not spec.require_https and jwks_uri.startswith("http://"))):
        problems.extend(await _check_jwks(jwks_uri, caller, ctx, report))
    report.measure(m.OIDC_VALID, 0 if problems else 1)
    for problem in problems:
        report.problem(problem)
    if not problems:
        report.note(f"OIDC discovery valid for {spec.issuer}")
    return document


async def _check_jwks(uri: str, caller: Caller, ctx: ProbeContext,
                      report: Findings) -> list[str]:
    try:
        jwks_response = await caller.call("GET", uri, authenticated=False)
    except ProbeError as exc:
        if exc.reason is Reason.TIMEOUT:
            raise
        return [f"jwks_uri cannot be fetched ({exc.reason.value})"]
    if jwks_response.status != 200:
        return [f"jwks_uri answered {jwks_response.status}"]
    try:
        jwks = await parse_json(jwks_response, ctx)
    except ValueError:
        return ["jwks_uri is not JSON"]
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        return ["JWKS has no keys array"]
    usable = [k for k in keys if isinstance(k, dict) and isinstance(k.get("kty"), str)]
    report.measure(m.OIDC_JWKS_KEYS, len(usable))
    if not usable:
        return ["JWKS has no keys"]
    return []


# --------------------------------------------------------------------------- SAML

_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
_DS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass(frozen=True, slots=True)
class SamlCertificate:
    """One certificate found in SAML metadata."""

    use: str  # signing | encryption | unspecified
    fingerprint: str
    subject: str
    not_before: float
    not_after: float


@dataclass
class SamlMetadata:
    """What the metadata says about its entity and certificates."""

    entity_ids: list[str] = field(default_factory=list)
    valid_until: float | None = None
    certificates: list[SamlCertificate] = field(default_factory=list)
    bad_certificates: int = 0


def _xml_datetime(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text[:64] or "(no CN)"


def parse_saml_metadata(body: bytes) -> SamlMetadata:
    """Parse metadata XML (defusedxml: no entities, no external references).

    Raises `ValueError` when the body is not SAML metadata XML.
    """
    try:
        root: Element = SafeET.fromstring(body)
    except Exception as exc:  # ParseError and defusedxml's forbidden-construct errors
        raise ValueError(f"not well-formed XML ({type(exc).__name__})") from None
    if root.tag not in (f"{{{_MD}}}EntityDescriptor", f"{{{_MD}}}EntitiesDescriptor"):
        raise ValueError("root element is not a SAML EntityDescriptor")
    result = SamlMetadata()
    if root.get("validUntil"):
        result.valid_until = _xml_datetime(root.get("validUntil", ""))
    for entity in root.iter(f"{{{_MD}}}EntityDescriptor"):
        if entity.get("entityID"):
            result.entity_ids.append(entity.get("entityID", ""))
    seen: set[tuple[str, str]] = set()
    for descriptor in root.iter(f"{{{_MD}}}KeyDescriptor"):
        use = descriptor.get("use") or "unspecified"
        for node in descriptor.iter(f"{{{_DS}}}X509Certificate"):
            text = "".join((node.text or "").split())
            try:
                der = base64.b64decode(text, validate=True)
                cert = x509.load_der_x509_certificate(der)
                cert.extensions  # noqa: B018 - a bad extension is a bad certificate
                subject = _common_name(cert)
                not_before = cert.not_valid_before_utc.timestamp()
                not_after = cert.not_valid_after_utc.timestamp()
            except Exception:  # cryptography rejects with many types
                # (InvalidVersion, DuplicateExtension...): one bad certificate is counted,
                # the others are still judged.
                result.bad_certificates += 1
                continue
            fingerprint = hashlib.sha256(der).hexdigest()[:16]
            if (use, fingerprint) in seen:
                continue
            seen.add((use, fingerprint))
            result.certificates.append(SamlCertificate(
                use=use if use in ("signing", "encryption") else "unspecified",
                fingerprint=fingerprint, subject=subject,
                not_before=not_before, not_after=not_after,
            ))
    return result


async def check_saml(spec: SamlMetadataSpec, response: Response, ctx: ProbeContext,
                     report: Findings) -> None:
    """2.1.4: signing certificates parse, are valid now and beyond warn_days."""
    try:
        metadata = await ctx.run_blocking(parse_saml_metadata, response.body)
    except ValueError as exc:
        report.problem(f"SAML metadata: {exc}")
        return
    now = ctx.now()
    for cert in metadata.certificates:
        labels = {"use": cert.use, "fingerprint": cert.fingerprint}
        report.measure(m.SAML_NOT_AFTER, cert.not_after, **labels)
        report.measure(m.SAML_NOT_BEFORE, cert.not_before, **labels)
    if metadata.valid_until is not None:
        report.measure(m.SAML_VALID_UNTIL, metadata.valid_until)
        if metadata.valid_until <= now:
            report.problem("SAML metadata validUntil has passed")
    if spec.entity_id is not None and spec.entity_id not in metadata.entity_ids:
        report.problem(f"SAML metadata has no entityID {spec.entity_id}")
    if metadata.bad_certificates:
        report.problem(f"SAML metadata has {metadata.bad_certificates} unparsable certificate(s)")
    signing = [c for c in metadata.certificates if c.use in ("signing", "unspecified")]
    if spec.require_signing_certificate and not signing:
        report.problem("SAML metadata has no signing certificate")
    horizon = now + spec.warn_days * 86400
    for cert in signing:
        if cert.not_after <= now:
            report.problem(f"SAML signing certificate {cert.subject} ({cert.fingerprint}) expired")
        elif cert.not_before > now:
            report.problem(f"SAML signing certificate {cert.subject} ({cert.fingerprint}) "
                        "not yet valid")
        elif cert.not_after <= horizon:
            days = (cert.not_after - now) / 86400
            report.problem(f"SAML signing certificate {cert.subject} ({cert.fingerprint}) "
                        f"expires in {days:.0f} days (< {spec.warn_days})")
    if signing:
        soonest = min(c.not_after for c in signing)
        days_left = (soonest - now) / 86400
        report.note(f"{len(signing)} SAML signing certificate(s), first expiry in "
                    f"{days_left:.0f} days")


# --------------------------------------------------------------------------- exposition


@dataclass(frozen=True, slots=True)
class Exposition:
    """Names found in a parsed exposition body."""

    families: frozenset[str]
    samples: frozenset[str]


def parse_exposition(text: str, openmetrics: bool) -> Exposition:
    """Parse Prometheus text (or OpenMetrics); raises `ValueError` when invalid."""
    if openmetrics:
        from prometheus_client.openmetrics.parser import (
            text_string_to_metric_families as openmetrics_families,
        )
        parsed = list(openmetrics_families(text))  # type: ignore[no-untyped-call]
    else:
        parsed = list(text_string_to_metric_families(text))
    families = frozenset(f.name for f in parsed)
    samples = frozenset(s.name for f in parsed for s in f.samples)
    return Exposition(families, samples)


async def check_exposition(spec: PrometheusExpositionSpec, response: Response,
                           ctx: ProbeContext, report: Findings) -> None:
    """6.2 / 7.4: the body parses as exposition and has the required prefix / metrics."""
    openmetrics = response.content_type == "application/openmetrics-text"
    try:
        exposition = await ctx.run_blocking(parse_exposition, response.text(), openmetrics)
    except Exception:  # the parsers raise ValueError, IndexError, TypeError... on bad input
        report.measure(m.EXPOSITION_VALID, 0)
        report.measure(m.EXPOSITION_FAMILIES, 0)
        if spec.required_prefix:
            report.measure(m.EXPOSITION_PREFIX_FAMILIES, 0, prefix=spec.required_prefix)
        report.problem("body is not valid Prometheus exposition")
        return
    report.measure(m.EXPOSITION_VALID, 1)
    report.measure(m.EXPOSITION_FAMILIES, len(exposition.families))
    if len(exposition.families) < spec.min_families:
        report.problem(f"{len(exposition.families)} metric families, expected at least "
                    f"{spec.min_families}")
    if spec.required_prefix:
        matching = [f for f in exposition.families if f.startswith(spec.required_prefix)]
        report.measure(m.EXPOSITION_PREFIX_FAMILIES, len(matching), prefix=spec.required_prefix)
        if not matching:
            report.problem(f"no metric named {spec.required_prefix}*")
    missing = [name for name in spec.required_metrics
               if name not in exposition.families and name not in exposition.samples]
    if missing:
        report.problem(f"metrics missing: {', '.join(missing[:4])}")
    report.note(f"{len(exposition.families)} metric families")
