"""Verification of records against a keyring, a release and a reviewed file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from exporter.probes.attestation.keyring import Keyring, Signer
from exporter.probes.attestation.record import Attestation, RecordError


class Verdict(StrEnum):
    """Why a record is, or is not, accepted (bounded: usable as a label)."""

    VALID = "valid"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_RELEASE = "wrong_release"
    NO_FILE_DIGEST = "no_file_digest"
    FILE_CHANGED = "file_changed"


_DESCRIPTIONS = {
    Verdict.VALID: "valid",
    Verdict.UNKNOWN_KEY: "signed by a key not in the keyring",
    Verdict.BAD_SIGNATURE: "signature does not verify",
    Verdict.ROLE_NOT_ALLOWED: "key is not allowed to sign for this role",
    Verdict.NOT_YET_VALID: "signed in the future",
    Verdict.EXPIRED: "expired",
    Verdict.WRONG_RELEASE: "signed for another release",
    Verdict.NO_FILE_DIGEST: "carries no file digest",
    Verdict.FILE_CHANGED: "file changed since the review",
}

CLOCK_SKEW_SECONDS = 300.0


def describe(verdict: Verdict) -> str:
    """A short human phrase for a verdict."""
    return _DESCRIPTIONS[verdict]


@dataclass(frozen=True, slots=True)
class Checked:
    """A record with its verdict and, when the key is known, its signer."""

    record: Attestation
    verdict: Verdict
    signer: Signer | None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_record(
    record: Attestation,
    keyring: Keyring,
    *,
    now: float,
    release: str | None,
    file_digest: str | None,
) -> Checked:
    """Check one record. `release`/`file_digest` None means "not bound to one".

    Order matters: authenticity first (key, signature, role), then freshness and
    binding, so a forged record is always reported as forged.
    """
    signer = keyring.get(record.key_id)
    if signer is None:
        return Checked(record, Verdict.UNKNOWN_KEY, None)
    if not record.signature_valid(signer.public_key):
        return Checked(record, Verdict.BAD_SIGNATURE, None)
    if record.role not in signer.roles:
        return Checked(record, Verdict.ROLE_NOT_ALLOWED, signer)
    try:
        signed, expires = record.signed_epoch, record.expires_epoch
    except RecordError:  # pragma: no cover - from_mapping already validated the times
        return Checked(record, Verdict.BAD_SIGNATURE, None)
    if signed > now + CLOCK_SKEW_SECONDS:
        return Checked(record, Verdict.NOT_YET_VALID, signer)
    if expires <= now:
        return Checked(record, Verdict.EXPIRED, signer)
    if release is not None and record.release != release:
        return Checked(record, Verdict.WRONG_RELEASE, signer)
    if file_digest is not None:
        if record.file_sha256 is None:
            return Checked(record, Verdict.NO_FILE_DIGEST, signer)
        if record.file_sha256 != file_digest:
            return Checked(record, Verdict.FILE_CHANGED, signer)
    return Checked(record, Verdict.VALID, signer)
