"""The evidence report of the running exporter's current state (board downloads).

Signed when `READINESS_REPORT_SIGNING_KEY` names an Ed25519 PEM private key; the key id
is `READINESS_REPORT_KEY_ID` (default: the key's fingerprint) and an encrypted key's
passphrase is read from the variable named by `READINESS_REPORT_KEY_PASSPHRASE_ENV`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.report.attestations import covering
from exporter.report.document import build
from exporter.report.signing import load_signing_key, sign

if TYPE_CHECKING:
    from exporter.daemon import Runtime

KEY_VARIABLE = "READINESS_REPORT_SIGNING_KEY"
KEY_ID_VARIABLE = "READINESS_REPORT_KEY_ID"
PASSPHRASE_VARIABLE = "READINESS_REPORT_KEY_PASSPHRASE_ENV"  # noqa: S105 - a variable name


def current_report(runtime: Runtime) -> dict[str, Any]:
    """The report of the store's current results, signed when a key is configured.

    Raises `SigningError` (naming the variable or file) when the configured key is
    unusable.
    """
    cfg = runtime.config
    now = time.time()
    release = cfg.settings.release
    document = build(cfg, list(runtime.store.states.values()), release=release, now=now,
                     blocking=[s.spec.id for s in runtime.store.blockers(now)],
                     attestations=lambda spec: covering(spec, release, now))
    key_path = os.environ.get(KEY_VARIABLE)
    if not key_path:
        return document
    key = load_signing_key(Path(key_path), os.environ.get(PASSPHRASE_VARIABLE) or None)
    return sign(document, key, os.environ.get(KEY_ID_VARIABLE) or None)
