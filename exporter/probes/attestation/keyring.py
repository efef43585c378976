"""The keyring: which public key may sign for which role, and who holds it.

A YAML (or JSON) file::

    keys:
      - id: alice-2026
        name: Alice Example
        roles: [Engineering Lead]
        public_key: 6h0G...=        # base64 raw 32-byte Ed25519 key, or a PEM block

Only public keys are read; nothing here is secret, and no key material is ever
exported (the board shows `name`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exporter.transport.files import read_bounded

MAX_KEYRING_BYTES = 1024 * 1024


class KeyringError(ValueError):
    """The keyring file cannot be used (the message names the entry and the problem)."""


@dataclass(frozen=True, slots=True)
class Signer:
    """One keyring entry."""

    key_id: str
    name: str
    roles: frozenset[str]
    public_key: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class Keyring:
    """Signers by key id."""

    signers: dict[str, Signer]

    def get(self, key_id: str) -> Signer | None:
        return self.signers.get(key_id)

    def roles(self) -> frozenset[str]:
        """Every role some key may sign for."""
        return frozenset(role for signer in self.signers.values() for role in signer.roles)


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def default_key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint usable as key id: `ed25519:` + 16 hex of sha256(raw key)."""
    return "ed25519:" + hashlib.sha256(raw_public_bytes(key)).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from a PEM block or base64 of the raw 32 bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise KeyringError("public_key is not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyringError("public_key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("public_key is neither PEM nor base64") from None
    if len(raw) != 32:
        raise KeyringError(f"public_key is {len(raw)} bytes; a raw Ed25519 key is 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def parse_keyring(data: object) -> Keyring:
    """Validate a parsed keyring document."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeyringError("the keyring is a mapping with a 'keys' list")
    unknown_top = sorted(set(data) - {"keys"})
    if unknown_top:
        raise KeyringError(f"unknown key(s) at the top: {', '.join(map(str, unknown_top))}")
    signers: dict[str, Signer] = {}
    for index, entry in enumerate(data["keys"]):
        where = f"keys[{index}]"
        if not isinstance(entry, dict):
            raise KeyringError(f"{where}: must be a mapping")
        unknown = sorted(set(entry) - {"id", "name", "roles", "public_key"})
        if unknown:
            raise KeyringError(f"{where}: unknown key(s): {', '.join(map(str, unknown))}")
        key_id, name, roles = entry.get("id"), entry.get("name"), entry.get("roles")
        if not isinstance(key_id, str) or not key_id:
            raise KeyringError(f"{where}.id: required string")
        if not isinstance(name, str) or not name:
            raise KeyringError(f"{where}.name: required string (the signer's display name)")
        if (not isinstance(roles, list) or not roles
                or not all(isinstance(r, str) and r for r in roles)):
            raise KeyringError(f"{where}.roles: a non-empty list of role names")
        public = entry.get("public_key")
        if not isinstance(public, str):
            raise KeyringError(f"{where}.public_key: required string")
        try:
            key = parse_public_key(public)
        except KeyringError as exc:
            raise KeyringError(f"{where}: {exc}") from None
        if key_id in signers:
            raise KeyringError(f"{where}.id: duplicate key id {key_id!r}")
        signers[key_id] = Signer(key_id, name, frozenset(roles), key)
    return Keyring(signers)


def load_keyring(path: Path) -> Keyring:
    """Read and validate a keyring file (`KeyringError` or `OSError`)."""
    raw = read_bounded(path, MAX_KEYRING_BYTES, KeyringError)
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise KeyringError("not valid UTF-8 YAML") from None
    return parse_keyring(data)
