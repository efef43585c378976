"""attestation: records made by the real `attest` CLI, verified by the probe."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.context import RuntimeContext
from exporter.model import Reason, Status
from exporter.probes.attestation import cli
from exporter.probes.attestation.probe import KIND, AttestationCheck
from exporter.probes.attestation.record import (
    Attestation,
    format_time,
    load_record,
    record_filename,
)
from tests.support.servers import free_port

ROLES = ["Engineering Lead", "Security Lead", "DevOps Lead", "Product Owner"]
NAMES = {"Engineering Lead": "Erin Eng", "Security Lead": "Sam Sec",
         "DevOps Lead": "Dana Ops", "Product Owner": "Pat Product"}


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attest")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


class Signers:
    """Keys made with `attest keygen`, a keyring built from its printed entries."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.records = root / "attestations"
        self.keyring = root / "keyring.yaml"
        entries: list[str] = []
        for role in ROLES:
            slug = role.split()[0].lower()
            assert _cli(["keygen", "--private-key", str(root / f"{slug}.pem"),
                         "--key-id", slug, "--name", NAMES[role], "--role", role]) == 0
            out = capsys.readouterr().out
            entries.append("\n".join(line for line in out.splitlines()
                                     if not line.startswith("#")))
        self.keyring.write_text("keys:\n" + "\n".join(entries) + "\n")

    def key_path(self, role: str) -> Path:
        return self.root / f"{role.split()[0].lower()}.pem"

    def sign(self, item: str, role: str, release: str = "2.1.0", *,
             key_of: str | None = None, extra: list[str] | None = None) -> Path:
        signer = key_of or role
        slug = signer.split()[0].lower()
        before = set(self.records.glob("*.json")) if self.records.exists() else set()
        assert _cli(["sign", "--private-key", str(self.key_path(signer)), "--key-id", slug,
                     "--item", item, "--role", role, "--release", release,
                     "--dir", str(self.records), *(extra or [])]) == 0
        (created,) = set(self.records.glob("*.json")) - before
        return created

    def private_key(self, role: str) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.key_path(role).read_bytes(), None)
        assert isinstance(key, Ed25519PrivateKey)
        return key

    def spec(self, check_id: str, roles: list[str], **extra: object) -> AttestationCheck:
        return AttestationCheck.model_validate({
            "id": check_id, "section": "1.1", "title": "t", "kind": "attestation",
            "roles": roles, "directory": str(self.records), "keyring": str(self.keyring),
            **extra,
        })


@pytest.fixture
def signers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Signers:
    return Signers(tmp_path, capsys)


@pytest.fixture
async def rctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    context = RuntimeContext(state_dir=tmp_path / "state", release="2.1.0")
    yield context
    await context.aclose()


def _values(outcome: object, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value
            for m in outcome.measurements if m.family == family}  # type: ignore[attr-defined]


