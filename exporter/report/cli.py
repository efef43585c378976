"""`readiness-exporter report`: run the gate and write the signed evidence bundle;
`report verify FILE`: check a report's signature.

    readiness-exporter report --release 2.1.0 --config.file readiness.yaml \\
        --output evidence/ --signing-key release-signer.pem
    readiness-exporter report verify evidence/readiness-report-2.1.0.json \\
        --keyring /etc/readiness-exporter/keyring.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from exporter.probes.attestation.keyring import KeyringError, load_keyring
from exporter.probes.attestation.probe import DEFAULT_KEYRING
from exporter.report.attestations import covering
from exporter.report.document import build
from exporter.report.render import render_html
from exporter.report.signing import SigningError, load_signing_key, sign, verify
from exporter.transport.files import read_bounded

EXIT_OK, EXIT_NO_GO, EXIT_USAGE = 0, 1, 2
MAX_REPORT_BYTES = 64 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `report` options and its `verify` subcommand."""
    parser.add_argument("--release", help="release the evidence is for (required; also "
                        "the release attestations must name)")
    parser.add_argument("--config.file", dest="config_file", type=Path,
                        help="YAML configuration (default: the embedded default)")
    parser.add_argument("--output", type=Path, help="directory to write "
                        "readiness-report-RELEASE.json and .html to (required)")
    parser.add_argument("--signing-key", type=Path, help="Ed25519 PEM private key "
                        "(`attest keygen` makes one); without it the report is unsigned")
    parser.add_argument("--key-id", help="key id in the keyring (default: "
                        "ed25519:<fingerprint>)")
    parser.add_argument("--passphrase-env", metavar="NAME",
                        help="environment variable holding the signing key's passphrase")
    sub = parser.add_subparsers(dest="report_command", metavar="{verify}")
    check = sub.add_parser("verify", help="verify a report's signature; exit 1 if invalid")
    check.add_argument("file", type=Path, help="the report's JSON file")
    check.add_argument("--keyring", type=Path, default=DEFAULT_KEYRING,
                       help=f"keyring file, or a directory holding keyring.yaml "
                       f"(default {DEFAULT_KEYRING})")


def _fail(message: str) -> int:
    print(f"readiness-exporter report: {message}", file=sys.stderr)
    return EXIT_USAGE


def _generate(args: argparse.Namespace) -> int:
    from exporter import cli

    if not args.release:
        return _fail("--release is required (the release this evidence is for)")
    if args.output is None:
        return _fail("--output DIR is required")
    if not re.fullmatch(r"[\w.+-]{1,100}", args.release):
        return _fail("--release: letters, digits, '.', '_', '+' and '-' only")
    key = None
    if args.signing_key is not None:
        try:
            key = load_signing_key(args.signing_key, args.passphrase_env)
        except SigningError as exc:
            return _fail(f"--signing-key: {exc}")
    loaded = cli.load_config(args.config_file)
    if loaded is None:
        return EXIT_USAGE
    cfg = loaded.model_copy(update={
        "settings": loaded.settings.model_copy(update={"release": args.release})})
    store = asyncio.run(cli.run_once(cfg, cfg.checks))
    now = time.time()
    document: dict[str, Any] = build(
        cfg, store.states.values(), release=args.release, now=now,
        blocking=[s.spec.id for s in store.blockers(now)],
        attestations=lambda spec: covering(spec, args.release, now))
    if key is not None:
        document = sign(document, key, args.key_id)
    json_path = args.output / f"readiness-report-{args.release}.json"
    html_path = args.output / f"readiness-report-{args.release}.html"
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        json_path.write_text(
            json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8")
        html_path.write_text(render_html(document), encoding="utf-8")
    except OSError as exc:
        return _fail(f"--output {args.output}: cannot write: {exc.strerror}")
    verdict = "GO" if document["go_live"] else "NO-GO"
    signed = f"signed by key {document['signature']['key_id']}" if key else "unsigned"
    print(f"{verdict}: release {args.release}, {len(document['checks'])} checks; "
          f"{json_path} ({signed}) and {html_path} written")
    # the `check` gate, and NO-GO also when a critical check could not be verified
    return max(cli.gate(store), EXIT_OK if document["go_live"] else EXIT_NO_GO)


def _verify(args: argparse.Namespace) -> int:
    keyring_path: Path = args.keyring
    if keyring_path.is_dir():
        keyring_path = keyring_path / "keyring.yaml"
    try:
        keyring = load_keyring(keyring_path)
    except (OSError, KeyringError) as exc:
        return _fail(f"--keyring {keyring_path}: {getattr(exc, 'strerror', None) or exc}")
    try:
        document = json.loads(read_bounded(args.file, MAX_REPORT_BYTES).decode("utf-8"))
    except OSError as exc:
        return _fail(f"{args.file}: cannot be read: {exc.strerror}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        print(f"{args.file}: INVALID: not a JSON report")
        return EXIT_NO_GO
    except ValueError as exc:  # not a regular file, or larger than MAX_REPORT_BYTES
        return _fail(f"{args.file}: {exc}")
    result = verify(document, keyring)
    if not result.valid:
        print(f"{args.file}: INVALID: {result.problem}")
        return EXIT_NO_GO
    assert result.signer is not None
    print(f"{args.file}: valid signature by {result.signer.name} "
          f"(key {result.signer.key_id}); release {document.get('release')}, "
          f"{'GO' if document.get('go_live') else 'NO-GO'}, generated "
          f"{document.get('generated_at')}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run `report` or `report verify`; returns the exit status."""
    if args.report_command == "verify":
        return _verify(args)
    return _generate(args)
