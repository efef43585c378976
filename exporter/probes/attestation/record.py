"""The attestation record: fields, canonical encoding, Ed25519 signing and files.

A record is a small JSON file. The signature covers a canonical encoding of every
other field: a fixed domain-separation line followed by the fields as sorted-key
compact JSON (UTF-8), so the same record always yields the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from exporter.transport.files import read_bounded

FORMAT_VERSION = 1
DOMAIN = b"readiness-exporter attestation v1\n"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_RECORD_BYTES = 64 * 1024


class RecordError(ValueError):
    """A record file is malformed (the message names the problem, never key material)."""


def format_time(epoch: float) -> str:
    """RFC 3339 UTC time with second precision, as stored in records."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> float:
    """Seconds since the epoch of a record time (`2026-01-31T12:00:00Z`)."""
    if not _TIME_RE.match(text):
        raise RecordError(f"time {text!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise RecordError(f"time {text!r} is not a valid date") from None


@dataclass(frozen=True, slots=True)
class Attestation:
    """One signed statement: `role` attests `item` for `release` until `expires_at`."""

    item: str
    role: str
    release: str
    key_id: str
    signed_at: str
    expires_at: str
    file_sha256: str | None = None
    file: str | None = None
    note: str | None = None
    signature: str = ""
    version: int = FORMAT_VERSION

    def unsigned_fields(self) -> dict[str, Any]:
        """Every field except the signature (what the signature covers)."""
        fields = asdict(self)
        del fields["signature"]
        return fields

    def canonical_bytes(self) -> bytes:
        """The exact bytes that are signed and verified."""
        body = json.dumps(self.unsigned_fields(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        return DOMAIN + body.encode("utf-8")

    @property
    def signed_epoch(self) -> float:
        return parse_time(self.signed_at)

    @property
    def expires_epoch(self) -> float:
        return parse_time(self.expires_at)

    def sign(self, key: Ed25519PrivateKey) -> Attestation:
        """A copy carrying an Ed25519 signature over `canonical_bytes()`."""
        signature = key.sign(self.canonical_bytes())
        return replace(self, signature=base64.b64encode(signature).decode("ascii"))

    def signature_valid(self, key: Ed25519PublicKey) -> bool:
        """True when the signature verifies with `key`."""
        try:
            raw = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        try:
            key.verify(raw, self.canonical_bytes())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> str:
        """The record file's text (readable, stable key order)."""
        return json.dumps(asdict(self), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_mapping(cls, data: object) -> Attestation:
        """Validate a parsed JSON object into a record (`RecordError` when malformed)."""
        if not isinstance(data, dict):
            raise RecordError("a record is a JSON object")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise RecordError(f"unsupported record version {version!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecordError(f"unknown field(s): {', '.join(unknown)}")
        for name in ("item", "role", "release", "key_id", "signed_at", "expires_at",
                     "signature"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise RecordError(f"field {name!r} must be a non-empty string")
        for name in ("file_sha256", "file", "note"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise RecordError(f"field {name!r} must be a string or null")
        digest = data.get("file_sha256")
        if digest is not None and not _SHA256_RE.match(digest):
            raise RecordError("field 'file_sha256' must be 64 lowercase hex digits")
        record = cls(**data)
        parse_time(record.signed_at)
        parse_time(record.expires_at)
        return record


def load_record(path: Path) -> Attestation:
    """Read one record file (`RecordError` or `OSError` when it cannot be used)."""
    raw = read_bounded(path, MAX_RECORD_BYTES, RecordError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    return Attestation.from_mapping(data)


def record_filename(record: Attestation) -> str:
    """A descriptive, filesystem-safe file name for a record."""
    parts = [record.item, record.role, record.release, record.signed_at, record.key_id]
    slug = "--".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts)
    return f"{slug}.json"
