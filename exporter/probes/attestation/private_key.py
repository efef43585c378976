"""Reading an Ed25519 private key from a PEM file (attestation signing, report signing)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class PrivateKeyError(Exception):
    """The key cannot be used; the message names the file or variable to change."""


def load_private_key(path: Path, passphrase_env: str | None,
                     what: str = "private key") -> Ed25519PrivateKey:
    """The Ed25519 key in the PEM file `path`, decrypted with the passphrase in the
    environment variable `passphrase_env` when given. Messages call the file `what`."""
    password: bytes | None = None
    if passphrase_env:
        if passphrase_env not in os.environ:
            raise PrivateKeyError(f"environment variable {passphrase_env} (the {what}'s "
                                  "passphrase) is not set")
        password = os.environ[passphrase_env].encode("utf-8")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PrivateKeyError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        raise PrivateKeyError(f"{what} {path} is not a readable PEM private key (wrong or "
                              "missing passphrase?)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PrivateKeyError(f"{what} {path} is not an Ed25519 key")
    return key
