"""`http` probe documents: OIDC discovery, SAML metadata, Prometheus exposition; and the
preset fragment and docs of the family."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.http.documents import url_host
from exporter.probes.http.probe import KIND, HttpCheck, run
from tests.probes import tls_support as ts
from tests.probes.test_http_support import Tls, app_with, make_check, serve

ROOT = Path(__file__).resolve().parents[2]


def value(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in outcome.measurements if m.family == family
             and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, outcome.measurements)
    return found[0]


# --------------------------------------------------------------------------- OIDC


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path)


def oidc_app(state: dict[str, Any]) -> web.Application:
    async def discovery(request: web.Request) -> web.Response:
        if state.get("raw") is not None:
            return web.Response(text=state["raw"])
        base = f"{request.scheme}://{request.host}"
        document = {
            "issuer": state.get("issuer", base),
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": state.get("jwks_uri", f"{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        for name in state.get("drop", []):
            document.pop(name)
        return web.json_response(document)

    async def jwks(request: web.Request) -> web.Response:
        keys = state.get("keys", [{"kty": "RSA", "kid": "a", "n": "xx", "e": "AQAB"},
                                  {"kty": "EC", "kid": "b", "crv": "P-256"}])
        return web.json_response({"keys": keys})

    return app_with({"/.well-known/openid-configuration": discovery, "/jwks": jwks})


@pytest.mark.parametrize(("state", "status", "fragment"), [
    ({}, Status.PASS, "OIDC discovery valid"),
    # Only the host of a mismatching issuer is shown: its path could carry a token.
    ({"issuer": "https://other-idp.example/t/0f3c9a7e5d1b"}, Status.FAIL,
     "issuer is another URL (host other-idp.example)"),
    ({"drop": ["jwks_uri"]}, Status.FAIL, "lacks jwks_uri"),
    ({"keys": []}, Status.FAIL, "JWKS has no keys"),
    ({"jwks_uri": "http://127.0.0.1:9/jwks"}, Status.FAIL, "jwks_uri is not an https URL"),
    ({"raw": "<html>login</html>"}, Status.FAIL, "not a JSON object"),
])
async def test_oidc_discovery(ctx: RuntimeContext, tls: Tls, state: dict[str, Any],
                              status: Status, fragment: str) -> None:
    async with serve(oidc_app(state), tls.server_context()) as base:
        spec = make_check(url=f"{base}/.well-known/openid-configuration",
                          tls={"ca_file": tls.ca_file}, oidc={"issuer": base})
        outcome = await run(spec, ctx)
    assert outcome.status is status, outcome.message
    assert fragment in outcome.message
    assert "0f3c9a7e5d1b" not in outcome.message
    assert value(outcome, "readiness_http_oidc_discovery_valid") == (
        1 if status is Status.PASS else 0)
    if status is Status.PASS:
        assert value(outcome, "readiness_http_oidc_jwks_keys") == 2


def idp_and_app(app_issuer: str | None, login_to: str | None) -> web.Application:
    """An IdP (discovery, JWKS) and an application whose own setting points at
    `app_issuer` / whose login redirects to `login_to` (None: the IdP itself)."""
    app = oidc_app({})

    async def app_config(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.json_response({"auth": {"issuer": app_issuer or base}})

    async def login(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        target = login_to or f"{base}/authorize"
        raise web.HTTPFound(f"{target}?client_id=qbitel&state=s3cr3tstate")

    app.router.add_get("/app/auth-config", app_config)
    app.router.add_get("/app/login", login)
    return app


ELSEWHERE = "https://staging-idp.example/realms/qbitel"


@pytest.mark.parametrize(("source", "app_issuer", "login_to", "status", "fragment"), [
    ("discovery", None, None, Status.PASS, "the application's issuer"),
    # the old rule passed these: the IdP is fine, but the app uses another one
    ("discovery", ELSEWHERE, None, Status.FAIL, "is host staging-idp.example, not the IdP"),
    ("login", None, None, Status.PASS, "redirects to the IdP's authorization_endpoint"),
    ("login", None, "https://staging-idp.example/authorize", Status.FAIL,
     "redirects to host staging-idp.example"),
    ("file", None, None, Status.PASS, "the application's issuer"),
    ("file", ELSEWHERE, None, Status.FAIL, "not the IdP's issuer"),
])
async def test_oidc_application_uses_the_idp(ctx: RuntimeContext, tls: Tls, tmp_path: Path,
                                             source: str, app_issuer: str | None,
                                             login_to: str | None, status: Status,
                                             fragment: str) -> None:
    async with serve(idp_and_app(app_issuer, login_to), tls.server_context()) as base:
        application: dict[str, Any] = {
            "discovery": {"discovery_url": f"{base}/app/auth-config",
                          "issuer_path": "auth.issuer"},
            "login": {"login_url": f"{base}/app/login"},
        }.get(source, {})
        if source == "file":
            config_file = tmp_path / "app.yaml"
            config_file.write_text(f"security:\n  oidc:\n    issuer: {app_issuer or base}\n")
            application = {"config_file": str(config_file)}
        idp_only = await run(make_check(url=f"{base}/.well-known/openid-configuration",
                                        tls={"ca_file": tls.ca_file},
                                        oidc={"issuer": base}), ctx)
        outcome = await run(make_check(url=f"{base}/.well-known/openid-configuration",
                                       tls={"ca_file": tls.ca_file},
                                       oidc={"issuer": base, "application": application}), ctx)
    assert idp_only.status is Status.PASS  # what the old rule said in every case
    assert outcome.status is status, outcome.message
    assert fragment in outcome.message
    assert "s3cr3tstate" not in outcome.message
    assert value(outcome, "readiness_http_oidc_application_matches") == (
        1 if status is Status.PASS else 0)


async def test_oidc_application_without_the_setting_is_a_config_error(
        ctx: RuntimeContext, tls: Tls, tmp_path: Path) -> None:
    config_file = tmp_path / "app.yaml"
    config_file.write_text("security:\n  session_timeout_minutes: 30\n")
    async with serve(oidc_app({}), tls.server_context()) as base:
        outcome = await run(make_check(
            url=f"{base}/.well-known/openid-configuration", tls={"ca_file": tls.ca_file},
            oidc={"issuer": base, "application": {"config_file": str(config_file)}}), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "oidc.application.config_path" in outcome.message


def test_preset_oidc_checks_the_application_side() -> None:
    from exporter import config

    preset = config.build(config.preset_file("qbitel-production", "21-http.yaml"), "t", {})
    check = next(spec for spec in preset.checks if spec.id == "2.1.4-oidc")
    assert isinstance(check, HttpCheck) and check.oidc is not None
    assert check.oidc.application is not None
    assert check.oidc.application.config_file is not None
    assert check.oidc.application.config_path == "security.oidc.issuer"


def test_oidc_application_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        make_check(url="https://idp.example/.well-known/openid-configuration",
                   oidc={"issuer": "https://idp.example", "application": {}})


# --------------------------------------------------------------------------- SAML

NOW = dt.datetime.now(dt.UTC)


def make_cert(cn: str, not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))


def b64(cert: x509.Certificate) -> str:
    der = cert.public_bytes(serialization.Encoding.DER)
    text = base64.b64encode(der).decode()
    return "\n".join(text[i:i + 64] for i in range(0, len(text), 64))  # wrapped, like real files


def metadata(keys: list[tuple[str | None, str]], valid_until: str | None = None,
             entity_id: str = "https://idp.qbitel.example/saml") -> str:
    descriptors = "".join(
        f'<md:KeyDescriptor{f" use={chr(34)}{use}{chr(34)}" if use else ""}><ds:KeyInfo>'
        f"<ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data>"
        "</ds:KeyInfo></md:KeyDescriptor>" for use, cert in keys)
    until = f' validUntil="{valid_until}"' if valid_until else ""
    return (
        '<?xml version="1.0"?>'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}"{until}>'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{descriptors}"
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
        'Location="https://idp.qbitel.example/sso"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>")


async def run_saml(ctx: RuntimeContext, body: str, **options: Any) -> Outcome:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/samlmetadata+xml")

    async with serve(app_with({"/saml/metadata": handler})) as url:
        return await run(make_check(url=f"{url}/saml/metadata", saml_metadata=options), ctx)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


async def test_saml_valid_signing_cert_exports_expiry(ctx: RuntimeContext) -> None:
    signing = make_cert("idp-signing", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=365))
    # An encryption certificate close to expiry does not fail the signing check.
    encryption = make_cert("idp-enc", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=5))
    body = metadata([("signing", b64(signing)), ("encryption", b64(encryption))],
                    valid_until=(NOW + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    outcome = await run_saml(ctx, body, entity_id="https://idp.qbitel.example/saml")
    assert outcome.status is Status.PASS, outcome.message
    not_after = value(outcome, "readiness_http_saml_certificate_not_after_timestamp_seconds",
                      use="signing", fingerprint=fingerprint(signing))
    assert not_after == pytest.approx(signing.not_valid_after_utc.timestamp())
    assert value(outcome, "readiness_http_saml_certificate_not_after_timestamp_seconds",
                 use="encryption", fingerprint=fingerprint(encryption)) == pytest.approx(
        encryption.not_valid_after_utc.timestamp())
    assert value(outcome, "readiness_http_saml_metadata_valid_until_timestamp_seconds") > 0


@pytest.mark.parametrize(("days_before", "days_after", "fragment"), [
    (-1, 10, "expires in 10 days"),
    (-400, -2, "expired"),
    (3, 400, "not yet valid"),
])
async def test_saml_signing_cert_problems_still_export_dates(
        ctx: RuntimeContext, days_before: int, days_after: int, fragment: str) -> None:
    cert = make_cert("idp-signing", NOW + dt.timedelta(days=days_before),
                     NOW + dt.timedelta(days=days_after, hours=1))
    outcome = await run_saml(ctx, metadata([(None, b64(cert))]))
    assert outcome.status is Status.FAIL and fragment in outcome.message, outcome.message
    assert "idp-signing" in outcome.message
    assert value(outcome, "readiness_http_saml_certificate_not_after_timestamp_seconds",
                 use="unspecified", fingerprint=fingerprint(cert)) == pytest.approx(
        cert.not_valid_after_utc.timestamp())


async def test_saml_metadata_problems(ctx: RuntimeContext) -> None:
    cert = make_cert("idp", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=365))
    no_signing = await run_saml(ctx, metadata([("encryption", b64(cert))]))
    assert no_signing.status is Status.FAIL and "no signing certificate" in no_signing.message
    stale = await run_saml(ctx, metadata([("signing", b64(cert))],
                                         valid_until="2001-01-01T00:00:00Z"))
    assert stale.status is Status.FAIL and "validUntil has passed" in stale.message
    other = await run_saml(ctx, metadata([("signing", b64(cert))]),
                           entity_id="https://other.example")
    assert other.status is Status.FAIL and "entityID" in other.message
    garbage = await run_saml(ctx, metadata([("signing", "bm90IGEgY2VydA==")]))
    assert garbage.status is Status.FAIL and "unparsable" in garbage.message


@pytest.mark.parametrize("body", [
    "not xml at all",
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">&lol2;'
    "</md:EntityDescriptor>",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">&xxe;'
    "</md:EntityDescriptor>",
    "<html><body>Sign in</body></html>",
])
async def test_saml_hostile_or_wrong_documents_fail_safely(ctx: RuntimeContext,
                                                           body: str) -> None:
    outcome = await run_saml(ctx, body)
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("SAML metadata:")
    assert "root:" not in outcome.message  # /etc/passwd never read into a message


# --------------------------------------------------------------------------- exposition

GOOD = """# HELP qbitel_requests_total Requests served.
# TYPE qbitel_requests_total counter
qbitel_requests_total{route="/health"} 12
# HELP process_cpu_seconds_total CPU.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
"""

OPENMETRICS = """# TYPE qbitel_up gauge
qbitel_up 1
# EOF
"""


async def run_metrics(ctx: RuntimeContext, body: str, content_type: str = "text/plain",
                      **options: Any) -> Outcome:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    async with serve(app_with({"/metrics": handler})) as url:
        return await run(make_check(url=f"{url}/metrics", prometheus_exposition=options), ctx)


async def test_exposition_with_prefix_passes(ctx: RuntimeContext) -> None:
    outcome = await run_metrics(ctx, GOOD, required_prefix="qbitel_",
                                required_metrics=["process_cpu_seconds_total"])
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_http_exposition_valid") == 1
    assert value(outcome, "readiness_http_exposition_prefix_families", prefix="qbitel_") == 1


async def test_exposition_without_prefix_fails(ctx: RuntimeContext) -> None:
    outcome = await run_metrics(ctx, GOOD, required_prefix="payments_")
    assert outcome.status is Status.FAIL and "no metric named payments_*" in outcome.message
    assert value(outcome, "readiness_http_exposition_prefix_families", prefix="payments_") == 0


@pytest.mark.parametrize("body", [
    "<html><body>Not Found</body></html>",
    'qbitel_up{job="x" 1\n',
    "qbitel_up one\n",
])
async def test_bad_exposition_body_fails(ctx: RuntimeContext, body: str) -> None:
    outcome = await run_metrics(ctx, body, required_prefix="qbitel_")
    assert outcome.status is Status.FAIL
    assert "not valid Prometheus exposition" in outcome.message
    assert value(outcome, "readiness_http_exposition_valid") == 0


async def test_openmetrics_body_and_missing_metric(ctx: RuntimeContext) -> None:
    content_type = "application/openmetrics-text"
    ok = await run_metrics(ctx, OPENMETRICS, content_type, required_prefix="qbitel_")
    missing = await run_metrics(ctx, OPENMETRICS, content_type,
                                required_metrics=["qbitel_requests_total"])
    assert ok.status is Status.PASS, ok.message
    assert missing.status is Status.FAIL and "qbitel_requests_total" in missing.message


# --------------------------------------------------------------------------- preset, docs


def test_preset_fragment_loads_with_owned_ids() -> None:
    from exporter import config

    documents = dict(config._preset_documents("qbitel-production"))
    text = documents["preset qbitel-production/21-http.yaml"]
    data = config._parse_yaml(text, "21-http.yaml")
    loaded = config.build(data, "21-http.yaml", environ={})
    items = {spec.item_id for spec in loaded.checks}
    assert items == {"2.1.4", "2.2.2", "2.2.3", "2.2.4", "2.2.5", "2.2.6", "5.2.4", "6.2",
                     "7.4"}
    assert {spec.id for spec in loaded.checks if spec.kind != "http"} == {"7.4-error-rate"}
    for spec in loaded.checks:
        if not spec.enabled:
            assert spec.disabled_reason, spec.id
    assert not loaded.check("2.2.6").enabled  # "(if applicable)"


def test_every_metric_is_documented() -> None:
    docs = (ROOT / "docs" / "probes" / "http.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(readiness_http_[a-z_]+)`", docs, re.MULTILINE))
    assert {family.name for family in KIND.metrics} <= rows


def test_docs_examples_validate() -> None:
    from exporter import config

    docs = (ROOT / "docs" / "probes" / "http.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL)
    assert len(blocks) == 2
    example = config.build(config._parse_yaml(blocks[0], "docs"), "docs",
                           environ={"API_SMOKE_TOKEN": "x"})
    assert [spec.id for spec in example.checks] == ["6.2-health", "7.4-smoke", "2.2.2"]
    override = config._parse_yaml(blocks[1], "docs")
    assert override["include"] == ["qbitel-production"]
    ids = {entry["id"] for entry in override["checks"]}
    preset = config.preset_file("qbitel-production", "21-http.yaml")
    assert ids <= {entry["id"] for entry in preset["checks"]}


def qbitel_like_app(token: str) -> web.Application:
    """An application that satisfies every http check of the preset: it echoes the
    request id it gets and its limiter counts every request."""
    security = {"Strict-Transport-Security": "max-age=63072000; includeSubDomains"}
    served = 0

    @web.middleware
    async def headers_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal served
        served += 1
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            response = exc
        response.headers.update(security)
        response.headers["X-Request-ID"] = request.headers.get("X-Request-ID", "generated")
        response.headers["X-RateLimit-Limit"] = "600"
        response.headers["X-RateLimit-Remaining"] = str(max(600 - served, 0))
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=GOOD, content_type="text/plain")

    async def copilot(request: web.Request) -> web.Response:
        if request.method == "OPTIONS":
            return web.Response(status=204)  # no CORS grant for anyone else
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if "<script" in request.query_string.lower() or "%3cscript" in \
                request.query_string.lower():
            return web.Response(status=403)
        if request.method == "POST":
            try:
                import json
                json.loads(await request.text())
            except ValueError:
                return web.json_response({"error": "malformed"}, status=400)
        return web.json_response({"assistant": "ready"})

    app = web.Application(middlewares=[headers_middleware])
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", ok)
    app.router.add_get("/readyz", ok)
    app.router.add_get("/metrics", metrics)
    for method in ("GET", "POST", "OPTIONS"):
        app.router.add_route(method, "/api/v1/copilot/", copilot)
    return app


async def test_preset_checks_pass_against_a_conforming_app(
        ctx: RuntimeContext, tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import config

    token = "smoke-4c1d9e7f2a-never-show"
    monkeypatch.setenv("API_SMOKE_TOKEN", token)
    preset = config.preset_file("qbitel-production", "21-http.yaml")
    async with serve(qbitel_like_app(token), tls.server_context()) as base:
        overrides = []
        for entry in preset["checks"]:
            if entry["id"].startswith("2.1.4") or entry["kind"] != "http":
                continue
            text = yaml_dump(entry).replace("https://qbitel.example.internal", base) \
                .replace("http://qbitel.example.internal:9090", base)
            override = yaml_load(text)
            override.update(enabled=True, tls={"ca_file": str(tls.ca_file)})
            if override["id"] in ("7.4-smoke", "2.2.5", "2.2.6"):
                override["bearer_token"] = "${API_SMOKE_TOKEN}"
            overrides.append(override)
        loaded = config.build({"checks": overrides}, "test")
        specs = [spec for spec in loaded.checks if isinstance(spec, HttpCheck)]
        outcomes = {spec.id: await run(spec, ctx) for spec in specs}
    failing = {k: o.message for k, o in outcomes.items() if o.status is not Status.PASS}
    assert failing == {}
    assert len(outcomes) == 13
    assert all(token not in o.message for o in outcomes.values())


def yaml_dump(data: Any) -> str:
    import yaml
    return str(yaml.safe_dump(data))


def yaml_load(text: str) -> Any:
    import yaml
    return yaml.safe_load(text)


@pytest.mark.parametrize("tweak", [{"version": 6}, {"duplicate_extension": True}],
                         ids=["invalid-version", "duplicate-extension"])
async def test_saml_certificate_cryptography_rejects_is_counted_not_internal(
        ctx: RuntimeContext, tweak: dict[str, Any]) -> None:
    # issue 17: cryptography rejects these with InvalidVersion / DuplicateExtension (no
    # ValueError); the good signing certificate beside it is still judged.
    bad_der, _ = ts.tweaked_cert("bad.idp.example", **tweak)
    good = make_cert("idp", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=365))
    bad = base64.b64encode(bad_der).decode()
    outcome = await run_saml(ctx, metadata([("signing", bad), ("signing", b64(good))]))
    assert outcome.status is Status.FAIL, outcome.message
    assert outcome.reason is None
    assert "unparsable" in outcome.message
    dates = [m for m in outcome.measurements
             if m.family == "readiness_http_saml_certificate_not_after_timestamp_seconds"]
    assert [m.labels["fingerprint"] for m in dates] == [fingerprint(good)]


@pytest.mark.parametrize(("value", "host"), [
    ("https://idp.example/realms/x?token=s3cret", "idp.example"),
    ("not a url", None),          # relative: no host
    ("http://[::1", None),        # yarl refuses it (ValueError)
    ("", None),
    (42, None),
    ({"issuer": "https://idp.example"}, None),
])
def test_url_host_names_a_url_by_its_host_only(value: object, host: str | None) -> None:
    assert url_host(value) == host
