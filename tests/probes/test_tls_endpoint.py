"""tls_endpoint against real local TLS servers (pyOpenSSL) and a real PostgreSQL."""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from pydantic import ValidationError

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.tls.contexts import can_offer
from exporter.probes.tls.endpoint import TlsEndpointCheck, run
from tests.probes import tls_support as ts

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def good(ca: trustme.CA) -> Iterator[ts.Peer]:
    with ts.peer(ts.tls_handler(ts.cert_context(ca.issue_cert("localhost")))) as server:
        yield server


def spec(port: int, ca_file: Path | None, **extra: Any) -> TlsEndpointCheck:
    values: dict[str, Any] = {"id": "t", "section": "2.2", "title": "tls", "kind": "tls_endpoint",
                              "host": "127.0.0.1", "server_name": "localhost", "port": port,
                              "handshake_timeout": 2}
    if ca_file is not None:
        values["ca_file"] = str(ca_file)
    values.update(extra)
    return TlsEndpointCheck.model_validate(values)


def series(outcome: Outcome, family: str) -> list[dict[str, str]]:
    return [dict(m.labels) for m in outcome.measurements if m.family == family]


def value(outcome: Outcome, family: str) -> float:
    found = [m.value for m in outcome.measurements if m.family == family]
    assert len(found) == 1, family
    return found[0]


def versions(outcome: Outcome) -> dict[str, str]:
    return {s["version"]: s["result"]
            for s in series(outcome, "readiness_tls_endpoint_version_info")}


def verification(outcome: Outcome) -> str:
    results = series(outcome, "readiness_tls_endpoint_verification_info")
    assert len(results) == 1
    return results[0]["result"]


