"""The evidence report as a JSON-ready document (what is signed)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from exporter import __version__
from exporter.config import Config
from exporter.model import CheckSpec
from exporter.results import sorted_states
from exporter.store import CheckState

FORMAT = "readiness-exporter/evidence-report"
FORMAT_VERSION = 1

Attestations = Callable[[CheckSpec], list[dict[str, Any]]]


def iso(epoch: float | None) -> str | None:
    """RFC 3339 UTC with second precision."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_config(cfg: Config) -> bytes:
    """The merged, validated configuration as canonical JSON (sorted keys, compact).

    Secret references appear as their reference (`{"env": "NAME"}`), never as a value.
    """
    document = {
        "settings": cfg.settings.model_dump(mode="json"),
        "connections": {name: conn.model_dump(mode="json")
                        for name, conn in sorted(cfg.connections.items())},
        "checks": [spec.model_dump(mode="json") for spec in cfg.checks],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def config_digest(cfg: Config) -> str:
    """sha256 (hex) of `canonical_config`."""
    return hashlib.sha256(canonical_config(cfg)).hexdigest()


def _leaves(value: object, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _leaves(inner, f"{path}[{index}]")
    else:
        yield path, value


_SENSITIVE_NAME = re.compile(r"authorization|cookie|token|password|passwd|secret|api[-_]?key",
                             re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
REDACTED = "<redacted>"


def _redact(value: object, name: str = "") -> Any:
    if isinstance(value, dict):
        return {key: _redact(inner, str(key)) for key, inner in value.items()}
    if isinstance(value, list):
        return [_redact(inner, name) for inner in value]
    if isinstance(value, str):
        if _SENSITIVE_NAME.search(name):
            return REDACTED
        return _URL_USERINFO.sub(REDACTED + "@", value)
    return value


def public_options(spec: CheckSpec) -> dict[str, Any]:
    """The kind's options of a check, safe to show: secret references stay references
    (`{"env": "NAME"}`); literal strings under a credential-like name and credentials
    in URLs are replaced by `<redacted>` (the loader rejects most of them already)."""
    options = spec.model_dump(mode="json", exclude=set(CheckSpec.model_fields))
    return {key: _redact(value, key) for key, value in options.items()}


def thresholds(spec: CheckSpec) -> dict[str, Any]:
    """The numeric options of a check (limits, ages, counts), by option path."""
    options = public_options(spec)
    return {path: value for path, value in _leaves(options, "")
            if isinstance(value, int | float) and not isinstance(value, bool)}


def check_entry(state: CheckState, attestations: Attestations) -> dict[str, Any]:
    """One check of the report."""
    spec, outcome = state.spec, state.outcome
    return {
        "id": spec.id, "item": spec.item_id, "section": spec.section, "title": spec.title,
        "severity": spec.severity.value, "kind": spec.kind, "enabled": spec.enabled,
        "disabled_reason": spec.disabled_reason if not spec.enabled else None,
        "status": outcome.status.value if outcome else "pending",
        "reason": outcome.reason.value if outcome and outcome.reason else None,
        "message": outcome.message if outcome else "not run",
        "finished_at": iso(state.last_run),
        "duration_seconds": round(state.duration, 6) if state.duration is not None else None,
        "observed": [{"metric": m.family, "labels": dict(sorted(m.labels.items())),
                      "value": m.value} for m in (outcome.measurements if outcome else ())],
        "thresholds": thresholds(spec),
        "options": public_options(spec),
        "attestations": attestations(spec),
    }


def build(cfg: Config, states: Iterable[CheckState], *, release: str | None, now: float,
          blocking: list[str], attestations: Attestations) -> dict[str, Any]:
    """The whole report document (unsigned). `blocking`: the enabled critical checks
    that do not pass with a fresh result (`Store.blockers`); none means GO."""
    ordered = sorted_states(states)
    checks = [check_entry(s, attestations) for s in ordered]
    problems = [c for c in checks if c["enabled"] and c["status"] in ("fail", "error")]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "release": release, "generated_at": iso(now), "exporter_version": __version__,
        "configuration": {"source": cfg.source, "sha256": config_digest(cfg)},
        "go_live": not blocking, "blocking": sorted(blocking),
        "counts": {
            "status": dict(sorted(Counter(c["status"] for c in checks).items())),
            "failing_by_severity": dict(sorted(Counter(c["severity"]
                                                       for c in problems).items())),
            "checks": len(checks),
            "attested": sum(1 for c in checks if c["attestations"]),
        },
        "checks": checks,
    }

