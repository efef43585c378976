"""`attestation` check kind: a valid, unexpired signature per required role.

Used for items no machine can observe (code review, code freeze, sign-off). Each
required role needs at least one record for the check's subject that verifies with a
keyring key allowed for that role, has not expired, names the release being deployed
and, when a reviewed file is configured, carries the file's current sha256.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
from pydantic import Field, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.attestation.keyring import Keyring, KeyringError, load_keyring
from exporter.probes.attestation.record import (
    Attestation,
    RecordError,
    format_time,
    load_record,
)
from exporter.probes.attestation.verify import (
    Checked,
    Verdict,
    describe,
    file_sha256,
    verify_record,
)
from exporter.probes.config_value import MISSING, lookup

DEFAULT_DIRECTORY = Path("/etc/readiness-exporter/attestations")
DEFAULT_KEYRING = Path("/etc/readiness-exporter/keyring.yaml")
MAX_RECORD_FILES = 20_000


class AttestationCheck(CheckSpec):
    """`kind: attestation` options."""

    kind: Literal["attestation"]
    roles: list[str] = Field(min_length=1, description="roles that must each have signed")
    subject: str | None = Field(
        default=None, description="item id the records must carry (default: the check id)"
    )
    directory: Path = Field(default=DEFAULT_DIRECTORY, description="directory of *.json records")
    keyring: Path = Field(default=DEFAULT_KEYRING, description="keyring file (public keys)")
    bind_release: bool = Field(
        default=True, description="records must name the release being deployed"
    )
    release: str | None = Field(
        default=None, min_length=1, description="release to bind to (default: settings.release)"
    )
    release_url: str | None = Field(
        default=None, pattern=r"^https?://", description="application endpoint serving the "
        "deployed release as JSON (used when `release` is not set)"
    )
    release_json_path: str = Field(
        default="version", min_length=1, description="dotted path of the release in that JSON"
    )
    file: Path | None = Field(
        default=None, description="reviewed file: records must carry its current sha256"
    )

    @model_validator(mode="after")
    def _distinct_roles(self) -> AttestationCheck:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("roles: each role is listed once")
        return self

    @property
    def subject_id(self) -> str:
        return self.subject or self.id


VALID = MetricFamily(
    "readiness_attestation_valid",
    "1 when the role has a valid, unexpired signature for this check's item and release.",
    ("role",),
)
EXPIRY = MetricFamily(
    "readiness_attestation_expiry_timestamp_seconds",
    "Expiry of the role's best record (the valid one, else the newest seen).",
    ("role",),
)
SIGNED = MetricFamily(
    "readiness_attestation_signed_timestamp_seconds",
    "Signing time of the role's best record (the valid one, else the newest seen).",
    ("role",),
)
SIGNER = MetricFamily(
    "readiness_attestation_signer_info",
    "Display name (from the keyring) of who signed the role's valid record; value 1.",
    ("role", "signer"),
)
RECORDS = MetricFamily(
    "readiness_attestation_records",
    "Records found for this check's item and roles, by verification verdict.",
    ("verdict",),
)
METRICS = (VALID, EXPIRY, SIGNED, SIGNER, RECORDS)


@dataclass(frozen=True, slots=True)
class _Scan:
    checked: list[Checked]
    unreadable: int


class _Missing(Exception):
    """An input the check needs does not exist (the check fails, not errors)."""


def _read(spec: AttestationCheck, now: float, release: str | None) -> _Scan:
    try:
        keyring: Keyring = load_keyring(spec.keyring)
    except FileNotFoundError:
        raise KeyringError(f"keyring {spec.keyring} does not exist") from None
    except OSError as exc:
        raise KeyringError(f"keyring {spec.keyring} cannot be read: {exc.strerror}") from None
    except KeyringError as exc:
        raise KeyringError(f"keyring {spec.keyring}: {exc}") from None
    digest: str | None = None
    if spec.file is not None:
        try:
            digest = file_sha256(spec.file)
        except FileNotFoundError:
            raise _Missing(f"reviewed file {spec.file} does not exist") from None
        except OSError as exc:
            raise _Missing(f"reviewed file {spec.file} cannot be read: {exc.strerror}") from None
    if not spec.directory.is_dir():
        raise _Missing(f"attestation directory {spec.directory} does not exist")
    paths = sorted(spec.directory.glob("*.json"))[:MAX_RECORD_FILES]
    wanted = set(spec.roles)
    checked: list[Checked] = []
    unreadable = 0
    for path in paths:
        try:
            record = load_record(path)
        except (RecordError, OSError):
            unreadable += 1
            continue
        if record.item != spec.subject_id or record.role not in wanted:
            continue
        checked.append(verify_record(record, keyring, now=now, release=release,
                                     file_digest=digest))
    return _Scan(checked, unreadable)


def _best(records: list[Checked]) -> Checked | None:
    """The valid record expiring last, else the newest record of any verdict."""
    valid = [c for c in records if c.verdict is Verdict.VALID]
    if valid:
        return max(valid, key=lambda c: c.record.expires_epoch)
    if records:
        return max(records, key=lambda c: (c.record.signed_epoch, c.record.expires_epoch))
    return None


async def _release_from_url(url: str, path: str, ctx: ProbeContext) -> str:
    try:
        async with ctx.http.get(url, headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise ProbeError(Reason.PROTOCOL, f"release endpoint answered HTTP "
                                 f"{response.status}")
            body = await response.read()
    except aiohttp.ClientConnectorError:
        raise ProbeError(Reason.CONNECT, "release endpoint refused the connection") from None
    except TimeoutError:
        raise ProbeError(Reason.TIMEOUT, "release endpoint timed out") from None
    except aiohttp.ClientError as exc:
        raise ProbeError(Reason.PROTOCOL, f"release endpoint: {type(exc).__name__}") from None
    try:
        value = lookup(json.loads(body), path)
    except (ValueError, UnicodeDecodeError):
        raise ProbeError(Reason.PROTOCOL, "release endpoint did not answer JSON") from None
    if value is MISSING:
        raise ProbeError(Reason.PROTOCOL, f"release endpoint JSON has no {path!r}")
    if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
        raise ProbeError(Reason.PROTOCOL, f"release endpoint {path!r} is not a version")
    return str(value)


async def _release(spec: AttestationCheck, ctx: ProbeContext) -> str | None:
    if not spec.bind_release:
        return None
    if spec.release is not None:
        return spec.release
    if spec.release_url is not None:
        return await _release_from_url(spec.release_url, spec.release_json_path, ctx)
    if ctx.release:
        return ctx.release
    raise ProbeError(Reason.CONFIG, "release being deployed is unknown: set "
                     "settings.release, or release / release_url on the check")


async def run(spec: AttestationCheck, ctx: ProbeContext) -> Outcome:
    """Verify the records of every required role."""
    try:
        release = await _release(spec, ctx)
    except ProbeError as exc:
        return exc.outcome()
    now = ctx.now()
    try:
        scan = await ctx.run_blocking(_read, spec, now, release)
    except KeyringError as exc:
        return Outcome.errored(Reason.CONFIG, str(exc))
    except _Missing as exc:
        zero = tuple(Measurement(VALID.name, 0.0, {"role": r}) for r in spec.roles)
        return Outcome.failed(str(exc), zero)

    measurements: list[Measurement] = []
    verdicts = Counter(c.verdict for c in scan.checked)
    for verdict in Verdict:
        measurements.append(Measurement(RECORDS.name, float(verdicts[verdict]),
                                        {"verdict": verdict.value}))
    passed: list[str] = []
    missing: list[str] = []
    for role in spec.roles:
        best = _best([c for c in scan.checked if c.record.role == role])
        ok = best is not None and best.verdict is Verdict.VALID
        measurements.append(Measurement(VALID.name, 1.0 if ok else 0.0, {"role": role}))
        if best is None:
            missing.append(f"{role}: no record")
            continue
        record: Attestation = best.record
        measurements.append(Measurement(EXPIRY.name, record.expires_epoch, {"role": role}))
        measurements.append(Measurement(SIGNED.name, record.signed_epoch, {"role": role}))
        who = best.signer.name if best.signer is not None else f"key {record.key_id}"
        if ok and best.signer is not None:
            measurements.append(Measurement(SIGNER.name, 1.0,
                                            {"role": role, "signer": best.signer.name}))
            passed.append(f"{role}: {who} until {format_time(record.expires_epoch)}")
        else:
            detail = describe(best.verdict)
            if best.verdict is Verdict.WRONG_RELEASE:
                detail += f" ({record.release}, deploying {release})"
            missing.append(f"{role}: {detail} ({who}, signed {record.signed_at})")
    note = f"; {scan.unreadable} unreadable record file(s) ignored" if scan.unreadable else ""
    bound = f" for release {release}" if release is not None else ""
    if missing:
        return Outcome.failed("; ".join(missing) + note, tuple(measurements))
    return Outcome.passed(f"signed{bound}: " + "; ".join(passed) + note, tuple(measurements))


KIND = ProbeKind(
    name="attestation",
    spec=AttestationCheck,
    run=run,
    summary="A valid, unexpired Ed25519-signed record per required role, bound to the "
    "release (and to a reviewed file's sha256).",
    metrics=METRICS,
)

__all__ = ["KIND", "AttestationCheck"]
