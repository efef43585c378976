"""`readiness-exporter explain ID`: one check after includes and overrides, and where each
of its values came from (a preset file, the user's file, `defaults:`, or a default)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter import config, registry
from exporter.checklist import section_title
from exporter.config import Config
from exporter.model import CheckSpec

# Probe kinds documented on a page not named after their module family.
DOCS_BY_FAMILY = {"redis_probe": "redis", "prometheus_query": "prometheus_query"}
CORE_KINDS_DOC = "docs/configuration.md"
CORE_FAMILIES = {"file", "config_value"}


def docs_page(kind: str) -> str:
    """The documentation page of a probe kind, relative to the project root."""
    module = registry.PROBE_KINDS[kind].partition(":")[0]
    family = module.split(".")[2]
    if family in CORE_FAMILIES:
        return CORE_KINDS_DOC
    return f"docs/probes/{DOCS_BY_FAMILY.get(family, family)}.md"


@dataclass
class Provenance:
    """Which documents set each key of each check and of `defaults:`, in merge order."""

    checks: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    defaults: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def record(self, data: dict[str, Any], origin: str) -> None:
        """Note what one document (after its own includes) sets."""
        for entry in data.get("checks") or []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                for key in entry:
                    self.checks[entry["id"]][key].append(origin)
        defaults = data.get("defaults")
        if isinstance(defaults, dict):
            for key in defaults:
                self.defaults[key].append(origin)


def _walk(data: dict[str, Any], origin: str, base_dir: Path | None,
          provenance: Provenance) -> None:
    """Follow `include:` as the loader does (includes first, then the document itself)."""
    includes = data.get("include") or []
    for ref in [includes] if isinstance(includes, str) else includes:
        if not isinstance(ref, str):
            continue
        if "/" in ref or ref.endswith((".yaml", ".yml")):
            path = Path(ref) if base_dir is None else base_dir / ref
            documents = [(str(path), config.read_file(path))]
            inner_dir: Path | None = path.parent
        else:
            documents = config.preset_documents(ref)
            inner_dir = None
        for inner_origin, text in documents:
            _walk(config.parse_yaml(text, inner_origin), inner_origin, inner_dir, provenance)
    provenance.record(data, origin)


def trace(path: Path | None) -> Provenance:
    """The provenance of every check of the configuration at `path` (None: embedded)."""
    provenance = Provenance()
    if path is None:
        for origin, text in config.preset_documents(config.DEFAULT_PRESET):
            _walk(config.parse_yaml(text, origin), f"embedded default ({origin})", None,
                  provenance)
    else:
        _walk(config.parse_yaml(config.read_file(path), str(path)), str(path), path.parent,
              provenance)
    return provenance


def find(cfg: Config, wanted: str) -> list[CheckSpec]:
    """The check with id `wanted`, else every check of checklist item `wanted`."""
    exact = [c for c in cfg.checks if c.id == wanted]
    return exact or [c for c in cfg.checks if c.item_id == wanted]


def _origin(spec: CheckSpec, key: str, provenance: Provenance) -> str:
    setters = provenance.checks.get(spec.id, {}).get(key)
    if setters:
        text = setters[-1]
        if len(setters) > 1:
            text += f" (overrides {', '.join(reversed(setters[:-1]))})"
        return text
    if key in ("interval", "timeout") and provenance.defaults.get(key):
        return f"defaults: in {provenance.defaults[key][-1]}"
    if key in CheckSpec.model_fields:
        return "default for every check"
    return f"default of kind {spec.kind}"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def explain(spec: CheckSpec, provenance: Provenance) -> list[str]:
    """The lines printed for one check: summary, values set by files, then defaults."""
    kind = registry.probe_kind(spec.kind)
    setters = provenance.checks.get(spec.id, {}).get("id", [])
    state = "enabled" if spec.enabled else f"disabled ({spec.disabled_reason or 'no reason'})"
    lines = [
        f"{spec.id}: {spec.title}",
        f"  section   {section_title(spec.section)}",
        f"  severity  {spec.severity.value}; {state}",
        f"  kind      {spec.kind}: {kind.summary}",
        f"  docs      {docs_page(spec.kind)} (every option: readiness-exporter list {spec.kind})",
        f"  defined   {' then '.join(setters) or 'unknown'}",
        "",
        "  Set by the configuration:",
    ]
    values = spec.model_dump(mode="json")
    own = provenance.checks.get(spec.id, {})
    for name, value in values.items():
        if own.get(name) or (name in ("interval", "timeout") and provenance.defaults.get(name)):
            lines.append(f"    {name}: {_value(value)}")
            lines.append(f"        from {_origin(spec, name, provenance)}")
    lines.append("  Defaults (not set in any file):")
    for name, value in values.items():
        if not own.get(name) and not (name in ("interval", "timeout")
                                      and provenance.defaults.get(name)):
            lines.append(f"    {name}: {_value(value)}  ({_origin(spec, name, provenance)})")
    return lines
