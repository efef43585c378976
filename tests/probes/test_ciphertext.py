"""`ciphertext` probe: real AES-256-GCM values stored in a real cluster, sampled and
decrypted under several envelopes; key and plaintexts never appear in any output."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.postgres import ciphertext
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, pg_cluster

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
KEY_HEX = KEY.hex()
EMAILS = [f"person{i}@example.org" for i in range(20)]


def seal(plain: str, *, nonce_len: int = 12, suffix: bool = False,
         aad: bytes | None = None) -> bytes:
    nonce = os.urandom(nonce_len)
    body = AESGCM(KEY).encrypt(nonce, plain.encode(), aad)
    return body + nonce if suffix else nonce + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    rows_b64 = ", ".join(f"('{b64(seal(e))}')" for e in EMAILS)
    rows_mixed = ", ".join(
        [f"('{b64(seal(e))}')" for e in EMAILS[:15]] + [f"('{e}')" for e in EMAILS[15:]])
    rows_hex_suffix = ", ".join(f"('enc:v1:{seal(e, suffix=True).hex()}')" for e in EMAILS)
    rows_bytea = ", ".join(f"('\\x{seal(e, nonce_len=16).hex()}'::bytea)" for e in EMAILS)
    rows_aad = ", ".join(
        f"({i}, '{b64(seal(e, aad=str(i).encode()))}')" for i, e in enumerate(EMAILS))
    with pg_cluster() as server:
        server.psql(
            f"CREATE TABLE pii_b64 (email text); INSERT INTO pii_b64 VALUES {rows_b64};"
            f"CREATE TABLE pii_mixed (email text); INSERT INTO pii_mixed VALUES {rows_mixed};"
            f"CREATE TABLE pii_hex (email text); INSERT INTO pii_hex VALUES {rows_hex_suffix};"
            f"CREATE SCHEMA vault; CREATE TABLE vault.pii_raw (email bytea);"
            f"INSERT INTO vault.pii_raw VALUES {rows_bytea};"
            f"CREATE TABLE pii_aad (id int, email text); INSERT INTO pii_aad VALUES {rows_aad};"
            "CREATE TABLE pii_empty (email text);"
        )
        yield server


@pytest.fixture
async def ctx(cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[RuntimeContext]:
    monkeypatch.setenv("PII_KEY_B64", KEY_B64)
    monkeypatch.setenv("PII_KEY_HEX", KEY_HEX)
    conn = PostgresConnection.model_validate({"kind": "postgres", "port": cluster.port})
    context = RuntimeContext({"db": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def check(table: str, **fields: Any) -> ciphertext.CiphertextCheck:
    base = {"id": "2.3.2", "section": "2.3", "title": "PII encrypted", "kind": "ciphertext",
            "connection": "db", "table": table, "column": "email", "key": "${PII_KEY_B64}"}
    return ciphertext.CiphertextCheck.model_validate({**base, **fields})


def share(outcome: Outcome, family: str) -> float:
    return next(m.value for m in outcome.measurements if m.family == family)


def assert_nothing_leaks(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    secrets = [KEY_B64, KEY_HEX, *EMAILS]
    texts = [outcome.message, *(v for m in outcome.measurements for v in m.labels.values()),
             *(r.getMessage() for r in caplog.records), *(str(r.__dict__) for r in caplog.records)]
    for secret in secrets:
        assert all(secret not in text for text in texts), "a secret value leaked"


async def test_all_values_decrypt(ctx: RuntimeContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await ciphertext.run(check("pii_b64", sample_size=10), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert share(outcome, "readiness_ciphertext_sampled_values") == 10
    assert share(outcome, "readiness_ciphertext_decrypt_share") == 1.0
    assert share(outcome, "readiness_ciphertext_plaintext_share") == 0.0
    assert outcome.message == "pii_b64.email: 10/10 decrypt, 0 look like plaintext"
    assert_nothing_leaks(outcome, caplog)


async def test_plaintext_rows_are_counted(ctx: RuntimeContext,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await ciphertext.run(check("pii_mixed", sample_size=100), ctx)
    assert outcome.status is Status.FAIL
    assert share(outcome, "readiness_ciphertext_decrypt_share") == 0.75
    assert share(outcome, "readiness_ciphertext_plaintext_share") == 0.25
    assert_nothing_leaks(outcome, caplog)
    tolerant = await ciphertext.run(check("pii_mixed", min_decrypt_share=0.7,
                                          max_plaintext_share=0.3), ctx)
    assert tolerant.status is Status.PASS


async def test_wrong_key_decrypts_nothing_but_is_not_plaintext(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OTHER_KEY", base64.b64encode(bytes(32)).decode())
    outcome = await ciphertext.run(check("pii_b64", key="${OTHER_KEY}"), ctx)
    assert outcome.status is Status.FAIL
    assert share(outcome, "readiness_ciphertext_decrypt_share") == 0.0
    assert share(outcome, "readiness_ciphertext_plaintext_share") == 0.0
    assert_nothing_leaks(outcome, caplog)


async def test_hex_with_prefix_and_suffix_nonce(ctx: RuntimeContext) -> None:
    envelope = {"encoding": "hex", "prefix": "enc:v1:", "nonce_position": "suffix"}
    outcome = await ciphertext.run(check("pii_hex", key=None, key_env="PII_KEY_HEX",
                                         key_encoding="hex", envelope=envelope), ctx)
    assert outcome.status is Status.PASS, outcome.message
    wrong_position = await ciphertext.run(
        check("pii_hex", envelope={**envelope, "nonce_position": "prefix"}), ctx)
    assert share(wrong_position, "readiness_ciphertext_decrypt_share") == 0.0


async def test_bytea_column_in_schema_with_16_byte_nonce(ctx: RuntimeContext) -> None:
    outcome = await ciphertext.run(
        check("vault.pii_raw", envelope={"encoding": "bytea", "nonce_length": 16}), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert share(outcome, "readiness_ciphertext_sampled_values") == 20


async def test_associated_data_column(ctx: RuntimeContext) -> None:
    with_aad = await ciphertext.run(
        check("pii_aad", envelope={"associated_data_column": "id"}), ctx)
    assert with_aad.status is Status.PASS, with_aad.message
    without = await ciphertext.run(check("pii_aad"), ctx)
    assert share(without, "readiness_ciphertext_decrypt_share") == 0.0
    fixed = await ciphertext.run(check("pii_aad", envelope={"associated_data": "1"}), ctx)
    assert share(fixed, "readiness_ciphertext_decrypt_share") == 1 / 20


async def test_empty_table_is_skipped(ctx: RuntimeContext) -> None:
    outcome = await ciphertext.run(check("pii_empty"), ctx)
    assert outcome.status is Status.SKIPPED


async def test_key_problems_are_config_errors(ctx: RuntimeContext,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    short = base64.b64encode(b"0123456789abcdef").decode()
    monkeypatch.setenv("SHORT_KEY", short)
    too_short = await ciphertext.run(check("pii_b64", key="${SHORT_KEY}"), ctx)
    assert (too_short.status, too_short.reason) == (Status.ERROR, Reason.CONFIG)
    assert short not in too_short.message
    not_hex = await ciphertext.run(check("pii_b64", key_encoding="hex"), ctx)
    assert (not_hex.status, not_hex.reason) == (Status.ERROR, Reason.CONFIG)
    assert KEY_B64 not in not_hex.message
    monkeypatch.delenv("UNSET_KEY", raising=False)
    unset = await ciphertext.run(check("pii_b64", key=None, key_env="UNSET_KEY"), ctx)
    assert (unset.status, unset.reason) == (Status.ERROR, Reason.CONFIG)
    assert "UNSET_KEY" in unset.message
    raw = await ciphertext.run(check("pii_b64", key=None, key_env="PII_KEY_HEX",
                                     key_encoding="raw"), ctx)
    assert (raw.status, raw.reason) == (Status.ERROR, Reason.CONFIG)  # 64 chars, not 32
    for outcome in (too_short, not_hex, unset, raw):
        assert_nothing_leaks(outcome, caplog)


async def test_missing_table_is_config_error(ctx: RuntimeContext) -> None:
    outcome = await ciphertext.run(check("no_such_table"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)


def test_spec_validation() -> None:
    with pytest.raises(ValidationError, match="table"):
        check("users; DROP TABLE users")
    with pytest.raises(ValidationError, match="exactly one of key"):
        check("pii_b64", key=None)
    with pytest.raises(ValidationError, match="inline value"):
        check("pii_b64", key=KEY_B64)
    with pytest.raises(ValidationError, match="nonce_length"):
        check("pii_b64", envelope={"nonce_length": 4})
