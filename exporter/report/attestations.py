"""Which signed attestations covered each `attestation` check (for the evidence report)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from exporter.model import CheckSpec
from exporter.probes.attestation.keyring import KeyringError, load_keyring
from exporter.probes.attestation.probe import MAX_RECORD_FILES, AttestationCheck
from exporter.probes.attestation.record import RecordError, load_record
from exporter.probes.attestation.verify import Verdict, file_sha256, verify_record


def covering(spec: CheckSpec, release: str | None,
             now: float | None = None) -> list[dict[str, Any]]:
    """The valid records of `spec`'s roles (role, signer, key id, times); [] when none.

    Reads the keyring and the record directory like the probe does; a missing or broken
    keyring or directory yields no attestations (the check's own result says why).
    """
    if not isinstance(spec, AttestationCheck) or not spec.enabled:
        return []
    now = time.time() if now is None else now
    bound = (spec.release or release) if spec.bind_release else None
    try:
        keyring = load_keyring(spec.keyring)
        digest = file_sha256(spec.file) if spec.file is not None else None
    except (OSError, KeyringError):
        return []
    if not spec.directory.is_dir():
        return []
    covered: list[dict[str, Any]] = []
    for path in sorted(spec.directory.glob("*.json"))[:MAX_RECORD_FILES]:
        try:
            record = load_record(path)
        except (RecordError, OSError):
            continue
        if record.item != spec.subject_id or record.role not in spec.roles:
            continue
        checked = verify_record(record, keyring, now=now, release=bound, file_digest=digest)
        if checked.verdict is not Verdict.VALID or checked.signer is None:
            continue
        covered.append({
            "role": record.role, "signer": checked.signer.name, "key_id": record.key_id,
            "release": record.release, "signed_at": record.signed_at,
            "expires_at": record.expires_at, "file_sha256": record.file_sha256,
            "record": Path(path).name,
        })
    covered.sort(key=lambda a: (a["role"], a["signed_at"]))
    return covered
