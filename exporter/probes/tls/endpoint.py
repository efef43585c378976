"""`tls_endpoint`: a live TLS server's posture (1.2.4, 2.2.1, 2.3.4).

One verifying handshake gives the negotiated version, cipher and key-exchange group,
the certificate chain and a bounded verification result; version-pinned handshakes
then tell which of TLS 1.0 to 1.3 the server accepts (`untestable` when the local
library cannot offer a version). Certificate facts are exported whether or not the
chain verifies. A certificate that `cryptography` cannot parse fails the check (when
certificates are judged) and is counted by depth and bounded problem; the rest of the
chain is still exported. PostgreSQL is reached through its SSLRequest STARTTLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
    SecretReference,
)
from exporter.probes.tls.certinfo import (
    CERT_PROBLEM_TEXT,
    CertFacts,
    UnparsableCertificate,
    is_post_quantum_group,
    parsed_der,
)
from exporter.probes.tls.contexts import (
    VERSION_NAMES,
    ContextError,
    Contexts,
    ContextSettings,
    build_contexts,
    cache_key,
    cached_contexts,
    store_contexts,
    verification_result,
)
from exporter.probes.tls.handshake import Failure, HandshakeError, HandshakeResult, handshake
from exporter.probes.tls.loader import expand_env
from exporter.probes.tls.post_quantum import (
    DEFAULT_ML_DSA_ALGORITHMS,
    DEFAULT_PQ_GROUPS,
    group_allowed,
    groups_to_offer,
    signature_allowed,
)

Version = Literal["1.0", "1.1", "1.2", "1.3"]
ORDER: tuple[Version, ...] = ("1.0", "1.1", "1.2", "1.3")


class TlsEndpointCheck(CheckSpec):
    """`kind: tls_endpoint` options."""

    kind: Literal["tls_endpoint"]
    host: str = Field(min_length=1, description="host name or IP address to connect to; "
                      "`${VAR}` / `${VAR:-default}` are expanded at run time")
    port: int = Field(default=443, ge=1, le=65535)
    server_name: str | None = Field(
        default=None, description="SNI and name to verify (default: host, no SNI for an IP)")
    starttls: Literal["none", "postgres"] = Field(
        default="none", description="`postgres`: send SSLRequest first (PostgreSQL's STARTTLS)")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle (default: system)")
    client_cert: Path | None = Field(default=None, description="PEM client certificate (chain)")
    client_key: Path | None = Field(default=None, description="PEM client key "
                                    "(default: in client_cert)")
    client_key_password: SecretReference | None = None
    versions: list[Version] = Field(
        default=list(ORDER), description="protocol versions to report; the pass rules add "
        "those they need")
    handshake_timeout: float = Field(default=5.0, gt=0, description="per handshake, seconds")
    warn_days: float = Field(default=30.0, ge=0, description="fail when a chain certificate "
                             "expires within this many days")
    check_expiry: bool = Field(default=True, description="judge the chain's dates against "
                               "warn_days (they are exported either way)")
    require_tls13: bool = Field(default=True, description="fail unless TLS 1.3 is accepted")
    refuse_legacy: bool = Field(default=True, description="fail when TLS 1.0 or 1.1 is accepted")
    require_valid_chain: bool = Field(default=True, description="fail unless verification "
                                      "is ok (trusted chain, dates, host name)")
    require_post_quantum: bool = Field(default=False, description="fail unless the "
                                       "negotiated key exchange is in post_quantum_groups "
                                       "(2.3.4)")
    post_quantum_groups: list[str] = Field(
        default=list(DEFAULT_PQ_GROUPS), min_length=1,
        description="allowed key-exchange groups (ML-KEM-1024 and its hybrids by default; "
                    "add X25519MLKEM768 to accept the 768 level)")
    require_ml_dsa: bool = Field(default=False, description="fail unless the leaf "
                                 "certificate is signed with one of ml_dsa_algorithms")
    ml_dsa_algorithms: list[str] = Field(
        default=list(DEFAULT_ML_DSA_ALGORITHMS), min_length=1,
        description="accepted leaf signature algorithms (ML-DSA-87 = Dilithium-5)")
    groups: list[str] = Field(default=[], description="key-exchange groups the client "
                              "offers, e.g. [X25519MLKEM768, X25519] (default: the "
                              "library's, or post_quantum_groups first when "
                              "require_post_quantum)")
    legacy_ciphers: str = Field(default="DEFAULT:@SECLEVEL=0", description="OpenSSL cipher "
                                "string for the TLS 1.0-1.2 version probes")


LEAF_LABELS = ("depth", "serial", "subject_cn")
VERSION_INFO = MetricFamily(
    "readiness_tls_endpoint_version_info",
    "Per protocol version: accepted, refused, untestable (the local library cannot offer "
    "it) or error (value 1).",
    ("version", "result"),
)
NEGOTIATED = MetricFamily(
    "readiness_tls_endpoint_negotiated_info",
    "What the verifying handshake negotiated: version, cipher, key-exchange group (value 1).",
    ("version", "cipher", "group"),
)
PQ = MetricFamily(
    "readiness_tls_endpoint_key_exchange_post_quantum",
    "1 when the negotiated key exchange includes ML-KEM (e.g. X25519MLKEM768), else 0.",
)
VERIFY = MetricFamily(
    "readiness_tls_endpoint_verification_info",
    "Chain verification result (value 1): ok, expired, not_yet_valid, hostname_mismatch, "
    "untrusted, self_signed, unparsable, handshake_failed, timeout, refused.",
    ("result",),
)
NOT_AFTER = MetricFamily(
    "readiness_tls_endpoint_cert_not_after_timestamp_seconds",
    "notAfter of each certificate the server sent (depth 0 = leaf), Unix time.",
    LEAF_LABELS,
)
NOT_BEFORE = MetricFamily(
    "readiness_tls_endpoint_cert_not_before_timestamp_seconds",
    "notBefore of each certificate the server sent (depth 0 = leaf), Unix time.",
    LEAF_LABELS,
)
INFO = MetricFamily(
    "readiness_tls_endpoint_cert_info",
    "Facts of each certificate the server sent (value 1).",
    (*LEAF_LABELS, "issuer_cn", "key_type", "key_size", "signature_algorithm",
     "post_quantum_signature"),
)
UNPARSABLE = MetricFamily(
    "readiness_tls_endpoint_cert_unparsable",
    "1 for each certificate the server sent that cannot be parsed, by depth and bounded "
    "problem (invalid_version, duplicate_extension, unsupported_name_type, "
    "unsupported_algorithm, malformed).",
    ("depth", "problem"),
)
HANDSHAKE = MetricFamily(
    "readiness_tls_endpoint_handshake_duration_seconds",
    "Time to connect and complete the verifying handshake.",
)
WARN = MetricFamily(
    "readiness_tls_endpoint_expiry_warning_seconds",
    "The objective: a chain certificate fails when it expires within this many seconds.",
)


def _server_name(spec: TlsEndpointCheck, host: str) -> tuple[str | None, str]:
    """(SNI to send, name to verify)."""
    name = spec.server_name or host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name, name
    return None, name


def _needed_versions(spec: TlsEndpointCheck) -> tuple[Version, ...]:
    wanted = set(spec.versions)
    if spec.require_tls13:
        wanted.add("1.3")
    if spec.refuse_legacy:
        wanted |= {"1.0", "1.1"}
    return tuple(v for v in ORDER if v in wanted)


def _offered_groups(spec: TlsEndpointCheck) -> tuple[str, ...]:
    if spec.groups:
        return tuple(spec.groups)
    if spec.require_post_quantum:
        return groups_to_offer(spec.post_quantum_groups)
    return ()


async def _contexts(spec: TlsEndpointCheck, ctx: ProbeContext,
                    versions: tuple[Version, ...]) -> Contexts:
    settings = ContextSettings(
        ca_file=None if spec.ca_file is None else str(spec.ca_file),
        client_cert=None if spec.client_cert is None else str(spec.client_cert),
        client_key=None if spec.client_key is None else str(spec.client_key),
        groups=_offered_groups(spec),
        legacy_ciphers=spec.legacy_ciphers,
        versions=versions,
    )
    password: bytes | None = None
    if spec.client_key_password is not None:
        try:
            password = spec.client_key_password.resolve().get_secret_value().encode()
        except LookupError as exc:
            raise ContextError(f"client_key_password: {exc}") from None
    key = cache_key(settings, password)
    found = cached_contexts(key)
    if found is not None:
        return found
    built = await ctx.run_blocking(build_contexts, settings, password)
    store_contexts(key, built)
    return built


async def _probe_version(contexts: Contexts, version: Version, spec: TlsEndpointCheck,
                         host: str, sni: str | None) -> str:
    if not contexts.offerable.get(version, False):
        return "untestable"
    try:
        await handshake(contexts.by_version[version], host, spec.port, sni,
                        spec.handshake_timeout, starttls=spec.starttls, collect=False)
    except HandshakeError as exc:
        if exc.failure is Failure.LOCAL:
            return "untestable"
        if exc.failure in (Failure.ALERT, Failure.CLOSED, Failure.RESET, Failure.NOT_TLS):
            return "refused"
        return "error"
    return "accepted"


def _cert_measurements(chain: list[bytes], now: float, warn_seconds: float
                       ) -> tuple[list[Measurement], list[str], list[str]]:
    """(series, date problems, unparsable certificates) of the chain."""
    out: list[Measurement] = []
    problems: list[str] = []
    unparsable: list[str] = []
    for depth, der in enumerate(chain):
        try:
            _, facts = parsed_der(der)
        except UnparsableCertificate as exc:
            unparsable.append(f"certificate at depth {depth} cannot be parsed "
                              f"({CERT_PROBLEM_TEXT[exc.problem]})")
            out.append(Measurement(UNPARSABLE.name, 1.0, {"depth": str(depth),
                                                          "problem": exc.problem.value}))
            continue
        labels = {"depth": str(depth), "serial": facts.serial, "subject_cn": facts.subject_cn}
        out.append(Measurement(NOT_AFTER.name, facts.not_after, labels))
        out.append(Measurement(NOT_BEFORE.name, facts.not_before, labels))
        out.append(Measurement(INFO.name, 1.0, {
            **labels, "issuer_cn": facts.issuer_cn, "key_type": facts.key_type,
            "key_size": facts.key_size, "signature_algorithm": facts.signature_algorithm,
            "post_quantum_signature": "1" if facts.post_quantum_signature else "0",
        }))
        who = facts.subject_cn or facts.serial
        if facts.not_after <= now:
            problems.append(f"{who} expired")
        elif facts.not_before > now:
            problems.append(f"{who} not yet valid")
        elif facts.not_after <= now + warn_seconds:
            problems.append(f"{who} expires in {(facts.not_after - now) / 86400:.1f} d")
    return out, problems, unparsable


def _leaf(chain: list[bytes]) -> CertFacts | None:
    """The leaf's facts; None when there is no leaf or it cannot be parsed."""
    if not chain:
        return None
    try:
        return parsed_der(chain[0])[1]
    except UnparsableCertificate:
        return None


