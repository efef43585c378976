"""`readiness-exporter attest`: create keys, sign records, verify a directory.

    attest keygen --private-key alice.pem --name "Alice Example" --role "Engineering Lead"
    attest sign --private-key alice.pem --item 1.1.4 --role "Engineering Lead" \\
        --release 2.1.0 --expires 14d --dir /etc/readiness-exporter/attestations
    attest verify --keyring keyring.yaml --dir attestations --release 2.1.0

The CLI wires `add_arguments` and `run` in as the `attest` subcommand.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.model import parse_duration
from exporter.probes.attestation.keyring import (
    KeyringError,
    default_key_id,
    load_keyring,
    raw_public_bytes,
)
from exporter.probes.attestation.private_key import PrivateKeyError, load_private_key
from exporter.probes.attestation.probe import DEFAULT_DIRECTORY, DEFAULT_KEYRING
from exporter.probes.attestation.record import (
    Attestation,
    RecordError,
    format_time,
    load_record,
    record_filename,
)
from exporter.probes.attestation.verify import Verdict, describe, file_sha256, verify_record


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `keygen`, `sign` and `verify` subcommands to `parser`."""
    sub = parser.add_subparsers(dest="attest_command", metavar="{keygen,sign,verify}")
    sub.required = True

    keygen = sub.add_parser("keygen", help="create an Ed25519 key pair and print its "
                            "keyring entry")
    keygen.add_argument("--private-key", type=Path, required=True,
                        help="file to write the private key to (PEM, mode 0600; "
                        "never overwritten)")
    keygen.add_argument("--key-id", help="key id (default: ed25519:<fingerprint>)")
    keygen.add_argument("--name", required=True, help="signer's display name")
    keygen.add_argument("--role", action="append", required=True, dest="roles",
                        help="role the key may sign for (repeatable)")
    keygen.add_argument("--passphrase-env", metavar="NAME",
                        help="encrypt the private key with the passphrase in this "
                        "environment variable")

    sign = sub.add_parser("sign", help="sign an attestation record")
    sign.add_argument("--private-key", type=Path, required=True, help="PEM private key")
    sign.add_argument("--passphrase-env", metavar="NAME",
                      help="environment variable holding the key's passphrase")
    sign.add_argument("--key-id", help="key id in the keyring (default: ed25519:<fingerprint>)")
    sign.add_argument("--item", required=True, help="checklist item / check id, e.g. 1.1.4")
    sign.add_argument("--role", required=True, help="role signing, e.g. 'Security Lead'")
    sign.add_argument("--release", required=True, help="release the statement is about")
    sign.add_argument("--file", type=Path, help="reviewed file: its sha256 is signed")
    sign.add_argument("--expires", type=_duration, default=14 * 86400.0,
                      help="validity, e.g. 7d, 36h (default 14d)")
    sign.add_argument("--note", help="free text kept in the record (not exported)")
    where = sign.add_mutually_exclusive_group()
    where.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY,
                       help=f"directory to write the record to (default {DEFAULT_DIRECTORY})")
    where.add_argument("--output", type=Path, help="exact file to write ('-' for stdout)")

    verify = sub.add_parser("verify", help="verify every record in a directory")
    verify.add_argument("--keyring", type=Path, default=DEFAULT_KEYRING)
    verify.add_argument("--dir", type=Path, default=DEFAULT_DIRECTORY)
    verify.add_argument("--release", help="also require this release")
    verify.add_argument("--item", help="only records for this item")


def _load_private_key(path: Path, passphrase_env: str | None) -> Ed25519PrivateKey:
    try:
        return load_private_key(path, passphrase_env, "--private-key")
    except PrivateKeyError as exc:
        raise CliError(str(exc)) from None


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if args.passphrase_env:
        if args.passphrase_env not in os.environ:
            raise CliError(f"environment variable {args.passphrase_env} is not set")
        encryption = serialization.BestAvailableEncryption(
            os.environ[args.passphrase_env].encode("utf-8"))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    try:
        fd = os.open(args.private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{args.private_key} exists; not overwriting a key") from None
    except OSError as exc:
        raise CliError(f"{args.private_key}: cannot be created: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = key.public_key()
    entry = {
        "id": args.key_id or default_key_id(public),
        "name": args.name,
        "roles": list(args.roles),
        "public_key": base64.b64encode(raw_public_bytes(public)).decode("ascii"),
    }
    print(f"# private key written to {args.private_key}; add this entry under `keys:` "
          "in the keyring")
    print(yaml.safe_dump([entry], sort_keys=False, allow_unicode=True), end="")
    return 0


def _sign(args: argparse.Namespace) -> int:
    key = _load_private_key(args.private_key, args.passphrase_env)
    digest: str | None = None
    if args.file is not None:
        try:
            digest = file_sha256(args.file)
        except OSError as exc:
            raise CliError(f"{args.file}: cannot be read: {exc.strerror}") from None
    now = time.time()
    record = Attestation(
        item=args.item,
        role=args.role,
        release=args.release,
        key_id=args.key_id or default_key_id(key.public_key()),
        signed_at=format_time(now),
        expires_at=format_time(now + args.expires),
        file_sha256=digest,
        file=str(args.file) if args.file is not None else None,
        note=args.note,
    ).sign(key)
    text = record.to_json()
    if args.output is not None and str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    target = args.output or args.dir / record_filename(record)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise CliError(f"{target} exists; not overwriting a record") from None
    except OSError as exc:
        raise CliError(f"{target}: cannot be written: {exc.strerror}") from None
    print(f"{target}: {record.item} / {record.role} / release {record.release}, "
          f"expires {record.expires_at}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        keyring = load_keyring(args.keyring)
    except (OSError, KeyringError) as exc:
        raise CliError(f"keyring {args.keyring}: {exc}") from None
    if not args.dir.is_dir():
        raise CliError(f"{args.dir}: not a directory")
    now = time.time()
    bad = 0
    seen = 0
    for path in sorted(args.dir.glob("*.json")):
        try:
            record = load_record(path)
        except (RecordError, OSError) as exc:
            print(f"{path.name}: unreadable: {exc}")
            bad += 1
            continue
        if args.item and record.item != args.item:
            continue
        seen += 1
        digest: str | None = None
        if record.file_sha256 is not None and record.file is not None:
            try:
                digest = file_sha256(Path(record.file))
            except OSError:
                digest = "missing"
        checked = verify_record(record, keyring, now=now, release=args.release,
                                file_digest=digest)
        who = checked.signer.name if checked.signer is not None else record.key_id
        print(f"{path.name}: {record.item} / {record.role} / {record.release} by {who}: "
              f"{describe(checked.verdict)} (expires {record.expires_at})")
        if checked.verdict is not Verdict.VALID:
            bad += 1
    print(f"{seen} record(s), {bad} problem(s)")
    return 0 if bad == 0 else 1


def run(args: argparse.Namespace) -> int:
    """Run the `attest` subcommand chosen in `args`; returns the exit status."""
    handlers = {"keygen": _keygen, "sign": _sign, "verify": _verify}
    try:
        return handlers[args.attest_command](args)
    except CliError as exc:
        print(f"readiness-exporter attest: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m exporter.probes.attestation.cli`)."""
    parser = argparse.ArgumentParser(prog="readiness-exporter attest")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
