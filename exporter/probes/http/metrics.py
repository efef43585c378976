"""Metric families of the `http` probe (the exporter adds the `check` label)."""

from __future__ import annotations

from exporter.model import MetricFamily

_CACHED = " Measured on the exporter's schedule, not per scrape."

STATUS_CODE = MetricFamily(
    "readiness_http_status_code",
    "HTTP status code of the main request (0 when no response)." + _CACHED)
DURATION = MetricFamily(
    "readiness_http_duration_seconds",
    "Time from sending the main request to the end of its body." + _CACHED)
DURATION_TARGET = MetricFamily(
    "readiness_http_duration_target_seconds",
    "Configured max_latency of the main request.")
RESPONSE_BYTES = MetricFamily(
    "readiness_http_response_bytes",
    "Size of the main response body read (bounded by max_body_bytes)." + _CACHED)
JSON_ASSERTION = MetricFamily(
    "readiness_http_json_assertion_ok",
    "1 when the JSON assertion holds, 0 when not; index is its position in the list.",
    ("index", "path"))
BODY_REGEX = MetricFamily(
    "readiness_http_body_regex_matched",
    "1 when body_regex matched the response body.")

HSTS_PRESENT = MetricFamily(
    "readiness_http_hsts_present",
    "1 when a valid Strict-Transport-Security header is on the response.")
HSTS_MAX_AGE = MetricFamily(
    "readiness_http_hsts_max_age_seconds",
    "max-age of the Strict-Transport-Security header (0 when absent).")
HSTS_MAX_AGE_TARGET = MetricFamily(
    "readiness_http_hsts_max_age_target_seconds",
    "Minimum max-age the check requires (hsts.min_max_age).")
HSTS_INCLUDE_SUBDOMAINS = MetricFamily(
    "readiness_http_hsts_include_subdomains",
    "1 when the HSTS header has includeSubDomains.")
HSTS_PRELOAD = MetricFamily(
    "readiness_http_hsts_preload",
    "1 when the HSTS header has preload.")

CORS_FINDING = MetricFamily(
    "readiness_http_cors_finding",
    "1 when the CORS test found this problem, 0 when not (finding: foreign_origin_allowed, "
    "origin_reflected, wildcard_with_credentials, null_origin_allowed, "
    "trusted_origin_refused).",
    ("finding",))
CORS_PREFLIGHT_STATUS = MetricFamily(
    "readiness_http_cors_preflight_status_code",
    "Status code of the preflight (OPTIONS) sent from the foreign origin.")

RATE_LIMIT_HEADERS = MetricFamily(
    "readiness_http_rate_limit_headers_present",
    "1 when RateLimit-* or X-RateLimit-* headers are on the response.")
RATE_LIMIT_LIMIT = MetricFamily(
    "readiness_http_rate_limit_limit",
    "Request quota announced by the rate-limit headers (when numeric).")
RATE_LIMIT_REMAINING = MetricFamily(
    "readiness_http_rate_limit_remaining",
    "Remaining quota announced by the rate-limit headers (when numeric).")
BURST_REQUESTS = MetricFamily(
    "readiness_http_rate_limit_burst_requests",
    "Requests the opt-in burst sent (it stops at the first 429).")
BURST_THROTTLED = MetricFamily(
    "readiness_http_rate_limit_burst_throttled",
    "1 when the rate-limit burst received a 429.")
BURST_REMAINING_DECREASED = MetricFamily(
    "readiness_http_rate_limit_burst_remaining_decreased",
    "1 when the remaining count on the burst's answers decreased (the limiter counts).")

INPUT_VALIDATION_STATUS = MetricFamily(
    "readiness_http_input_validation_status_code",
    "Status code answering the malformed request body.")
WAF_STATUS = MetricFamily(
    "readiness_http_waf_status_code",
    "Status code answering the benign attack signature.")
WAF_BLOCKED = MetricFamily(
    "readiness_http_waf_blocked",
    "1 when the attack signature was blocked with an expected status.")

CORRELATION_PRESENT = MetricFamily(
    "readiness_http_correlation_id_present",
    "1 when the response carries one of the configured correlation id headers.")
CORRELATION_ECHOED = MetricFamily(
    "readiness_http_correlation_id_echoed",
    "1 when the response echoed the id sent in correlation_id.echo_header.")

OIDC_APP_MATCHES = MetricFamily(
    "readiness_http_oidc_application_matches",
    "1 when the application's configured issuer equals the IdP's (or its login redirects "
    "to the IdP's authorization_endpoint), else 0.")
OIDC_VALID = MetricFamily(
    "readiness_http_oidc_discovery_valid",
    "1 when the OIDC discovery document passed every rule.")
OIDC_JWKS_KEYS = MetricFamily(
    "readiness_http_oidc_jwks_keys",
    "Number of keys in the JWKS document named by jwks_uri.")

SAML_NOT_AFTER = MetricFamily(
    "readiness_http_saml_certificate_not_after_timestamp_seconds",
    "Expiry of a certificate in the SAML metadata (fingerprint: first 16 hex digits of "
    "its SHA-256).",
    ("use", "fingerprint"))
SAML_NOT_BEFORE = MetricFamily(
    "readiness_http_saml_certificate_not_before_timestamp_seconds",
    "Start of validity of a certificate in the SAML metadata.",
    ("use", "fingerprint"))
SAML_VALID_UNTIL = MetricFamily(
    "readiness_http_saml_metadata_valid_until_timestamp_seconds",
    "validUntil of the SAML metadata document, when it sets one.")

EXPOSITION_VALID = MetricFamily(
    "readiness_http_exposition_valid",
    "1 when the body parsed as Prometheus text exposition (or OpenMetrics).")
EXPOSITION_FAMILIES = MetricFamily(
    "readiness_http_exposition_families",
    "Number of metric families in the parsed body.")
EXPOSITION_PREFIX_FAMILIES = MetricFamily(
    "readiness_http_exposition_prefix_families",
    "Number of metric families whose name starts with the required prefix.",
    ("prefix",))

ALL: tuple[MetricFamily, ...] = (
    STATUS_CODE, DURATION, DURATION_TARGET, RESPONSE_BYTES, JSON_ASSERTION, BODY_REGEX,
    HSTS_PRESENT, HSTS_MAX_AGE, HSTS_MAX_AGE_TARGET, HSTS_INCLUDE_SUBDOMAINS, HSTS_PRELOAD,
    CORS_FINDING, CORS_PREFLIGHT_STATUS,
    RATE_LIMIT_HEADERS, RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING, BURST_REQUESTS,
    BURST_THROTTLED, BURST_REMAINING_DECREASED, INPUT_VALIDATION_STATUS, WAF_STATUS,
    WAF_BLOCKED,
    CORRELATION_PRESENT, CORRELATION_ECHOED, OIDC_VALID, OIDC_APP_MATCHES, OIDC_JWKS_KEYS,
    SAML_NOT_AFTER, SAML_NOT_BEFORE, SAML_VALID_UNTIL,
    EXPOSITION_VALID, EXPOSITION_FAMILIES, EXPOSITION_PREFIX_FAMILIES,
)