_MAIN_FAILURE_RESULT = {
    Failure.CONNECT: "refused",
    Failure.TIMEOUT: "timeout",
}
_MAIN_FAILURE_REASON = {
    Failure.DNS: Reason.DNS,
    Failure.CONNECT: Reason.CONNECT,
    Failure.TIMEOUT: Reason.TIMEOUT,
    Failure.LOCAL: Reason.CONFIG,
    Failure.PROTOCOL: Reason.PROTOCOL,
}


async def run(spec: TlsEndpointCheck, ctx: ProbeContext) -> Outcome:
    """Handshake with the endpoint and judge its TLS posture."""
    warn_seconds = spec.warn_days * 86400.0
    measurements: list[Measurement] = [Measurement(WARN.name, warn_seconds)]
    try:
        host = expand_env(spec.host, os.environ)
    except KeyError as exc:
        return Outcome.errored(Reason.CONFIG, f"environment variable {exc.args[0]} used in host "
                               "is not set", tuple(measurements))
    if not host:
        return Outcome.errored(Reason.CONFIG, "host is empty after expansion",
                               tuple(measurements))
    sni, verify_name = _server_name(spec, host)
    needed = _needed_versions(spec)
    try:
        contexts = await _contexts(spec, ctx, needed)
    except ContextError as exc:
        return Outcome.errored(Reason.CONFIG, str(exc), tuple(measurements))

    main: HandshakeResult | None = None
    main_error: HandshakeError | None = None
    try:
        main = await handshake(contexts.main, host, spec.port, sni,
                               spec.handshake_timeout, starttls=spec.starttls)
    except HandshakeError as exc:
        main_error = exc

    results: dict[Version, str] = {}
    if main is not None:
        negotiated = VERSION_NAMES.get(main.version)
        if negotiated is not None:
            for version in needed:
                if version == negotiated:
                    results[version] = "accepted"
                elif version > negotiated:  # offered by the main handshake, not chosen
                    results[version] = "refused"
    elif main_error is not None and main_error.failure in (Failure.DNS, Failure.CONNECT,
                                                           Failure.TIMEOUT, Failure.LOCAL):
        measurements.append(Measurement(VERIFY.name, 1.0, {
            "result": _MAIN_FAILURE_RESULT.get(main_error.failure, "handshake_failed")}))
        return Outcome.errored(_MAIN_FAILURE_REASON[main_error.failure], main_error.detail,
                               tuple(measurements))
    elif main_error is not None and main_error.failure is Failure.NO_SSL:
        measurements.append(Measurement(VERIFY.name, 1.0, {"result": "handshake_failed"}))
        return Outcome.failed(main_error.detail, tuple(measurements))
    to_probe = [v for v in needed if v not in results]
    probed = await asyncio.gather(*(_probe_version(contexts, v, spec, host, sni)
                                    for v in to_probe))
    results.update(zip(to_probe, probed, strict=True))
    for version in needed:
        measurements.append(Measurement(VERSION_INFO.name, 1.0,
                                        {"version": version, "result": results[version]}))

    if main is None:
        assert main_error is not None
        measurements.append(Measurement(VERIFY.name, 1.0, {"result": "handshake_failed"}))
        accepted = [v for v in needed if results[v] == "accepted"]
        if accepted:
            return Outcome.failed(f"{main_error.detail} (accepts only TLS "
                                  f"{', '.join(accepted)})", tuple(measurements))
        reason = _MAIN_FAILURE_REASON.get(main_error.failure, Reason.TLS)
        return Outcome.errored(reason, f"TLS handshake failed: {main_error.detail}",
                               tuple(measurements))
    return _judge(spec, ctx, main, results, verify_name, measurements, warn_seconds)


