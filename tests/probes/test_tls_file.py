"""tls_file on real certificate files: PEM, DER, PKCS#12, bad files, symlink swaps."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import cryptography_vectors
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import ValidationError

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.tls.files import TlsFileCheck, run
from tests.probes import tls_support as ts

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def spec(*paths: str | Path, **extra: Any) -> TlsFileCheck:
    return TlsFileCheck.model_validate({"id": "1.2.4-files", "item": "1.2.4", "section": "1.2",
                                        "title": "certs", "kind": "tls_file",
                                        "paths": [str(p) for p in paths], **extra})


def leaf(ca: trustme.CA, host: str, days_left: float, days_since: float = 10) -> trustme.LeafCert:
    return ca.issue_cert(host, common_name=host, organization_unit_name="ops",
                         not_before=NOW - days_since * DAY, not_after=NOW + days_left * DAY)


def certs_of(outcome: Outcome) -> list[dict[str, str]]:
    return [dict(m.labels) for m in outcome.measurements
            if m.family == "readiness_tls_file_cert_info"]


def problems(outcome: Outcome) -> dict[str, str]:
    return {Path(m.labels["path"]).name: m.labels["problem"] for m in outcome.measurements
            if m.family == "readiness_tls_file_file_error"}


def not_after(outcome: Outcome, cn: str) -> float:
    found = [m.value for m in outcome.measurements
             if m.family == "readiness_tls_file_cert_not_after_timestamp_seconds"
             and m.labels["subject_cn"] == cn]
    assert len(found) == 1, cn
    return found[0]


def der(cert: trustme.LeafCert) -> bytes:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER)


async def test_pem_bundle_der_and_directory(ca: trustme.CA, tmp_path: Path,
                                            ctx: RuntimeContext) -> None:
    a, b = leaf(ca, "a.example", 200), leaf(ca, "b.example", 100)
    (tmp_path / "chain.pem").write_bytes(a.cert_chain_pems[0].bytes() + ca.cert_pem.bytes())
    (tmp_path / "b.der").write_bytes(der(b))
    (tmp_path / "notes.txt").write_text("not looked at: suffix not listed")
    combo = leaf(ca, "combo.example", 300)
    (tmp_path / "combo.pem").write_bytes(combo.private_key_and_cert_chain_pem.bytes())
    outcome = await run(spec(tmp_path), ctx)
    assert outcome.status is Status.PASS, outcome.message
    found = {(c["subject_cn"], c["path"].rsplit("/", 1)[1]) for c in certs_of(outcome)}
    assert ("a.example", "chain.pem") in found and ("b.example", "b.der") in found
    assert ("combo.example", "combo.pem") in found  # the key block beside it is ignored
    assert len(found) == 4  # a, its CA, b, combo
    assert abs(not_after(outcome, "b.example") - (NOW + 100 * DAY).timestamp()) < 2
    info = next(c for c in certs_of(outcome) if c["subject_cn"] == "a.example")
    assert info["key_type"] == "ec" and info["key_size"] == "256"
    assert info["signature_algorithm"] == "ecdsa-with-SHA256"
    assert info["post_quantum_signature"] == "0"
    assert "b.example" in outcome.message  # next expiry named
    count = [m.value for m in outcome.measurements
             if m.family == "readiness_tls_file_certificates"]
    assert count == [4]


async def test_expired_expiring_and_not_yet_valid_fail_but_export_dates(
        ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    leaf(ca, "old.example", -3, 100).cert_chain_pems[0].write_to_path(str(tmp_path / "old.crt"))
    leaf(ca, "soon.example", 12).cert_chain_pems[0].write_to_path(str(tmp_path / "soon.crt"))
    ca.issue_cert("future.example", not_before=NOW + 5 * DAY, not_after=NOW + 400 * DAY
                  ).cert_chain_pems[0].write_to_path(str(tmp_path / "future.crt"))
    outcome = await run(spec(tmp_path / "*.crt"), ctx)
    assert outcome.status is Status.FAIL
    assert "expired: old.example" in outcome.message
    assert "soon.example" in outcome.message and "not yet valid: future.example" in outcome.message
    assert not_after(outcome, "old.example") < NOW.timestamp()  # kept although expired

    only_soon = await run(spec(tmp_path / "soon.crt", warn_days=10), ctx)
    assert only_soon.status is Status.PASS, only_soon.message
    strict = await run(spec(tmp_path / "soon.crt", warn_days=30), ctx)
    assert strict.status is Status.FAIL


@pytest.mark.parametrize(("name", "content", "problem", "reason"), [
    ("random.crt", os.urandom(2048).replace(b"\x30", b"\x31"), "not_certificate",
     Reason.PROTOCOL),
    ("empty.crt", b"", "empty", Reason.PROTOCOL),
    ("key-only.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
     "no_certificate", Reason.PROTOCOL),
])
async def test_bad_files_are_errors_naming_the_problem(
        name: str, content: bytes, problem: str, reason: Reason, ca: trustme.CA,
        tmp_path: Path, ctx: RuntimeContext) -> None:
    (tmp_path / name).write_bytes(content)
    leaf(ca, "ok.example", 300).cert_chain_pems[0].write_to_path(str(tmp_path / "ok.crt"))
    outcome = await run(spec(tmp_path), ctx)
    assert outcome.status is Status.ERROR
    assert outcome.reason is reason
    assert problems(outcome) == {name: problem}
    assert name in outcome.message
    assert [c["subject_cn"] for c in certs_of(outcome)] == ["ok.example"]  # others still seen


async def test_truncated_der_and_pem(ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    blob = der(leaf(ca, "t.example", 90))
    (tmp_path / "cut.der").write_bytes(blob[: len(blob) // 2])
    pem = leaf(ca, "p.example", 90).cert_chain_pems[0].bytes()
    (tmp_path / "cut.pem").write_bytes(pem[: len(pem) // 2])
    outcome = await run(spec(tmp_path), ctx)
    assert outcome.status is Status.ERROR
    assert problems(outcome) == {"cut.der": "truncated", "cut.pem": "truncated"}
    assert "is truncated" in outcome.message


async def test_oversized_missing_and_directory_entries(ca: trustme.CA, tmp_path: Path,
                                                      ctx: RuntimeContext) -> None:
    leaf(ca, "big.example", 90).cert_chain_pems[0].write_to_path(str(tmp_path / "big.crt"))
    outcome = await run(spec(tmp_path / "big.crt", max_file_bytes=100), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert problems(outcome) == {"big.crt": "oversized"}
    assert "max_file_bytes" in outcome.message
    fine = await run(spec(tmp_path / "big.crt"), ctx)
    assert fine.status is Status.PASS

    missing = await run(spec(tmp_path / "nope.crt"), ctx)
    assert missing.status is Status.ERROR and missing.reason is Reason.CONFIG
    assert problems(missing) == {"nope.crt": "missing"}
    os.mkfifo(tmp_path / "fifo.crt")  # never opened: a FIFO would block a reader
    fifo = await run(spec(tmp_path / "fifo.crt"), ctx)
    assert problems(fifo) == {"fifo.crt": "not_regular_file"}


async def test_read_error_is_unreadable(ctx: RuntimeContext) -> None:
    # a regular file whose read fails with EIO, even for root: /proc/self/mem at offset 0
    outcome = await run(spec("/proc/self/mem"), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert problems(outcome) == {"mem": "unreadable"}
    assert "cannot be read" in outcome.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_unreadable_file(ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    path = tmp_path / "locked.crt"
    leaf(ca, "l.example", 90).cert_chain_pems[0].write_to_path(str(path))
    path.chmod(0)
    outcome = await run(spec(path), ctx)
    assert outcome.status is Status.ERROR and problems(outcome) == {"locked.crt": "unreadable"}


async def test_pkcs12_with_password_reference(ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "p12-secret-93kd"
    cert = leaf(ca, "p12.example", 120)
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    blob = pkcs12.serialize_key_and_certificates(
        b"server", key,  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()),
        [x509.load_pem_x509_certificate(ca.cert_pem.bytes())],
        serialization.BestAvailableEncryption(secret.encode()))
    (tmp_path / "server.p12").write_bytes(blob)
    monkeypatch.setenv("TLS_TEST_P12_PASSWORD", secret)
    outcome = await run(spec(tmp_path / "server.p12",
                             pkcs12_password="${TLS_TEST_P12_PASSWORD}"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert {c["subject_cn"] for c in certs_of(outcome)} >= {"p12.example"}
    assert len(certs_of(outcome)) == 2

    monkeypatch.setenv("TLS_TEST_P12_PASSWORD", "wrong")
    wrong = await run(spec(tmp_path / "server.p12", pkcs12_password="${TLS_TEST_P12_PASSWORD}"),
                      ctx)
    assert wrong.status is Status.ERROR
    assert problems(wrong) == {"server.p12": "pkcs12_password_or_malformed"}
    monkeypatch.delenv("TLS_TEST_P12_PASSWORD")
    unset = await run(spec(tmp_path / "server.p12", pkcs12_password="${TLS_TEST_P12_PASSWORD}"),
                      ctx)
    assert unset.status is Status.ERROR and unset.reason is Reason.CONFIG
    assert "TLS_TEST_P12_PASSWORD" in unset.message
    for result in (outcome, wrong, unset):
        assert secret not in result.message
        assert all(secret not in str(dict(m.labels)) for m in result.measurements)
    assert secret not in caplog.text


async def test_symlink_swap_is_picked_up(ca: trustme.CA, tmp_path: Path,
                                         ctx: RuntimeContext) -> None:
    old, new = tmp_path / "v1.crt", tmp_path / "v2.crt"
    leaf(ca, "svc.example", 5).cert_chain_pems[0].write_to_path(str(old))
    leaf(ca, "svc.example", 90).cert_chain_pems[0].write_to_path(str(new))
    live = tmp_path / "live" / "server.crt"
    live.parent.mkdir()
    live.symlink_to(old)
    first = await run(spec(live), ctx)
    assert first.status is Status.FAIL
    staging = tmp_path / "live" / ".server.crt.tmp"
    staging.symlink_to(new)
    os.replace(staging, live)  # atomic swap, as cert-manager / certbot do
    second = await run(spec(live), ctx)
    assert second.status is Status.PASS, second.message
    assert not_after(second, "svc.example") > (NOW + 80 * DAY).timestamp()


async def test_recursive_glob_and_env_expansion(ca: trustme.CA, tmp_path: Path,
                                                ctx: RuntimeContext,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    leaf(ca, "deep.example", 90).cert_chain_pems[0].write_to_path(str(deep / "x.crt"))
    leaf(ca, "top.example", 90).cert_chain_pems[0].write_to_path(str(tmp_path / "top.crt"))
    outcome = await run(spec(f"{tmp_path}/**/*.crt"), ctx)
    assert {c["subject_cn"] for c in certs_of(outcome)} == {"deep.example", "top.example"}

    monkeypatch.setenv("TLS_TEST_CERT_FILE", str(tmp_path / "top.crt"))
    env = await run(spec("${TLS_TEST_CERT_FILE}", f"{tmp_path}/*.crt"), ctx)
    assert [c["subject_cn"] for c in certs_of(env)] == ["top.example"]  # deduplicated
    default = await run(spec("${TLS_TEST_UNSET_VAR:-" + str(deep / "x.crt") + "}"), ctx)
    assert [c["subject_cn"] for c in certs_of(default)] == ["deep.example"]
    unset = await run(spec("${TLS_TEST_UNSET_VAR}"), ctx)
    assert unset.status is Status.ERROR and unset.reason is Reason.CONFIG
    nothing = await run(spec(f"{tmp_path}/*.nothing"), ctx)
    assert nothing.status is Status.FAIL and "expected at least 1" in nothing.message


async def test_superseded_certificate_option(ca: trustme.CA, tmp_path: Path,
                                             ctx: RuntimeContext) -> None:
    old = leaf(ca, "rot.example", -1, 100).cert_chain_pems[0].bytes()
    new = leaf(ca, "rot.example", 200).cert_chain_pems[0].bytes()
    (tmp_path / "both.pem").write_bytes(old + new)
    default = await run(spec(tmp_path / "both.pem"), ctx)
    assert default.status is Status.FAIL and "expired" in default.message
    ignoring = await run(spec(tmp_path / "both.pem", ignore_superseded=True), ctx)
    assert ignoring.status is Status.PASS, ignoring.message
    # the pass claims only the certificate it judged (the old message said "2 ... valid")
    assert ignoring.message.startswith("1 certificates in 1 files within their validity "
                                       "dates")
    assert "1 superseded not judged (ignore_superseded)" in ignoring.message
    assert "chains not verified" in ignoring.message
    flags = sorted(c["superseded"] for c in certs_of(ignoring))
    assert flags == ["0", "1"]  # the old one is still exported, marked superseded


async def test_ml_dsa_signature_recognised(tmp_path: Path, ctx: RuntimeContext) -> None:
    cert_pem, _ = ts.ml_dsa_cert(tmp_path, "pq.example")
    (tmp_path / "pq.crt").write_bytes(cert_pem)
    outcome = await run(spec(tmp_path / "pq.crt"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    info = certs_of(outcome)[0]
    assert info["signature_algorithm"] == "ML-DSA-65"
    assert info["key_type"] == "ml-dsa-65"
    assert info["post_quantum_signature"] == "1"


def test_config_validation() -> None:
    assert registry.probe_kind("tls_file").spec is TlsFileCheck
    with pytest.raises(ValidationError) as info:
        TlsFileCheck.model_validate({"id": "x", "section": "1.2", "title": "t",
                                     "kind": "tls_file", "paths": [], "warn_days": -1,
                                     "max_file_bytes": 0})
    text = str(info.value)
    assert "paths" in text and "warn_days" in text and "max_file_bytes" in text
    with pytest.raises(ValidationError):
        TlsFileCheck.model_validate({"id": "x", "section": "1.2", "title": "t",
                                     "kind": "tls_file", "paths": ["/x"],
                                     "pkcs12_password": "literal"})


async def test_preset_check_reads_tls_cert_file(ca: trustme.CA, tmp_path: Path,
                                                ctx: RuntimeContext,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import config

    path = Path(__file__).resolve().parents[2] / "exporter/presets/qbitel-production/20-tls.yaml"
    leaf(ca, "qbitel.example", 90).cert_chain_pems[0].write_to_path(str(tmp_path / "s.crt"))
    loaded = config.build(config._parse_yaml(path.read_text(encoding="utf-8"), str(path)),
                          str(path), environ={"TLS_CERT_FILE": str(tmp_path / "s.crt")})
    check = loaded.check("1.2.4-files")
    assert isinstance(check, TlsFileCheck) and check.warn_days == 30
    outcome = await run(check, ctx)
    assert "qbitel.example" in {c["subject_cn"] for c in certs_of(outcome)}
    if not Path("/etc/qbitel/certs").exists():
        assert outcome.status is Status.PASS, outcome.message


# --------------------------------------------------------------------------- hardening
# (issue 17: one bad certificate must not blind the check; certificate identity; serials)

VECTORS = Path(cryptography_vectors.__file__).parent / "x509"


def unparsable(outcome: Outcome) -> dict[tuple[str, str], float]:
    return {(Path(m.labels["path"]).name, m.labels["problem"]): m.value
            for m in outcome.measurements
            if m.family == "readiness_tls_file_unparsable_certificates"}


def pem_of(cert: trustme.LeafCert) -> bytes:
    return cert.cert_chain_pems[0].bytes()


async def test_unparsable_certificates_are_named_and_the_rest_judged(
        ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    # rejected at load (InvalidVersion) and lazily, when the extensions are read
    # (DuplicateExtension): neither is a ValueError
    bad_version, _ = ts.tweaked_cert("v7.example", version=6)
    twice, _ = ts.tweaked_cert("dup.example", duplicate_extension=True)
    (tmp_path / "bundle.pem").write_bytes(pem_of(leaf(ca, "first.example", 200))
                                          + ts.der_to_pem(bad_version)
                                          + pem_of(leaf(ca, "third.example", 200))
                                          + ts.der_to_pem(twice))
    (tmp_path / "v7.der").write_bytes(bad_version)
    leaf(ca, "alone.example", 300).cert_chain_pems[0].write_to_path(str(tmp_path / "alone.crt"))
    outcome = await run(spec(tmp_path), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "bundle.pem certificate #2 (invalid X.509 version)" in outcome.message
    assert "bundle.pem certificate #4 (an extension appears twice)" in outcome.message
    assert "v7.der certificate #1 (invalid X.509 version)" in outcome.message
    assert unparsable(outcome) == {("bundle.pem", "invalid_version"): 1,
                                   ("bundle.pem", "duplicate_extension"): 1,
                                   ("v7.der", "invalid_version"): 1}
    assert {c["subject_cn"] for c in certs_of(outcome)} == {"first.example", "third.example",
                                                            "alone.example"}
    assert problems(outcome) == {}  # the files themselves were read
    count = [m.value for m in outcome.measurements
             if m.family == "readiness_tls_file_certificates"]
    assert count == [3]  # certificates judged; the unparsable ones are counted apart


async def test_lazily_rejected_field_does_not_hide_the_rest_of_the_file(
        ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    # loads, then raises ValueError when the subject is read (invalid UTF-8 in the CN)
    broken = (VECTORS / "custom" / "invalid_utf8_common_name.pem").read_bytes()
    (tmp_path / "mixed.pem").write_bytes(pem_of(leaf(ca, "kept.example", 200)) + broken)
    outcome = await run(spec(tmp_path / "mixed.pem"), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert [c["subject_cn"] for c in certs_of(outcome)] == ["kept.example"]
    assert unparsable(outcome) == {("mixed.pem", "malformed"): 1}
    assert "mixed.pem certificate #2 (malformed encoding)" in outcome.message


async def test_bad_base64_block_is_one_unparsable_certificate(
        ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    junk = b"-----BEGIN CERTIFICATE-----\nnot*base64*at*all\n-----END CERTIFICATE-----\n"
    # the legacy "X509 CERTIFICATE" label, which cryptography (and OpenSSL) read too
    legacy = pem_of(leaf(ca, "legacy.example", 200)).replace(b"CERTIFICATE",
                                                             b"X509 CERTIFICATE")
    (tmp_path / "b.pem").write_bytes(legacy + junk + pem_of(leaf(ca, "after.example", 200)))
    outcome = await run(spec(tmp_path / "b.pem"), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "b.pem certificate #2 (malformed encoding)" in outcome.message
    assert [c["subject_cn"] for c in certs_of(outcome)] == ["legacy.example", "after.example"]
    assert unparsable(outcome) == {("b.pem", "malformed"): 1}


async def test_unparsable_certificate_inside_pkcs12(ca: trustme.CA, tmp_path: Path,
                                                    ctx: RuntimeContext) -> None:
    twice, key_pem = ts.tweaked_cert("p12dup.example", duplicate_extension=True)
    key = serialization.load_pem_private_key(key_pem, None)
    blob = pkcs12.serialize_key_and_certificates(
        b"server", key, x509.load_der_x509_certificate(twice),  # type: ignore[arg-type]
        [x509.load_pem_x509_certificate(ca.cert_pem.bytes())], serialization.NoEncryption())
    (tmp_path / "s.p12").write_bytes(blob)
    outcome = await run(spec(tmp_path / "s.p12"), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "s.p12 certificate #1 (an extension appears twice)" in outcome.message
    assert unparsable(outcome) == {("s.p12", "duplicate_extension"): 1}
    assert len(certs_of(outcome)) == 1  # the CA certificate beside it is still judged


async def test_unparsable_does_not_mask_an_expired_certificate(
        ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    twice, _ = ts.tweaked_cert("dup.example", duplicate_extension=True)
    (tmp_path / "a.pem").write_bytes(ts.der_to_pem(twice)
                                     + pem_of(leaf(ca, "old.example", -2, 100)))
    outcome = await run(spec(tmp_path / "a.pem"), ctx)
    assert outcome.status is Status.FAIL
    assert "expired: old.example" in outcome.message and "cannot be parsed" in outcome.message


@pytest.mark.parametrize("expired_first", [True, False], ids=["expired-first", "valid-first"])
async def test_certificates_with_equal_serial_and_no_cn_are_all_judged(
        expired_first: bool, tmp_path: Path, ctx: RuntimeContext) -> None:
    # serial 0 and no CN, as 4 roots of the system CA bundle: only the fingerprint differs
    valid, _ = ts.tweaked_cert(None, serial=0, days_left=300)
    expired, _ = ts.tweaked_cert(None, serial=0, days_left=-5, days_since=400)
    blocks = [expired, valid] if expired_first else [valid, expired]
    (tmp_path / "roots.pem").write_bytes(b"".join(ts.der_to_pem(b) for b in blocks))
    outcome = await run(spec(tmp_path / "roots.pem"), ctx)
    assert outcome.status is Status.FAIL, outcome.message  # whatever the order
    # named by serial and fingerprint, as there is no CN
    assert f"expired: serial 0 sha256 {hashlib.sha256(expired).hexdigest()[:16]}" in \
        outcome.message
    found = certs_of(outcome)
    assert {c["fingerprint_sha256"] for c in found} == {hashlib.sha256(b).hexdigest()
                                                         for b in blocks}
    assert {(c["serial"], c["subject_cn"]) for c in found} == {("0", "")}
    dates = [m for m in outcome.measurements
             if m.family == "readiness_tls_file_cert_not_after_timestamp_seconds"]
    assert len({tuple(sorted(m.labels.items())) for m in dates}) == 2  # distinct series


async def test_the_same_certificate_twice_in_a_file_is_exported_once(
        ca: trustme.CA, tmp_path: Path, ctx: RuntimeContext) -> None:
    one = pem_of(leaf(ca, "twice.example", 200))
    (tmp_path / "dup.pem").write_bytes(one + one)
    outcome = await run(spec(tmp_path / "dup.pem"), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert [c["subject_cn"] for c in certs_of(outcome)] == ["twice.example"]


SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.mark.skipif(not SYSTEM_BUNDLE.exists(),
                    reason="no system CA bundle (Debian's ca-certificates package) here")
async def test_system_ca_bundle_exports_every_distinct_certificate(ctx: RuntimeContext) -> None:
    # counted independently of the probe: PEM blocks, base64-decoded, hashed
    text = SYSTEM_BUNDLE.read_text(encoding="ascii")
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text,
                        flags=re.DOTALL)
    expected = {hashlib.sha256(base64.b64decode("".join(b.split()))).hexdigest()
                for b in blocks}
    outcome = await run(spec(SYSTEM_BUNDLE, warn_days=0), ctx)
    assert outcome.status is not Status.ERROR, outcome.message
    exported = [c["fingerprint_sha256"] for c in certs_of(outcome)]
    assert len(exported) == len(set(exported)) == len(expected)
    assert set(exported) == expected
    assert unparsable(outcome) == {}


async def test_negative_serials_have_a_defined_encoding(tmp_path: Path,
                                                        ctx: RuntimeContext) -> None:
    # real certificates with negative serials: -18008675309 and -1
    negative = VECTORS / "custom" / "negative_serial.pem"
    pkits = VECTORS / "PKITS_data" / "certs" / "InvalidNegativeSerialNumberTest15EE.crt"
    outcome = await run(spec(negative, pkits, warn_days=0), ctx)
    serials = {Path(c["path"]).name: c["serial"] for c in certs_of(outcome)}
    assert serials == {"negative_serial.pem": "-4316693ed",
                       "InvalidNegativeSerialNumberTest15EE.crt": "-1"}
    # hand-built: serial -1 and serial 1 of the same name are two certificates
    minus, _ = ts.tweaked_cert("sign.example", serial=-1)
    plus, _ = ts.tweaked_cert("sign.example", serial=1)
    big, _ = ts.tweaked_cert("sign.example", serial=-(2**159 - 1))
    (tmp_path / "signs.pem").write_bytes(b"".join(ts.der_to_pem(b) for b in (minus, plus, big)))
    signs = await run(spec(tmp_path / "signs.pem"), ctx)
    assert signs.status is Status.PASS, signs.message
    assert sorted(c["serial"] for c in certs_of(signs)) == sorted(["-1", "1", "-" + "7" + "f" * 39])


def test_serial_encoding_is_documented() -> None:
    root = Path(__file__).resolve().parents[2]
    for page in ("docs/probes/tls.md", "docs/metrics.md"):
        text = (root / page).read_text(encoding="utf-8")
        assert "`-4316693ed`" in text, page  # the documented example of a negative serial
        assert "fingerprint_sha256" in text, page


async def test_cryptography_vectors_give_a_verdict_for_every_file(ctx: RuntimeContext) -> None:
    """Regression guard: 1,774 real-world and malformed x509 files, one check."""
    files = sorted(str(p) for p in VECTORS.rglob("*") if p.is_file())
    assert len(files) > 1000
    outcome = await run(spec(f"{VECTORS}/**/*"), ctx)
    assert outcome.status is Status.FAIL  # many files there are broken on purpose
    assert outcome.reason is None
    judged: dict[str, set[str]] = {}
    for m in outcome.measurements:
        if "path" in m.labels:
            judged.setdefault(m.labels["path"], set()).add(m.family)
    assert sorted(judged) == files  # every file has a verdict of its own
    by_file = {(str(Path(path).relative_to(VECTORS)), problem)
               for (path, problem) in ((m.labels["path"], m.labels["problem"])
                                       for m in outcome.measurements
                                       if m.family == "readiness_tls_file_unparsable_certificates")}
    assert ("custom/invalid_version.pem", "invalid_version") in by_file
    assert ("custom/two_basic_constraints.pem", "duplicate_extension") in by_file
    assert ("san_edipartyname.der", "unsupported_name_type") in by_file
    assert len(certs_of(outcome)) > 400  # the parseable ones are exported


def test_cryptography_vectors_through_the_check_command(tmp_path: Path) -> None:
    """The same corpus through the real pipeline: a verdict, not error/internal."""
    from tests.core.conftest import EXE

    config = tmp_path / "corpus.yaml"
    config.write_text(f"""
checks:
  - id: corpus
    section: "1.2"
    title: every certificate file of the corpus
    severity: critical
    kind: tls_file
    timeout: 60s
    paths: ["{VECTORS}/**/*"]
""", encoding="utf-8")
    done = subprocess.run([str(EXE), "check", "--config", str(config), "--output", "json"],
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr
    assert done.returncode == 1, done.stderr  # a critical check failed (2 would be config)
    [row] = json.loads(done.stdout)["checks"]
    assert (row["status"], row["reason"]) == ("fail", None)
    assert "cannot be parsed" in row["message"]
