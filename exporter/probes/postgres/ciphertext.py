"""`ciphertext`: sampled PII values decrypt as AES-256-GCM with the configured key (2.3.2).

Samples N non-NULL values of one column (read-only, statement timeout), unpacks each
with the configured envelope (text prefix, encoding, nonce length and position, tag
after the ciphertext, associated data), and decrypts it in a worker thread. Exports the
share that decrypts and the share that looks like plaintext. No value, plaintext or key
byte ever leaves the probe: messages carry counts only.
"""

from __future__ import annotations

import base64
import binascii
import string
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    PostgresConnectionName,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretRef,
    SecretReference,
)
from exporter.probes.postgres.errors import quote_ident, read_only, with_connection
from exporter.transport.secrets import resolve_secret

_QUALIFIED = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$"
_COLUMN = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
TAG_LENGTH = 16


class Envelope(BaseModel):
    """How a stored value packs nonce, ciphertext and tag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Literal["base64", "base64url", "hex", "bytea"] = Field(
        default="base64", description="text encoding of the stored value; bytea: raw bytes"
    )
    prefix: str = Field(default="", max_length=32,
                        description="text marker before the encoded value, e.g. 'enc:v1:'")
    nonce_length: int = Field(default=12, ge=8, le=32)
    nonce_position: Literal["prefix", "suffix"] = Field(
        default="prefix", description="nonce before (prefix) or after (suffix) ciphertext+tag"
    )
    associated_data: str | None = Field(default=None, description="fixed AAD (UTF-8)")
    associated_data_column: str | None = Field(
        default=None, pattern=_COLUMN, description="per-row AAD: this column's text value"
    )


class CiphertextCheck(CheckSpec):
    """`kind: ciphertext` options."""

    kind: Literal["ciphertext"]
    connection: PostgresConnectionName = Field(description="name of a `kind: postgres` "
                                               "connection")
    table: str = Field(pattern=_QUALIFIED, description="table, optionally schema-qualified")
    column: str = Field(pattern=_COLUMN)
    sample_size: int = Field(default=100, ge=1, le=10_000)
    sample: Literal["random", "first"] = Field(
        default="random", description="random: ORDER BY random() (scans the table)"
    )
    key: SecretReference | None = Field(
        default=None, description="the 32-byte AES key: ${ENV} or {file: path}")
    key_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the key, read at run time")
    key_encoding: Literal["hex", "base64", "raw"] = "base64"
    envelope: Envelope = Envelope()
    min_decrypt_share: float = Field(default=1.0, ge=0, le=1)
    max_plaintext_share: float = Field(default=0.0, ge=0, le=1)
    statement_timeout: Duration = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_key(self) -> CiphertextCheck:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of key or key_env")
        return self


SAMPLED = MetricFamily("readiness_ciphertext_sampled_values", "Values sampled in the last run.")
DECRYPTS = MetricFamily("readiness_ciphertext_decrypt_share",
                        "Share of sampled values that decrypt with the key (AES-256-GCM).")
DECRYPTS_TARGET = MetricFamily("readiness_ciphertext_decrypt_share_target",
                               "Configured minimum decrypt share.")
PLAIN = MetricFamily("readiness_ciphertext_plaintext_share",
                     "Share of sampled values that look like plaintext (not an envelope).")
PLAIN_TARGET = MetricFamily("readiness_ciphertext_plaintext_share_target",
                            "Configured maximum plaintext share.")


def parse_key(raw: str, encoding: str) -> bytes:
    """The AES-256 key bytes; `ProbeError(config)` without echoing anything of the key."""
    try:
        if encoding == "hex":
            key = bytes.fromhex(raw.strip())
        elif encoding == "base64":
            key = base64.b64decode(raw.strip(), validate=True)
        else:
            key = raw.encode("utf-8")
    except (ValueError, binascii.Error):
        raise ProbeError(Reason.CONFIG, f"key is not valid {encoding}") from None
    if len(key) != 32:
        raise ProbeError(Reason.CONFIG, "key does not decode to 32 bytes (AES-256)")
    return key


_PRINTABLE = set(string.printable) - set("\x0b\x0c")


def _text_of(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(value)


def _looks_like_text(text: str) -> bool:
    return bool(text) and all(ch in _PRINTABLE or ch.isprintable() for ch in text)


def unpack(value: object, envelope: Envelope) -> tuple[bytes, bytes] | None:
    """(nonce, ciphertext+tag) from a stored value, or None when it is not an envelope."""
    if envelope.encoding == "bytea" and isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if envelope.prefix:
            if not data.startswith(envelope.prefix.encode()):
                return None
            data = data[len(envelope.prefix.encode()):]
    else:
        text = _text_of(value)
        if text is None or not text.startswith(envelope.prefix):
            return None
        body = text[len(envelope.prefix):].strip()
        try:
            if envelope.encoding == "hex":
                data = bytes.fromhex(body)
            elif envelope.encoding == "base64url":
                data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            elif envelope.encoding == "base64":
                data = base64.b64decode(body, validate=True)
            else:  # bytea text form, e.g. from a text cast: \x...
                data = bytes.fromhex(body.removeprefix("\\x"))
        except (ValueError, binascii.Error):
            return None
    if len(data) < envelope.nonce_length + TAG_LENGTH:
        return None
    if envelope.nonce_position == "prefix":
        return data[:envelope.nonce_length], data[envelope.nonce_length:]
    return data[-envelope.nonce_length:], data[:-envelope.nonce_length]


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts of one sample (no values)."""

    sampled: int
    decrypted: int
    plaintext: int