def _judge(spec: TlsEndpointCheck, ctx: ProbeContext, main: HandshakeResult,
           results: dict[Version, str], verify_name: str, measurements: list[Measurement],
           warn_seconds: float) -> Outcome:
    leaf = _leaf(main.chain)
    verdict = verification_result(main.verify_errors, main.chain[0] if main.chain else None,
                                  verify_name)
    post_quantum = is_post_quantum_group(main.group)
    measurements.append(Measurement(VERIFY.name, 1.0, {"result": verdict}))
    measurements.append(Measurement(NEGOTIATED.name, 1.0, {
        "version": main.version, "cipher": main.cipher, "group": main.group or "none"}))
    measurements.append(Measurement(PQ.name, 1.0 if post_quantum else 0.0))
    measurements.append(Measurement(HANDSHAKE.name, main.seconds))
    chain = main.verified_chain or main.chain
    cert_series, cert_problems, unparsable = _cert_measurements(chain, ctx.now(),
                                                                warn_seconds)
    measurements.extend(cert_series)

    failures: list[str] = []
    unknown: list[str] = []
    if spec.require_tls13:
        if results.get("1.3") == "refused":
            failures.append("TLS 1.3 not accepted")
        elif results.get("1.3") != "accepted":
            unknown.append(f"TLS 1.3 {results.get('1.3')}")
    if spec.refuse_legacy:
        for version in ("1.0", "1.1"):
            if results.get(version) == "accepted":
                failures.append(f"TLS {version} accepted")
            elif results.get(version) == "error":
                unknown.append(f"TLS {version} probe failed")
    if spec.require_valid_chain and verdict != "ok":
        failures.append(f"verification {verdict}")
    if spec.check_expiry or spec.require_valid_chain:  # an unparsable one is not valid
        failures.extend(unparsable)
    if spec.check_expiry:
        failures.extend(cert_problems)
    if spec.require_post_quantum and not group_allowed(main.group,
                                                          spec.post_quantum_groups):
        kind = "post-quantum but not" if post_quantum else "not post-quantum, not"
        failures.append(f"key exchange {main.group or 'none'} is {kind} in "
                        f"post_quantum_groups ({', '.join(spec.post_quantum_groups)})")
    if spec.require_ml_dsa and (leaf is None or not signature_allowed(
            leaf.signature_algorithm, spec.ml_dsa_algorithms)):
        signed = leaf.signature_algorithm if leaf is not None else "unknown"
        failures.append(f"leaf certificate signed with {signed}, not "
                        f"{' or '.join(spec.ml_dsa_algorithms)}")

    summary = f"{main.version} {main.cipher} {main.group or 'no group'}"
    untestable = [v for v in ORDER if results.get(v) == "untestable"]
    note = f"; TLS {', '.join(untestable)} untestable locally" if untestable else ""
    if failures:
        return Outcome.failed("; ".join(failures) + f" ({summary}){note}", tuple(measurements))
    if unknown:
        return Outcome.errored(Reason.TLS, "; ".join(unknown) + f" ({summary})",
                               tuple(measurements))
    accepted = ", ".join(v for v in ORDER if results.get(v) == "accepted")
    return Outcome.passed(f"{summary}; {_chain_claim(spec, verdict)}; accepts "
                          f"{accepted or 'n/a'}{note}", tuple(measurements))


def _chain_claim(spec: TlsEndpointCheck, verdict: str) -> str:
    """What a pass may say about the chain: only what was verified and judged."""
    if verdict == "ok":
        return "chain ok"
    judged = "dates judged" if spec.check_expiry else "dates not judged (check_expiry: false)"
    return f"chain not judged: verification {verdict} (require_valid_chain: false); {judged}"


KIND = ProbeKind(
    name="tls_endpoint",
    spec=TlsEndpointCheck,
    run=run,
    summary="A TLS server's versions, cipher, key-exchange group (post-quantum), chain "
    "verification and certificate expiry; PostgreSQL via SSLRequest.",
    metrics=(VERSION_INFO, NEGOTIATED, PQ, VERIFY, NOT_AFTER, NOT_BEFORE, INFO, UNPARSABLE,
             HANDSHAKE, WARN),
)