def _no_key_material(signers: Signers, outcome: object, logs: str = "") -> None:
    text = outcome.message + repr(outcome.measurements) + logs  # type: ignore[attr-defined]
    for role in ROLES:
        key = signers.private_key(role)
        raw_pub = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        raw_priv = key.private_bytes(serialization.Encoding.Raw,
                                     serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        for secret in (raw_pub, raw_priv):
            assert base64.b64encode(secret).decode() not in text
            assert secret.hex() not in text


async def test_valid_record_passes_and_exports_signer(signers: Signers,
                                                      rctx: RuntimeContext) -> None:
    path = signers.sign("1.1.4", "Engineering Lead")
    spec = signers.spec("1.1.4", ["Engineering Lead"])
    outcome = await KIND.run(spec, rctx)
    assert outcome.status is Status.PASS, outcome.message
    assert "Erin Eng" in outcome.message and "2.1.0" in outcome.message
    assert _values(outcome, "readiness_attestation_valid") == {
        (("role", "Engineering Lead"),): 1.0}
    assert _values(outcome, "readiness_attestation_signer_info") == {
        (("role", "Engineering Lead"), ("signer", "Erin Eng")): 1.0}
    record = load_record(path)
    assert _values(outcome, "readiness_attestation_expiry_timestamp_seconds")[
        (("role", "Engineering Lead"),)] == record.expires_epoch
    assert record.expires_epoch - record.signed_epoch == 14 * 86400
    _no_key_material(signers, outcome)


async def test_forged_signature_fails(signers: Signers, rctx: RuntimeContext) -> None:
    # A record for release 2.0.0 whose release is edited to 2.1.0 after signing.
    path = signers.sign("1.1.4", "Engineering Lead", release="2.0.0")
    data = json.loads(path.read_text())
    data["release"] = "2.1.0"
    path.write_text(json.dumps(data))
    # And one signed by a key that is not the keyring's, claiming its key id.
    impostor = Ed25519PrivateKey.generate()
    forged = Attestation(item="1.1.4", role="Engineering Lead", release="2.1.0",
                         key_id="engineering", signed_at=format_time(time.time()),
                         expires_at=format_time(time.time() + 86400)).sign(impostor)
    (signers.records / record_filename(forged)).write_text(forged.to_json())
    outcome = await KIND.run(signers.spec("1.1.4", ["Engineering Lead"]), rctx)
    assert outcome.status is Status.FAIL
    assert "signature does not verify" in outcome.message
    assert _values(outcome, "readiness_attestation_records")[(("verdict", "bad_signature"),)] == 2
    assert _values(outcome, "readiness_attestation_valid") == {
        (("role", "Engineering Lead"),): 0.0}
    assert not _values(outcome, "readiness_attestation_signer_info")


async def test_key_of_another_role_fails(signers: Signers, rctx: RuntimeContext) -> None:
    signers.sign("1.1.4", "Engineering Lead", key_of="Security Lead")
    outcome = await KIND.run(signers.spec("1.1.4", ["Engineering Lead"]), rctx)
    assert outcome.status is Status.FAIL
    assert "not allowed to sign for this role" in outcome.message
    assert "Sam Sec" in outcome.message


async def test_expired_record_fails_but_keeps_its_expiry(signers: Signers,
                                                         rctx: RuntimeContext) -> None:
    signed = time.time() - 10 * 86400
    record = Attestation(item="5.4.4", role="DevOps Lead", release="2.1.0", key_id="devops",
                         signed_at=format_time(signed),
                         expires_at=format_time(signed + 86400)).sign(
        signers.private_key("DevOps Lead"))
    signers.records.mkdir()
    (signers.records / record_filename(record)).write_text(record.to_json())
    outcome = await KIND.run(signers.spec("5.4.4", ["DevOps Lead"]), rctx)
    assert outcome.status is Status.FAIL
    assert "expired" in outcome.message
    assert _values(outcome, "readiness_attestation_expiry_timestamp_seconds") == {
        (("role", "DevOps Lead"),): float(int(signed) + 86400)}


async def test_wrong_release_fails(signers: Signers, rctx: RuntimeContext) -> None:
    signers.sign("1.1.4", "Engineering Lead", release="2.0.9")
    outcome = await KIND.run(signers.spec("1.1.4", ["Engineering Lead"]), rctx)
    assert outcome.status is Status.FAIL
    assert "another release (2.0.9, deploying 2.1.0)" in outcome.message
    # Not bound to a release: the same record is accepted.
    unbound = await KIND.run(signers.spec("1.1.4", ["Engineering Lead"], bind_release=False),
                             rctx)
    assert unbound.status is Status.PASS


async def test_file_changed_after_review_fails(signers: Signers, rctx: RuntimeContext,
                                               tmp_path: Path) -> None:
    config = tmp_path / "qbitel.production.yaml"
    config.write_text("session_timeout: 1800\n")
    signers.sign("1.2.1", "Security Lead", extra=["--file", str(config)])
    spec = signers.spec("1.2.1", ["Security Lead"], file=str(config))
    assert (await KIND.run(spec, rctx)).status is Status.PASS
    config.write_text("session_timeout: 86400\n")
    outcome = await KIND.run(spec, rctx)
    assert outcome.status is Status.FAIL
    assert "file changed since the review" in outcome.message
    config.unlink()
    gone = await KIND.run(spec, rctx)
    assert gone.status is Status.FAIL and "does not exist" in gone.message


async def test_sign_off_needs_every_role(signers: Signers, rctx: RuntimeContext,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spec = signers.spec("12", ROLES)
    for role in ROLES[:3]:
        signers.sign("12", role)
    outcome = await KIND.run(spec, rctx)
    assert outcome.status is Status.FAIL
    assert outcome.message == "Product Owner: no record"
    signers.sign("12", "Product Owner")
    # A record for another item does not count, nor one for an unrelated role.
    signers.sign("11.1.x-code-freeze", "Engineering Lead")
    outcome = await KIND.run(spec, rctx)
    assert outcome.status is Status.PASS, outcome.message
    assert _values(outcome, "readiness_attestation_valid") == {
        (("role", r),): 1.0 for r in ROLES}
    assert {dict(k)["signer"] for k in _values(outcome,
                                                "readiness_attestation_signer_info")} == set(
        NAMES.values())
    _no_key_material(signers, outcome, caplog.text)


async def test_one_valid_record_among_bad_ones_is_enough(signers: Signers,
                                                         rctx: RuntimeContext) -> None:
    signers.sign("1.1.5", "Engineering Lead", release="2.0.0")
    signers.sign("1.1.5", "Engineering Lead")
    (signers.records / "garbage.json").write_text("{not json")
    outcome = await KIND.run(signers.spec("1.1.5", ["Engineering Lead"]), rctx)
    assert outcome.status is Status.PASS
    assert "1 unreadable record file(s) ignored" in outcome.message


async def test_release_from_application_endpoint(signers: Signers, tmp_path: Path) -> None:
    signers.sign("1.1.4", "Engineering Lead", release="3.0.1")

    async def info(_: web.Request) -> web.Response:
        return web.json_response({"app": {"version": "3.0.1"}})

    app = web.Application()
    app.router.add_get("/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    context = RuntimeContext(state_dir=tmp_path / "s")  # no settings.release
    try:
        spec = signers.spec("1.1.4", ["Engineering Lead"],
                            release_url=f"http://127.0.0.1:{port}/info",
                            release_json_path="app.version")
        assert (await KIND.run(spec, context)).status is Status.PASS
        missing = signers.spec("1.1.4", ["Engineering Lead"],
                               release_url=f"http://127.0.0.1:{port}/info")
        outcome = await KIND.run(missing, context)
        assert outcome.status is Status.ERROR and outcome.reason is Reason.PROTOCOL
        assert "release endpoint JSON has no 'version'" in outcome.message
        unknown = await KIND.run(signers.spec("1.1.4", ["Engineering Lead"]), context)
        assert unknown.status is Status.ERROR and unknown.reason is Reason.CONFIG
        assert "release being deployed is unknown" in unknown.message
    finally:
        await runner.cleanup()
        await context.aclose()
    refused = RuntimeContext(state_dir=tmp_path / "r")
    try:
        spec = signers.spec("1.1.4", ["Engineering Lead"],
                            release_url=f"http://127.0.0.1:{free_port()}/info")
        outcome = await KIND.run(spec, refused)
        assert outcome.status is Status.ERROR and outcome.reason is Reason.CONNECT
    finally:
        await refused.aclose()


async def test_missing_inputs_fail_or_error_clearly(tmp_path: Path,
                                                    rctx: RuntimeContext,
                                                    signers: Signers) -> None:
    outcome = await KIND.run(signers.spec("1.1.4", ["Engineering Lead"]), rctx)
    assert outcome.status is Status.FAIL
    assert f"attestation directory {signers.records} does not exist" == outcome.message
    spec = signers.spec("1.1.4", ["Engineering Lead"], keyring=str(tmp_path / "none.yaml"))
    outcome = await KIND.run(spec, rctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "none.yaml does not exist" in outcome.message
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys:\n  - id: x\n    name: X\n    roles: [A]\n    public_key: AAAA\n")
    outcome = await KIND.run(signers.spec("1.1.4", ["A"], keyring=str(bad)), rctx)
    assert outcome.status is Status.ERROR
    assert "keys[0]: public_key is 3 bytes" in outcome.message


def test_canonical_encoding_is_stable_and_covers_every_field(signers: Signers) -> None:
    record = Attestation(item="12", role="Product Owner", release="2.1.0", key_id="product",
                         signed_at="2026-01-01T00:00:00Z", expires_at="2026-02-01T00:00:00Z")
    body = record.canonical_bytes()
    assert body == (b"readiness-exporter attestation v1\n"
                    b'{"expires_at":"2026-02-01T00:00:00Z","file":null,"file_sha256":null,'
                    b'"item":"12","key_id":"product","note":null,"release":"2.1.0",'
                    b'"role":"Product Owner","signed_at":"2026-01-01T00:00:00Z","version":1}')
    signed = record.sign(signers.private_key("Product Owner"))
    public = signers.private_key("Product Owner").public_key()
    assert signed.signature_valid(public)
    for changed in (replace(signed, item="11"), replace(signed, role="DevOps Lead"),
                    replace(signed, note="x"), replace(signed, version=2),
                    replace(signed, expires_at="2027-02-01T00:00:00Z")):
        assert not changed.signature_valid(public)
    assert Attestation.from_mapping(json.loads(signed.to_json())) == signed


def test_cli_verify_and_refusals(signers: Signers, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Path) -> None:
    signers.sign("1.1.4", "Engineering Lead")
    capsys.readouterr()
    assert _cli(["verify", "--keyring", str(signers.keyring), "--dir", str(signers.records),
                 "--release", "2.1.0"]) == 0
    assert "by Erin Eng: valid" in capsys.readouterr().out
    assert _cli(["verify", "--keyring", str(signers.keyring), "--dir", str(signers.records),
                 "--release", "9.9.9"]) == 1
    assert "signed for another release" in capsys.readouterr().out
    # keygen never overwrites a key; sign refuses a wrong passphrase cleanly.
    assert _cli(["keygen", "--private-key", str(signers.key_path("Product Owner")),
                 "--name", "X", "--role", "Product Owner"]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert (signers.key_path("Product Owner").stat().st_mode & 0o777) == 0o600
    out = tmp_path / "one.json"
    assert _cli(["sign", "--private-key", str(signers.key_path("Product Owner")),
                 "--item", "12", "--role", "Product Owner", "--release", "1",
                 "--output", str(out), "--expires", "1h"]) == 0
    record = load_record(out)
    assert record.key_id.startswith("ed25519:") and len(record.key_id) == 24
    assert record.expires_epoch - record.signed_epoch == 3600


def test_encrypted_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    passphrase = "correct horse battery staple 42"
    monkeypatch.setenv("ATTEST_PASSPHRASE", passphrase)
    key = tmp_path / "enc.pem"
    assert _cli(["keygen", "--private-key", str(key), "--name", "N", "--role", "R",
                 "--passphrase-env", "ATTEST_PASSPHRASE"]) == 0
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    sign = ["sign", "--private-key", str(key), "--item", "12", "--role", "R", "--release",
            "1", "--output", "-"]
    assert _cli(sign) == 2  # no passphrase given
    assert "wrong or missing passphrase" in capsys.readouterr().err
    assert _cli([*sign, "--passphrase-env", "ATTEST_PASSPHRASE"]) == 0
    out = capsys.readouterr()
    assert Attestation.from_mapping(json.loads(out.out)).role == "R"
    monkeypatch.setenv("ATTEST_PASSPHRASE", "wrong")
    assert _cli([*sign, "--passphrase-env", "ATTEST_PASSPHRASE"]) == 2
    assert passphrase not in out.out + out.err + capsys.readouterr().err + caplog.text