def assess(rows: list[tuple[object, object]], key: bytes, envelope: Envelope) -> Tally:
    """Try to decrypt each sampled value (CPU work: run in a thread)."""
    aes = AESGCM(key)
    decrypted = plaintext = 0
    for value, aad_value in rows:
        packed = unpack(value, envelope)
        if packed is None:
            text = _text_of(value)
            if text is not None and _looks_like_text(text):
                plaintext += 1
            continue
        if envelope.associated_data_column is not None:
            aad: bytes | None = (b"" if aad_value is None else
                                 aad_value if isinstance(aad_value, bytes) else
                                 str(aad_value).encode("utf-8"))
        elif envelope.associated_data is not None:
            aad = envelope.associated_data.encode("utf-8")
        else:
            aad = None
        try:
            aes.decrypt(packed[0], packed[1], aad)
        except (InvalidTag, ValueError):
            continue
        decrypted += 1
    return Tally(len(rows), decrypted, plaintext)


def _query(spec: CiphertextCheck) -> str:
    column = quote_ident(spec.column)
    aad_column = spec.envelope.associated_data_column
    aad = f", {quote_ident(aad_column)}" if aad_column else ", NULL"
    order = " ORDER BY random()" if spec.sample == "random" else ""
    return (f"SELECT {column}{aad} FROM {quote_ident(spec.table)} "
            f"WHERE {column} IS NOT NULL{order} LIMIT {spec.sample_size}")


def objectives(spec: CiphertextCheck) -> tuple[Measurement, ...]:
    """The two configured shares: exported also when the run errors or finds nothing."""
    return (Measurement(DECRYPTS_TARGET.name, spec.min_decrypt_share),
            Measurement(PLAIN_TARGET.name, spec.max_plaintext_share))


async def run(spec: CiphertextCheck, ctx: ProbeContext) -> Outcome:
    """Sample the column and measure how much of it decrypts."""
    kept = objectives(spec)
    try:
        if spec.key is not None:
            raw_key = resolve_secret(spec.key, "key")
        else:
            assert spec.key_env is not None
            raw_key = resolve_secret(SecretRef(env=spec.key_env), "key_env")
        key = parse_key(raw_key.get_secret_value(), spec.key_encoding)
    except ProbeError as exc:
        return exc.with_measurements(kept).outcome()
    sql = _query(spec)

    async def work(con: asyncpg.Connection) -> list[tuple[object, object]]:
        async with read_only(con, spec.statement_timeout):
            return [(row[0], row[1]) for row in await con.fetch(sql)]

    try:
        rows = await with_connection(ctx, spec.connection, work)
    except ProbeError as exc:
        return exc.with_measurements(kept).outcome()
    where = f"{spec.table}.{spec.column}"
    if not rows:
        return Outcome.skipped(f"{where}: no values to sample",
                               (Measurement(SAMPLED.name, 0), *kept))
    tally = await ctx.run_blocking(assess, rows, key, spec.envelope)
    decrypt_share = tally.decrypted / tally.sampled
    plain_share = tally.plaintext / tally.sampled
    measurements = (
        Measurement(SAMPLED.name, tally.sampled),
        Measurement(DECRYPTS.name, decrypt_share),
        Measurement(PLAIN.name, plain_share),
        *kept,
    )
    text = (f"{where}: {tally.decrypted}/{tally.sampled} decrypt, "
            f"{tally.plaintext} look like plaintext")
    if decrypt_share < spec.min_decrypt_share or plain_share > spec.max_plaintext_share:
        return Outcome.failed(text, measurements)
    return Outcome.passed(text, measurements)


KIND: ProbeKind[Any] = ProbeKind(
    name="ciphertext",
    spec=CiphertextCheck,
    run=run,
    summary="Sampled column values decrypt as AES-256-GCM with the key; plaintext share.",
    metrics=(SAMPLED, DECRYPTS, DECRYPTS_TARGET, PLAIN, PLAIN_TARGET),
)
