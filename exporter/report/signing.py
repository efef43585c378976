"""Ed25519 signatures over evidence reports, with the attestation keyring's keys.

The signature covers `DOMAIN` followed by the document without its `signature` field,
as JSON with sorted keys, no whitespace, UTF-8: the same canonical form attestation
records use. The signing key is an Ed25519 PEM private key (`readiness-exporter attest
keygen` makes one); verification looks its key id up in a keyring file.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.probes.attestation.keyring import Keyring, Signer, default_key_id
from exporter.probes.attestation.private_key import PrivateKeyError, load_private_key

DOMAIN = b"readiness-exporter evidence report v1\n"
ALGORITHM = "ed25519"


class SigningError(Exception):
    """The signing key cannot be used (the message names the file or variable)."""


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The bytes a report signature covers."""
    body = {k: v for k, v in document.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DOMAIN + text.encode("utf-8")


def load_signing_key(path: Path, passphrase_env: str | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file, decrypted with the passphrase in
    `passphrase_env` when given."""
    try:
        return load_private_key(path, passphrase_env, "signing key")
    except PrivateKeyError as exc:
        raise SigningError(str(exc)) from None


def sign(document: dict[str, Any], key: Ed25519PrivateKey,
         key_id: str | None = None) -> dict[str, Any]:
    """A copy of `document` carrying a `signature` block."""
    key_id = key_id or default_key_id(key.public_key())
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    value = key.sign(canonical_bytes(unsigned))
    return {**unsigned, "signature": {"algorithm": ALGORITHM, "key_id": key_id,
                                      "value": base64.b64encode(value).decode("ascii")}}


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of verifying a report."""

    valid: bool
    problem: str
    signer: Signer | None = None


def verify(document: object, keyring: Keyring) -> Verification:
    """Check a parsed report's signature against `keyring`."""
    if not isinstance(document, dict):
        return Verification(False, "not a report: the JSON is not an object")
    block = document.get("signature")
    if not isinstance(block, dict):
        return Verification(False, "the report is not signed (no signature block)")
    if block.get("algorithm") != ALGORITHM:
        return Verification(False, f"unsupported signature algorithm {block.get('algorithm')!r}")
    key_id = block.get("key_id")
    signer = keyring.get(key_id) if isinstance(key_id, str) else None
    if signer is None:
        return Verification(False, f"signed by key {key_id!r}, which is not in the keyring")
    try:
        raw = base64.b64decode(str(block.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        return Verification(False, "the signature is not base64")
    try:
        signer.public_key.verify(raw, canonical_bytes(document))
    except InvalidSignature:
        return Verification(False, "the signature does not verify: the report was changed "
                            "after signing, or signed by another key", signer)
    return Verification(True, "valid", signer)
