"""Configuration model of `kind: http` checks (`HttpCheck` and its opt-in sub-blocks).

One request is made to `url`; its status, latency, headers and body are checked against
the fields below. Each sub-block is opt-in (absent = not checked): `hsts`,
`correlation_id`, `rate_limit` (headers), `oidc`, `saml_metadata` and
`prometheus_exposition` look at that same response; `cors`, `rate_limit.burst`,
`input_validation` and `waf` send their own extra requests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from exporter.model import CheckSpec, Duration, SecretReference
from exporter.transport.http_auth import (
    BasicAuth,
    HttpUrl,
    check_header_names,
    check_plain_headers,
)
from exporter.transport.tls import TlsClientOptions

__all__ = [
    "ApplicationIssuerSpec",
    "BasicAuth",
    "BurstSpec",
    "CorrelationIdSpec",
    "CorsSpec",
    "HstsSpec",
    "HttpCheck",
    "InputValidationSpec",
    "JsonAssertion",
    "OidcSpec",
    "PrometheusExpositionSpec",
    "RateLimitSpec",
    "SamlMetadataSpec",
    "WafSpec",
    "parse_json_path",
]

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- JSON paths

_PATH_TOKEN_RE = re.compile(
    r"\.?([A-Za-z_][A-Za-z0-9_\-]*)"  # .name
    r"|\[(-?\d+)\]"  # [index]
    r"|\[\"([^\"]*)\"\]|\['([^']*)'\]"  # ["key"] or ['key']
)


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """Split `status`, `checks.db.status`, `items[0].name`, `$.a["b.c"]` into keys/indexes.

    An empty path or `$` means the whole document. Raises `ValueError` on bad syntax.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PATH_TOKEN_RE.match(text, pos)
        if match is None or (match.group(1) is not None and pos > 0 and text[pos] != "."):
            raise ValueError(
                f"invalid JSON path {path!r} at position {pos}: use dotted keys and [index], "
                "e.g. 'status', 'checks.db.status', 'items[0].name'"
            )
        if match.group(1) is not None:
            parts.append(match.group(1))
        elif match.group(2) is not None:
            parts.append(int(match.group(2)))
        else:
            parts.append(match.group(3) if match.group(3) is not None else match.group(4))
        pos = match.end()
    return tuple(parts)


def _checked_path(path: str) -> str:
    parse_json_path(path)
    return path


JsonPath = Annotated[str, AfterValidator(_checked_path)]
"""A JSON path option: its syntax is checked when the configuration is read."""


Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "exists", "not_empty"]


class JsonAssertion(_Block):
    """One assertion on the JSON body: `{path: status, op: "==", value: healthy}`."""

    path: JsonPath = Field(description="dotted/indexed path: 'status', 'checks.db.status', "
                           "'items[0].name', '$' for the whole document")
    op: Op = Field(default="==", description="==, !=, <, <=, >, >=, in, exists, not_empty")
    value: Any = Field(default=None, description="compared value (a list for 'in'; "
                       "unused by exists / not_empty)")

    @model_validator(mode="after")
    def _value_fits_op(self) -> JsonAssertion:
        if self.op not in ("exists", "not_empty") and "value" not in self.model_fields_set:
            raise ValueError(f"op {self.op!r} needs a value (write null to compare with null)")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list as value")
        if self.op in ("<", "<=", ">", ">=") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
        ):
            raise ValueError(f"op {self.op!r} needs a number or a string as value")
        if self.op in ("exists", "not_empty") and self.value is not None:
            raise ValueError(f"op {self.op!r} takes no value")
        return self

    def describe(self) -> str:
        """Short text for messages (values are configuration, not secrets)."""
        if self.op in ("exists", "not_empty"):
            return f"{self.path} {self.op}"
        return f"{self.path} {self.op} {self.value!r}"


# --------------------------------------------------------------------------- auth, TLS


# --------------------------------------------------------------------------- sub-blocks


class HstsSpec(_Block):
    """Strict-Transport-Security on the response (2.2.2)."""

    min_max_age: int = Field(default=31_536_000, ge=0,
                             description="seconds; the seed asks for one year")
    require_include_subdomains: bool = False
    require_preload: bool = False


