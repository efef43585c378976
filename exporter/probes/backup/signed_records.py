"""Signed drill records: a drill result written by other tooling counts only when signed.

A signed record is one JSON line: the drill fields (`scenario`, `started`, `finished`,
`success`, optional `detail`) plus `key_id` and `signature`, an Ed25519 signature over
a domain line followed by every other field as sorted-key compact JSON. The key must be
in the attestation keyring (docs/probes/attestation.md) and allowed to sign for the
configured role. Lines that are unsigned, signed by an unknown key or whose signature
does not verify are not drill results: they are counted, never used.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.model import ProbeContext, ProbeError, Reason
from exporter.probes.attestation.keyring import Keyring, KeyringError, load_keyring
from exporter.probes.backup.records import (
    DrillRecord,
    jsonl_lines,
    read_jsonl,
    record_from_mapping,
)

DOMAIN = b"readiness-exporter drill record v1\n"


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes a drill record's signature covers (every field but `signature`)."""
    body = {key: value for key, value in fields.items() if key != "signature"}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode("utf-8")


def sign_record(fields: dict[str, Any], key_id: str, key: Ed25519PrivateKey) -> str:
    """One signed JSON line for `fields` (the drill tooling's side)."""
    signed = {**fields, "key_id": key_id}
    signature = base64.b64encode(key.sign(canonical_bytes(signed))).decode("ascii")
    return json.dumps({**signed, "signature": signature}, sort_keys=True) + "\n"


def signature_valid(fields: dict[str, Any], keyring: Keyring, role: str) -> bool:
    """True when a key of `keyring` allowed to sign for `role` signed these fields."""
    key_id, signature = fields.get("key_id"), fields.get("signature")
    if not isinstance(key_id, str) or not isinstance(signature, str):
        return False
    signer = keyring.get(key_id)
    if signer is None or role not in signer.roles:
        return False
    try:
        signer.public_key.verify(base64.b64decode(signature, validate=True),
                                 canonical_bytes(fields))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def read_keyring(path: Path, option: str) -> Keyring:
    """The keyring at `path`; `ProbeError(config)` naming `option` when unusable."""
    try:
        return load_keyring(path)
    except (OSError, KeyringError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ProbeError(Reason.CONFIG, f"{option}: cannot use keyring {path}: {why}") from None


def read_signed_jsonl(path: Path, scenario: str, keyring: Keyring,
                      role: str) -> tuple[list[DrillRecord], int, int]:
    """Signed records of `scenario`, unreadable lines, and unsigned/unverified lines.

    Blocking. A missing file reads as no records.
    """
    records: list[DrillRecord] = []
    bad = unsigned = 0
    for line in jsonl_lines(path):
        try:
            fields = json.loads(line)
            record = record_from_mapping(fields)
        except ValueError:
            bad += 1
            continue
        if record.scenario != scenario:
            continue
        if not signature_valid(fields, keyring, role):
            unsigned += 1
            continue
        records.append(record)
    return records, bad, unsigned


async def read_file_records(ctx: ProbeContext, path: Path, scenario: str,
                            keyring: Path | None, role: str, option: str,
                            ) -> tuple[list[DrillRecord], int, int]:
    """Records of `scenario` in the JSON lines file `path`: with a `keyring`, only those
    signed by a key allowed for `role` (`option` names the keyring in errors).

    Returns (records, unreadable lines, unsigned or unverified lines); a missing file
    reads as no records.
    """
    if keyring is None:
        found, bad = await ctx.run_blocking(read_jsonl, path, scenario)
        return found, bad, 0
    keys = await ctx.run_blocking(read_keyring, keyring, option)
    return await ctx.run_blocking(read_signed_jsonl, path, scenario, keys, role)