def local_can_offer(version: int) -> bool:
    """Independent of the probe: can this OpenSSL write a legacy ClientHello at all?"""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(version)
    context.set_max_proto_version(version)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    conn = SSL.Connection(context, None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return True
    except SSL.Error:
        return False
    return True


async def test_good_server_passes_with_facts(good: ts.Peer, ca_file: Path,
                                             ctx: RuntimeContext) -> None:
    outcome = await run(spec(good.port, ca_file), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert verification(outcome) == "ok"
    assert "chain ok" in outcome.message
    assert versions(outcome) == {"1.0": "refused", "1.1": "refused", "1.2": "accepted",
                                 "1.3": "accepted"}
    negotiated = series(outcome, "readiness_tls_endpoint_negotiated_info")[0]
    assert negotiated["version"] == "TLSv1.3"
    assert negotiated["cipher"].startswith("TLS_")
    leaf = [s for s in series(outcome, "readiness_tls_endpoint_cert_info") if s["depth"] == "0"]
    assert leaf[0]["subject_cn"] == "localhost" and leaf[0]["key_type"] == "ec"
    not_after = [m for m in outcome.measurements
                 if m.family == "readiness_tls_endpoint_cert_not_after_timestamp_seconds"]
    assert {m.labels["depth"] for m in not_after} == {"0", "1"}  # leaf and CA
    assert value(outcome, "readiness_tls_endpoint_expiry_warning_seconds") == 30 * 86400


@pytest.mark.parametrize(("make", "expected"), [
    ("expired", "expired"),
    ("not_yet_valid", "not_yet_valid"),
    ("wrong_host", "hostname_mismatch"),
    ("self_signed", "self_signed"),
    ("other_ca", "untrusted"),
])
async def test_verification_failures_fail_and_keep_facts(
        make: str, expected: str, ca: trustme.CA, ca_file: Path, ctx: RuntimeContext) -> None:
    if make == "expired":
        context = ts.cert_context(ts.dated_cert(ca, "localhost", NOW - datetime.timedelta(days=60),
                                                NOW - datetime.timedelta(days=1)))
    elif make == "not_yet_valid":
        context = ts.cert_context(ts.dated_cert(ca, "localhost", NOW + datetime.timedelta(days=2),
                                                NOW + datetime.timedelta(days=400)))
    elif make == "wrong_host":
        context = ts.cert_context(ca.issue_cert("elsewhere.example"))
    elif make == "self_signed":
        context = ts.server_context(*ts.self_signed_cert("localhost"))
    else:
        context = ts.cert_context(trustme.CA().issue_cert("localhost"))
    with ts.peer(ts.tls_handler(context)) as server:
        outcome = await run(spec(server.port, ca_file), ctx)
        lenient = await run(spec(server.port, ca_file, require_valid_chain=False, warn_days=0),
                            ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert verification(outcome) == expected
    assert f"verification {expected}" in outcome.message
    # facts are exported although verification failed
    assert series(outcome, "readiness_tls_endpoint_cert_info")
    assert series(outcome, "readiness_tls_endpoint_cert_not_after_timestamp_seconds")
    if make in ("wrong_host", "self_signed", "other_ca"):
        assert lenient.status is Status.PASS, lenient.message
        # a pass never claims what was not required (issue 11)
        assert "chain ok" not in lenient.message
        assert f"verification {expected} (require_valid_chain: false)" in lenient.message
    else:  # the dates still fail the expiry rule
        assert lenient.status is Status.FAIL


async def test_expiring_within_warn_days_fails(ca: trustme.CA, ca_file: Path,
                                               ctx: RuntimeContext) -> None:
    leaf = ts.dated_cert(ca, "localhost", NOW - datetime.timedelta(days=1),
                         NOW + datetime.timedelta(days=10))
    with ts.peer(ts.tls_handler(ts.cert_context(leaf))) as server:
        soon = await run(spec(server.port, ca_file), ctx)
        relaxed = await run(spec(server.port, ca_file, warn_days=5), ctx)
    assert soon.status is Status.FAIL and "expires in" in soon.message
    assert verification(soon) == "ok"
    assert relaxed.status is Status.PASS, relaxed.message


async def test_tls12_only_server_fails_tls13_rule(ca: trustme.CA, ca_file: Path,
                                                  ctx: RuntimeContext) -> None:
    context = ts.cert_context(ca.issue_cert("localhost"), max_version=SSL.TLS1_2_VERSION)
    with ts.peer(ts.tls_handler(context)) as server:
        outcome = await run(spec(server.port, ca_file), ctx)
        no_rule = await run(spec(server.port, ca_file, require_tls13=False), ctx)
    assert outcome.status is Status.FAIL
    assert "TLS 1.3 not accepted" in outcome.message
    assert versions(outcome)["1.3"] == "refused"
    assert versions(outcome)["1.2"] == "accepted"
    assert series(outcome, "readiness_tls_endpoint_negotiated_info")[0]["version"] == "TLSv1.2"
    assert no_rule.status is Status.PASS, no_rule.message


async def test_legacy_enabled_server(ca: trustme.CA, ca_file: Path, ctx: RuntimeContext) -> None:
    context = ts.cert_context(ca.issue_cert("localhost"), min_version=SSL.TLS1_VERSION,
                              legacy=True)
    with ts.peer(ts.tls_handler(context)) as server:
        outcome = await run(spec(server.port, ca_file), ctx)
    found = versions(outcome)
    for version, constant in (("1.0", SSL.TLS1_VERSION), ("1.1", SSL.TLS1_1_VERSION)):
        if local_can_offer(constant):
            assert found[version] == "accepted"
        else:
            assert found[version] == "untestable"
    if "accepted" in (found["1.0"], found["1.1"]):
        assert outcome.status is Status.FAIL
        assert "accepted" in outcome.message


async def test_version_the_library_cannot_offer_is_untestable_not_refused(
        good: ts.Peer, ca_file: Path, ctx: RuntimeContext) -> None:
    # AES-GCM suites exist only from TLS 1.2 on: with them alone no TLS 1.0/1.1 hello
    outcome = await run(spec(good.port, ca_file, legacy_ciphers="ECDHE+AESGCM:@SECLEVEL=0"), ctx)
    found = versions(outcome)
    assert found["1.0"] == "untestable" and found["1.1"] == "untestable"
    assert found["1.2"] == "accepted"
    assert outcome.status is Status.PASS  # untestable is not a failure
    assert "untestable" in outcome.message


def test_can_offer_matches_an_independent_check() -> None:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_max_proto_version(SSL.TLS1_VERSION)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    assert can_offer(context) == local_can_offer(SSL.TLS1_VERSION)


@pytest.mark.parametrize(("server_groups", "extra", "status", "negotiated"), [
    # the checklist's level: ML-KEM-1024, pure or hybrid
    ("MLKEM1024", {}, Status.PASS, "MLKEM1024"),
    ("SecP384r1MLKEM1024", {}, Status.PASS, "SecP384r1MLKEM1024"),
    # the near miss the old rule ("any ML-KEM") passed: the 768 level
    ("X25519MLKEM768", {}, Status.FAIL, "X25519MLKEM768"),
    ("X25519MLKEM768", {"post_quantum_groups": ["MLKEM1024", "X25519MLKEM768"]},
     Status.PASS, "X25519MLKEM768"),
    ("X25519", {}, Status.FAIL, "x25519"),
])
async def test_post_quantum_group_allow_list(ca: trustme.CA, ca_file: Path, ctx: RuntimeContext,
                                             server_groups: str, extra: dict[str, Any],
                                             status: Status, negotiated: str) -> None:
    cert = ca.issue_cert("localhost")
    with ts.peer(ts.tls_handler(ts.cert_context(cert, groups=server_groups))) as server:
        outcome = await run(spec(server.port, ca_file, require_post_quantum=True, **extra), ctx)
    assert outcome.status is status, outcome.message
    assert series(outcome, "readiness_tls_endpoint_negotiated_info")[0]["group"] == negotiated
    pq = 0 if negotiated == "x25519" else 1
    assert value(outcome, "readiness_tls_endpoint_key_exchange_post_quantum") == pq
    if status is Status.FAIL:
        assert "not in post_quantum_groups (MLKEM1024, SecP384r1MLKEM1024)" in outcome.message


@pytest.mark.parametrize(("level", "extra", "status"), [
    (87, {}, Status.PASS),  # Dilithium-5
    (65, {}, Status.FAIL),  # ML-DSA, but not the checklist's level: the old rule passed it
    (65, {"ml_dsa_algorithms": ["ML-DSA-65", "ML-DSA-87"]}, Status.PASS),
])
async def test_ml_dsa_level_required(tmp_path: Path, ctx: RuntimeContext, level: int,
                                     extra: dict[str, Any], status: Status) -> None:
    cert_pem, key_pem = ts.ml_dsa_cert(tmp_path, "pq.example", level=level)
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(cert_pem)
    context = ts.server_context(cert_pem, key_pem, groups="MLKEM1024")
    with ts.peer(ts.tls_handler(context)) as server:
        outcome = await run(spec(server.port, anchor, server_name="pq.example",
                                 require_ml_dsa=True, require_post_quantum=True, **extra), ctx)
    assert outcome.status is status, outcome.message
    info = series(outcome, "readiness_tls_endpoint_cert_info")[0]
    assert info["signature_algorithm"] == f"ML-DSA-{level}"
    assert info["post_quantum_signature"] == "1"
    if status is Status.FAIL:
        assert f"signed with ML-DSA-{level}, not ML-DSA-87" in outcome.message


async def test_ml_dsa_required_classic_certificate_fails(tmp_path: Path,
                                                         ctx: RuntimeContext) -> None:
    with ts.peer(ts.tls_handler(ts.server_context(*ts.self_signed_cert("pq.example")))) as other:
        classic = await run(spec(other.port, None, server_name="pq.example",
                                 require_ml_dsa=True, require_valid_chain=False), ctx)
    assert classic.status is Status.FAIL and "not ML-DSA-87" in classic.message


@pytest.mark.parametrize(("handler", "reason", "result", "words"), [
    (ts.silent_handler, Reason.TIMEOUT, "timeout", "within"),
    (ts.reset_handler, Reason.TLS, "handshake_failed", "reset"),
    (ts.http_handler, Reason.TLS, "handshake_failed", "not speaking TLS"),
])
async def test_bad_peers_are_bounded_errors(handler: Any, reason: Reason, result: str, words: str,
                                            ca_file: Path, ctx: RuntimeContext) -> None:
    with ts.peer(handler) as server:
        outcome = await run(spec(server.port, ca_file, handshake_timeout=0.5), ctx)
    assert outcome.status is Status.ERROR, outcome.message
    assert outcome.reason is reason
    assert verification(outcome) == result
    assert words in outcome.message


async def test_closed_port_is_connect_error(ca_file: Path, ctx: RuntimeContext) -> None:
    with ts.peer(ts.silent_handler) as server:
        port = server.port
    outcome = await run(spec(port, ca_file), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONNECT
    assert verification(outcome) == "refused"


async def test_client_certificate_with_secret_password(
        ca: trustme.CA, ca_file: Path, tmp_path: Path, ctx: RuntimeContext,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "client-key-pass-7f3a9"
    monkeypatch.setenv("TLS_TEST_CLIENT_KEY_PASSWORD", secret)
    client = ca.issue_cert("client.example")
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    (tmp_path / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret.encode())))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))

    context = ts.cert_context(ca.issue_cert("localhost"), max_version=SSL.TLS1_2_VERSION)
    context.load_verify_locations(str(ca_file))
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    with ts.peer(ts.tls_handler(context)) as server:
        with_cert = await run(spec(server.port, ca_file, require_tls13=False,
                                   client_cert=str(tmp_path / "client.crt"),
                                   client_key=str(tmp_path / "client.key"),
                                   client_key_password="${TLS_TEST_CLIENT_KEY_PASSWORD}"), ctx)
        without = await run(spec(server.port, ca_file, require_tls13=False), ctx)
        monkeypatch.setenv("TLS_TEST_CLIENT_KEY_PASSWORD", "wrong-password")
        wrong = await run(spec(server.port, ca_file, require_tls13=False,
                               client_cert=str(tmp_path / "client.crt"),
                               client_key=str(tmp_path / "client.key"),
                               client_key_password="${TLS_TEST_CLIENT_KEY_PASSWORD}"), ctx)
    assert with_cert.status is Status.PASS, with_cert.message
    assert without.status is Status.ERROR and without.reason is Reason.TLS
    assert wrong.status is Status.ERROR and wrong.reason is Reason.CONFIG
    assert "client_key" in wrong.message
    for outcome in (with_cert, without, wrong):
        assert secret not in outcome.message
        for measurement in outcome.measurements:
            assert secret not in str(dict(measurement.labels))
    assert secret not in caplog.text


async def test_postgres_answering_n_fails(ca_file: Path, ctx: RuntimeContext) -> None:
    def no_ssl(sock: Any) -> None:
        sock.recv(8)
        sock.sendall(b"N")
        sock.recv(1024)

    with ts.peer(no_ssl) as server:
        outcome = await run(spec(server.port, ca_file, starttls="postgres"), ctx)
    assert outcome.status is Status.FAIL
    assert "does not offer SSL" in outcome.message


@pytest.fixture(scope="module")
def pg_tls(ca: trustme.CA) -> Iterator[int]:
    from tests.support.servers import pg_cluster

    if shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip("runuser is needed to start PostgreSQL as root")
    certs = Path(tempfile.mkdtemp(prefix="readiness-pgcerts-"))  # pytest's tmp is 0700 root
    os.chmod(certs, 0o755)
    leaf = ca.issue_cert("localhost")
    leaf.cert_chain_pems[0].write_to_path(str(certs / "server.crt"))
    leaf.private_key_pem.write_to_path(str(certs / "server.key"))
    os.chmod(certs / "server.key", 0o600)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres", str(certs)], check=True)
    settings = {"ssl": "on", "ssl_cert_file": f"'{certs / 'server.crt'}'",
                "ssl_key_file": f"'{certs / 'server.key'}'"}
    try:
        with pg_cluster(settings) as cluster:
            yield cluster.port
    finally:
        shutil.rmtree(certs, ignore_errors=True)


async def test_postgres_starttls_checks_the_database_certificate(
        pg_tls: int, ca_file: Path, ctx: RuntimeContext) -> None:
    outcome = await run(spec(pg_tls, ca_file, starttls="postgres"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert verification(outcome) == "ok"
    assert versions(outcome)["1.3"] == "accepted"
    leaf = [s for s in series(outcome, "readiness_tls_endpoint_cert_info") if s["depth"] == "0"]
    assert leaf[0]["subject_cn"] == "localhost"
    # without STARTTLS the PostgreSQL port is not a TLS server
    plain = await run(spec(pg_tls, ca_file, handshake_timeout=1), ctx)
    assert plain.status is Status.ERROR


def test_config_errors_name_the_field() -> None:
    assert registry.probe_kind("tls_endpoint").spec is TlsEndpointCheck
    with pytest.raises(ValidationError) as info:
        TlsEndpointCheck.model_validate({"id": "x", "section": "2.2", "title": "t",
                                         "kind": "tls_endpoint", "host": "h", "port": 0,
                                         "versions": ["1.4"], "bogus": 1})
    text = str(info.value)
    assert "port" in text and "versions" in text and "bogus" in text
    with pytest.raises(ValidationError):
        TlsEndpointCheck.model_validate({"id": "x", "section": "2.2", "title": "t",
                                         "kind": "tls_endpoint", "host": "h",
                                         "client_key_password": "inline-secret"})


async def test_host_from_environment(good: ts.Peer, ca_file: Path, ctx: RuntimeContext,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLS_TEST_HOST", raising=False)
    unset = await run(spec(good.port, ca_file, host="${TLS_TEST_HOST}"), ctx)
    assert unset.status is Status.ERROR and unset.reason is Reason.CONFIG
    assert "TLS_TEST_HOST" in unset.message
    monkeypatch.setenv("TLS_TEST_HOST", "127.0.0.1")
    found = await run(spec(good.port, ca_file, host="${TLS_TEST_HOST}"), ctx)
    assert found.status is Status.PASS, found.message


async def test_check_expiry_off_still_exports_dates(ca: trustme.CA, ca_file: Path,
                                                    ctx: RuntimeContext) -> None:
    leaf = ts.dated_cert(ca, "localhost", NOW - datetime.timedelta(days=60),
                         NOW - datetime.timedelta(days=1))
    with ts.peer(ts.tls_handler(ts.cert_context(leaf))) as server:
        outcome = await run(spec(server.port, ca_file, require_valid_chain=False,
                                 check_expiry=False), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert verification(outcome) == "expired"
    # an expired chain passes only because nothing was required: the message says so
    assert "chain ok" not in outcome.message
    assert "verification expired" in outcome.message
    assert "dates not judged" in outcome.message
    dates = [m.value for m in outcome.measurements
             if m.family == "readiness_tls_endpoint_cert_not_after_timestamp_seconds"
             and m.labels["depth"] == "0"]
    assert dates and dates[0] < NOW.timestamp()


async def test_preset_fragment_loads_and_runs_without_host(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import config

    monkeypatch.delenv("QBITEL_TLS_HOST", raising=False)
    path = Path(__file__).resolve().parents[2] / "exporter/presets/qbitel-production/20-tls.yaml"
    loaded = config.build(config._parse_yaml(path.read_text(encoding="utf-8"), str(path)),
                          str(path), environ={})
    by_id = {check.id: check for check in loaded.checks}
    assert {c.item_id for c in loaded.checks} == {"1.2.4", "2.2.1", "2.3.4"}
    assert not by_id["1.2.4-database"].enabled and by_id["1.2.4-database"].disabled_reason
    for check_id in ("1.2.4-endpoint", "2.2.1", "2.3.4"):
        check = by_id[check_id]
        assert isinstance(check, TlsEndpointCheck) and check.enabled
        assert check.host == "qbitel.example.internal"  # inputs.tls_host's placeholder
        outcome = await run(check, ctx)
        assert outcome.status is Status.ERROR and outcome.reason is Reason.DNS
        assert "qbitel.example.internal" in outcome.message
    pq = by_id["2.3.4"]
    assert isinstance(pq, TlsEndpointCheck)
    assert pq.require_post_quantum and pq.require_ml_dsa  # as the checklist asks
    assert pq.post_quantum_groups == ["MLKEM1024", "SecP384r1MLKEM1024"]
    assert pq.ml_dsa_algorithms == ["ML-DSA-87"]


async def test_groups_option(good: ts.Peer, ca_file: Path, ctx: RuntimeContext) -> None:
    classic = await run(spec(good.port, ca_file, groups=["X25519"]), ctx)
    assert series(classic, "readiness_tls_endpoint_negotiated_info")[0]["group"] == "x25519"
    assert value(classic, "readiness_tls_endpoint_key_exchange_post_quantum") == 0
    unknown = await run(spec(good.port, ca_file, groups=["NoSuchGroup"]), ctx)
    assert unknown.status is Status.ERROR and unknown.reason is Reason.CONFIG
    assert "groups" in unknown.message


async def test_server_speaking_only_tls10(ca: trustme.CA, ca_file: Path,
                                          ctx: RuntimeContext) -> None:
    context = ts.cert_context(ca.issue_cert("localhost"), min_version=SSL.TLS1_VERSION,
                              max_version=SSL.TLS1_VERSION, legacy=True)
    with ts.peer(ts.tls_handler(context)) as server:
        outcome = await run(spec(server.port, ca_file), ctx)
    found = versions(outcome)
    assert found["1.3"] == "refused" and found["1.2"] == "refused"
    if local_can_offer(SSL.TLS1_VERSION):
        # the modern verifying handshake fails, the pinned TLS 1.0 one succeeds: not ready
        assert found["1.0"] == "accepted"
        assert outcome.status is Status.FAIL and "accepts only TLS 1.0" in outcome.message
    else:
        assert found["1.0"] == "untestable"
        assert outcome.status is Status.ERROR and outcome.reason is Reason.TLS
    assert verification(outcome) == "handshake_failed"


# --------------------------------------------------------------------------- hardening
# (issue 17: a certificate cryptography cannot parse gives a bounded verdict)

@pytest.mark.parametrize(("tweak", "problem", "verify", "words"), [
    ({"version": 6}, "invalid_version", "unparsable", "invalid X.509 version"),
    ({"duplicate_extension": True}, "duplicate_extension", "untrusted",
     "an extension appears twice"),
], ids=["invalid-version", "duplicate-extension"])
async def test_server_presenting_an_unparsable_certificate_fails(
        tweak: dict[str, Any], problem: str, verify: str, words: str, tmp_path: Path,
        ctx: RuntimeContext) -> None:
    der, key_pem = ts.tweaked_cert("localhost", **tweak)
    cert_pem = ts.der_to_pem(der)
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(cert_pem)  # trusted: OpenSSL itself accepts the version-7 one
    with ts.peer(ts.tls_handler(ts.server_context(cert_pem, key_pem))) as server:
        outcome = await run(spec(server.port, anchor), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert outcome.reason is None
    assert f"certificate at depth 0 cannot be parsed ({words})" in outcome.message
    assert series(outcome, "readiness_tls_endpoint_cert_unparsable") == [
        {"depth": "0", "problem": problem}]
    assert verification(outcome) == verify
    assert versions(outcome)["1.3"] == "accepted"  # the rest of the posture is still told
    assert series(outcome, "readiness_tls_endpoint_cert_info") == []


async def test_unparsable_chain_certificate_keeps_the_rest_of_the_chain(
        ca: trustme.CA, ctx: RuntimeContext) -> None:
    leaf = ca.issue_cert("localhost")
    broken, _ = ts.tweaked_cert("junk.example", duplicate_extension=True)
    chain = leaf.cert_chain_pems[0].bytes() + ts.der_to_pem(broken)
    context = ts.server_context(chain, leaf.private_key_pem.bytes())
    with ts.peer(ts.tls_handler(context)) as server:
        # no trust anchor: the chain is reported as sent
        judged = await run(spec(server.port, None, require_valid_chain=False), ctx)
        versions_only = await run(spec(server.port, None, require_valid_chain=False,
                                       check_expiry=False), ctx)
    assert judged.status is Status.FAIL, judged.message
    assert "certificate at depth 1 cannot be parsed" in judged.message
    assert [s["subject_cn"] for s in series(judged, "readiness_tls_endpoint_cert_info")] == [
        "localhost"]
    assert series(judged, "readiness_tls_endpoint_cert_unparsable") == [
        {"depth": "1", "problem": "duplicate_extension"}]
    # with neither certificate rule on, the certificate is reported, not judged
    assert versions_only.status is Status.PASS, versions_only.message
    assert series(versions_only, "readiness_tls_endpoint_cert_unparsable") == [
        {"depth": "1", "problem": "duplicate_extension"}]