class CorsSpec(_Block):
    """CORS restriction (2.2.3): a preflight from a foreign origin must not be allowed."""

    url: HttpUrl | None = Field(default=None, description="endpoint to test (default: url)")
    foreign_origin: str = Field(default="https://readiness-probe.invalid",
                                description="an origin the service must not trust")
    request_method: str = Field(default="POST", pattern=r"^[A-Z]+$",
                                description="Access-Control-Request-Method of the preflight")
    request_headers: list[str] = Field(default=["authorization", "content-type"],
                                       description="Access-Control-Request-Headers")
    allow_wildcard: bool = Field(default=False, description="accept "
                                 "`Access-Control-Allow-Origin: *` without credentials "
                                 "(public APIs)")
    check_null_origin: bool = Field(default=True, description="also send `Origin: null`; "
                                    "allowing it is a failure")
    allowed_origin: str | None = Field(default=None, description="a trusted origin whose "
                                       "preflight must be allowed (proves CORS is on)")

    @field_validator("foreign_origin", "allowed_origin")
    @classmethod
    def _origin_ok(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise ValueError("an origin is scheme://host[:port], e.g. https://evil.example")
        return value.rstrip("/")


class BurstSpec(_Block):
    """Active rate-limit test: a bounded burst must produce a 429 or a decreasing
    remaining count.

    Only against endpoints you own: `own_endpoint: true` must be written explicitly.
    """

    own_endpoint: Literal[True] = Field(description="confirms the endpoint is yours")
    url: HttpUrl | None = Field(default=None, description="endpoint to hit (default: url)")
    method: Method = "GET"
    requests: int = Field(default=100, ge=1, le=1000, description="hard cap on requests")
    concurrency: int = Field(default=10, ge=1, le=50)


class RateLimitSpec(_Block):
    """Rate limiting (2.2.4): rate-limit headers present (a proxy: a static header
    passes) and/or a bounded burst that shows the limiter counting (the real test)."""

    require_headers: bool = Field(default=True, description="RateLimit-* or X-RateLimit-* "
                                  "headers must be on the response")
    burst: BurstSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> RateLimitSpec:
        if not self.require_headers and self.burst is None:
            raise ValueError("rate_limit checks nothing: set require_headers or burst")
        return self


class InputValidationSpec(_Block):
    """Opt-in (2.2.5): a malformed body must be answered 4xx, never 5xx or 2xx."""

    url: HttpUrl | None = Field(default=None, description="endpoint (default: url)")
    method: Method = "POST"
    body: str = Field(default='{"readiness_probe": [1, 2,', description="malformed payload")
    content_type: str = "application/json"
    expected_status: list[int] = Field(default=[400, 413, 415, 422], min_length=1)

    @field_validator("expected_status")
    @classmethod
    def _codes(cls, value: list[int]) -> list[int]:
        return _status_codes(value)


class WafSpec(_Block):
    """Opt-in (2.2.6): a benign attack signature must be blocked with 403/406."""

    url: HttpUrl | None = Field(default=None, description="endpoint (default: url)")
    method: Method = "GET"
    query: dict[str, str] = Field(
        default={"q": "<script>alert('readiness-probe')</script>' OR '1'='1"},
        description="query parameters carrying the signature")
    headers: dict[str, str] = {}
    expected_status: list[int] = Field(default=[403, 406], min_length=1)

    @field_validator("headers")
    @classmethod
    def _headers_ok(cls, value: dict[str, str]) -> dict[str, str]:
        return check_plain_headers(value)

    @field_validator("expected_status")
    @classmethod
    def _codes(cls, value: list[int]) -> list[int]:
        return _status_codes(value)


DEFAULT_CORRELATION_HEADERS = [
    "X-Request-ID", "X-Correlation-ID", "traceparent", "X-Trace-ID", "Request-Id",
    "X-Amzn-Trace-Id", "X-B3-TraceId", "X-Cloud-Trace-Context",
]


class CorrelationIdSpec(_Block):
    """Correlation ids (5.2.4): a fresh random id is sent and must come back.

    With `echo_header: null` only presence of one of `headers` is checked, which a
    constant header also satisfies (documented as the weaker rule).
    """

    headers: list[str] = Field(default=DEFAULT_CORRELATION_HEADERS, min_length=1,
                               description="correlation headers looked for (presence)")
    echo_header: str | None = Field(default="X-Request-ID", description="send a fresh "
                                    "random id in this header (X-Request-ID, traceparent, "
                                    "...) and require the response to echo it; null = "
                                    "presence only")

    @field_validator("echo_header")
    @classmethod
    def _echo_header_ok(cls, value: str | None) -> str | None:
        if value is not None:
            check_plain_headers({value: "x"})
        return value


class ApplicationIssuerSpec(_Block):
    """Where the application's own OIDC setting is observed (2.1.4): exactly one source.

    `config_file` + `config_path`: the issuer in its config file must equal the IdP's.
    `discovery_url` + `issuer_path`: the issuer its own endpoint reports must equal it.
    `login_url`: its login endpoint must redirect to the IdP's `authorization_endpoint`.
    """

    config_file: Path | None = Field(default=None, description="the application's config "
                                     "file (YAML, JSON or .env)")
    config_path: str = Field(default="security.oidc.issuer", description="dotted path of "
                             "the issuer in config_file")
    discovery_url: HttpUrl | None = Field(default=None, description="an application "
                                          "endpoint answering JSON with its issuer")
    issuer_path: JsonPath = Field(default="issuer", description="JSON path of the issuer "
                                  "in the discovery_url answer")
    login_url: HttpUrl | None = Field(default=None, description="the application's login "
                                      "endpoint; it must redirect to the IdP")

    @model_validator(mode="after")
    def _one_source(self) -> ApplicationIssuerSpec:
        sources = [self.config_file, self.discovery_url, self.login_url]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("set exactly one of config_file, discovery_url or login_url")
        return self


class OidcSpec(_Block):
    """OIDC discovery document at `url` (2.1.4), and the application's use of it."""

    issuer: str = Field(description="the configured issuer; must equal the document's")
    require_https: bool = Field(default=True, description="issuer and endpoints are https")
    fetch_jwks: bool = Field(default=True, description="fetch jwks_uri and require keys")
    required_fields: list[str] = Field(
        default=["issuer", "authorization_endpoint", "jwks_uri", "response_types_supported",
                 "subject_types_supported", "id_token_signing_alg_values_supported"])
    application: ApplicationIssuerSpec | None = Field(
        default=None, description="where the application's configured issuer (or login "
        "redirect) is observed; without it only the IdP side is checked")


class SamlMetadataSpec(_Block):
    """SAML metadata at `url` (2.1.4): signing certificates parsed, expiry exported."""

    warn_days: int = Field(default=30, ge=0, description="fail when a signing certificate "
                           "expires within this many days")
    entity_id: str | None = Field(default=None, description="expected entityID")
    require_signing_certificate: bool = True


class PrometheusExpositionSpec(_Block):
    """The body parses as Prometheus text exposition (6.2, 7.4)."""

    required_prefix: str | None = Field(default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
                                        description="at least one family with this prefix")
    required_metrics: list[str] = Field(default=[], description="families that must exist")
    min_families: int = Field(default=1, ge=0)


def _status_codes(value: list[int]) -> list[int]:
    for code in value:
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code (100-599)")
    return value


# --------------------------------------------------------------------------- the check


class HttpCheck(CheckSpec):
    """`kind: http` options."""

    kind: Literal["http"]
    url: HttpUrl = Field(description="absolute http(s) URL")
    method: Method = "GET"
    headers: dict[str, str] = Field(default={}, description="extra request headers "
                                    "(no credentials: see bearer_token / secret_headers)")
    secret_headers: dict[str, SecretReference] = Field(
        default={}, description="headers whose values are secrets, e.g. X-Api-Key")
    bearer_token: SecretReference | None = Field(
        default=None, description="sent as `Authorization: <token_scheme> <token>`")
    token_scheme: str = Field(default="Bearer", pattern=r"^[A-Za-z][A-Za-z0-9._-]*$",
                              description="Bearer, or e.g. Splunk, ApiKey")
    basic_auth: BasicAuth | None = None
    body: str | None = Field(default=None, description="request body (text)")
    json_body: Any = Field(default=None, description="request body as JSON")
    content_type: str | None = None
    expected_status: list[int] = Field(default=[200], min_length=1)
    follow_redirects: bool = False
    json_assertions: list[JsonAssertion] = Field(default=[], description="all must hold")
    body_regex: str | None = Field(default=None, description="must match somewhere in the body")
    max_latency: Duration | None = Field(default=None, gt=0, description="slower = fail")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0, le=256 * 1024 * 1024)
    tls: TlsClientOptions = Field(default_factory=TlsClientOptions,
                                  description="TLS client options (ca_file, cert_file, "
                                  "key_file, server_name, insecure_skip_verify)")

    hsts: HstsSpec | None = None
    cors: CorsSpec | None = None
    rate_limit: RateLimitSpec | None = None
    input_validation: InputValidationSpec | None = None
    waf: WafSpec | None = None
    correlation_id: CorrelationIdSpec | None = None
    oidc: OidcSpec | None = None
    saml_metadata: SamlMetadataSpec | None = None
    prometheus_exposition: PrometheusExpositionSpec | None = None

    @field_validator("headers")
    @classmethod
    def _headers_ok(cls, value: dict[str, str]) -> dict[str, str]:
        return check_plain_headers(value)

    @field_validator("secret_headers")
    @classmethod
    def _secret_header_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_header_names(value)
        return value

    @field_validator("expected_status")
    @classmethod
    def _codes(cls, value: list[int]) -> list[int]:
        return _status_codes(value)

    @field_validator("body_regex")
    @classmethod
    def _regex_ok(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"body_regex does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HttpCheck:
        if self.body is not None and self.json_body is not None:
            raise ValueError("set body or json_body, not both")
        auth = [self.bearer_token is not None, self.basic_auth is not None,
                any(n.lower() == "authorization" for n in self.secret_headers)]
        if sum(auth) > 1:
            raise ValueError("use one of bearer_token, basic_auth or an Authorization "
                             "secret header")
        if self.follow_redirects and self.secret_headers:
            raise ValueError("follow_redirects is not allowed with secret_headers (they would "
                             "be sent to the redirect target, whatever its host)")
        if self.oidc is not None and self.saml_metadata is not None:
            raise ValueError("one document per check: oidc or saml_metadata")
        return self

    @property
    def authenticated(self) -> bool:
        """Whether the request carries credentials (401/403 then mean error/auth)."""
        return (self.bearer_token is not None or self.basic_auth is not None
                or bool(self.secret_headers))
