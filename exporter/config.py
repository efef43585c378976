"""The YAML configuration: loading, includes and presets, validation, secret references.

Every problem is collected and reported with its path (`checks[3].warn_days: ...`) so
`validate` shows all of them at once; `ConfigError` carries the list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter import registry
from exporter.model import (
    CheckSpec,
    ConnectionSpec,
    Duration,
    SecretRef,
    connection_references,
)

PRESET_PACKAGE = "exporter.presets"
DEFAULT_PRESET = "default"


class ConfigError(Exception):
    """The configuration cannot be used; `errors` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Settings(BaseModel):
    """Runtime settings (`settings:` in the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    release: str | None = Field(default=None, description="release being deployed")
    max_concurrency: int = Field(default=64, gt=0, le=10_000)
    jitter: float = Field(default=0.1, ge=0, le=1, description="share of interval")
    first_round_spread: Duration = Field(
        default=5.0, ge=0, description="first runs are spread over this many seconds"
    )
    stale_after_intervals: float = Field(default=3.0, gt=1)
    state_dir: Path = Field(default=Path("state"), description="persistent results")


class Defaults(BaseModel):
    """Values applied to checks that do not set them (`defaults:`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Duration | None = Field(default=None, gt=0)
    timeout: Duration | None = Field(default=None, gt=0)


class Config(BaseModel):
    """A validated configuration."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    settings: Settings = Settings()
    connections: dict[str, ConnectionSpec] = {}
    checks: list[CheckSpec] = []
    source: str = "embedded default"

    def check(self, check_id: str) -> CheckSpec:
        """The check with this id (`KeyError` if none)."""
        for spec in self.checks:
            if spec.id == check_id:
                return spec
        raise KeyError(check_id)


# --------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _parse_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{origin}:{where}: YAML syntax error: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{origin}: the top level must be a mapping"])
    return data


# --------------------------------------------------------------------------- includes


def preset_names() -> list[str]:
    """Bundled presets (files or directories under exporter/presets)."""
    root = resources.files(PRESET_PACKAGE)
    names = set()
    for entry in root.iterdir():
        if entry.name.endswith(".yaml"):
            names.add(entry.name.removesuffix(".yaml"))
        elif entry.is_dir() and not entry.name.startswith("_"):
            names.add(entry.name)
    return sorted(names)


def _preset_documents(name: str) -> list[tuple[str, str]]:
    root = resources.files(PRESET_PACKAGE)
    single = root / f"{name}.yaml"
    if single.is_file():
        return [(f"preset {name}", single.read_text(encoding="utf-8"))]
    folder = root / name
    if folder.is_dir():
        parts = sorted(
            (entry for entry in folder.iterdir() if entry.name.endswith(".yaml")),
            key=lambda entry: entry.name,
        )
        return [(f"preset {name}/{p.name}", p.read_text(encoding="utf-8")) for p in parts]
    raise ConfigError([f"include: no preset or file named {name!r} (presets: "
                       f"{', '.join(preset_names())})"])


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay `top` on `base`: checks by id, connections by name, the rest replaced."""
    merged = dict(base)
    for key, value in top.items():
        if key == "checks" and isinstance(value, list) and isinstance(base.get("checks"), list):
            merged["checks"] = _merge_checks(base["checks"], value)
        elif key in ("connections", "settings", "defaults") and isinstance(value, dict):
            inner = dict(base.get(key) or {})
            inner.update(value)
            merged[key] = inner
        else:
            merged[key] = value
    return merged


def _merge_checks(base: list[Any], top: list[Any]) -> list[Any]:
    by_id = {c.get("id"): i for i, c in enumerate(base) if isinstance(c, dict)}
    result = [dict(c) if isinstance(c, dict) else c for c in base]
    for entry in top:
        if isinstance(entry, dict) and entry.get("id") in by_id:
            index = by_id[entry["id"]]
            result[index] = {**result[index], **entry}
        else:
            result.append(entry)
    return result


def _resolve_document(
    data: dict[str, Any], origin: str, base_dir: Path | None, seen: frozenset[str]
) -> dict[str, Any]:
    includes = data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        raise ConfigError([f"{origin}: include: must be a list of preset names or paths"])
    merged: dict[str, Any] = {}
    for ref in includes:
        if not isinstance(ref, str):
            raise ConfigError([f"{origin}: include: entries are preset names or paths"])
        if ref in seen:
            raise ConfigError([f"{origin}: include: {ref!r} includes itself"])
        looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml"))
        if looks_like_path:
            path = Path(ref) if base_dir is None else base_dir / ref
            documents = [(str(path), _read_file(path))]
            inner_dir: Path | None = path.parent
        else:
            documents = _preset_documents(ref)
            inner_dir = None
        for inner_origin, text in documents:
            inner = _parse_yaml(text, inner_origin)
            inner = _resolve_document(inner, inner_origin, inner_dir, seen | {ref})
            merged = _merge(merged, inner)
    return _merge(merged, data)


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None


# --------------------------------------------------------------------------- validation


def _format_error(prefix: str, error: Mapping[str, Any]) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required"
    message = message[:1].lower() + message[1:]
    return f"{prefix}{loc}: {message}"


def _iter_secret_refs(value: Any, path: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _iter_secret_refs(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _iter_secret_refs(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _iter_secret_refs(item, f"{path}.{key}")


def build(data: dict[str, Any], source: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a merged document into a `Config`, or raise `ConfigError` with every error."""
    errors: list[str] = []
    known_top = {"settings", "defaults", "connections", "checks"}
    for key in data:
        if key not in known_top:
            errors.append(f"{key}: unknown key (expected one of {', '.join(sorted(known_top))})")

    settings = Settings()
    try:
        settings = Settings.model_validate(data.get("settings") or {})
    except ValidationError as exc:
        errors.extend(_format_error("settings", e) for e in exc.errors())
    defaults = Defaults()
    try:
        defaults = Defaults.model_validate(data.get("defaults") or {})
    except ValidationError as exc:
        errors.extend(_format_error("defaults", e) for e in exc.errors())

    connections: dict[str, ConnectionSpec] = {}
    raw_connections = data.get("connections") or {}
    if not isinstance(raw_connections, dict):
        errors.append("connections: must be a mapping of name to connection")
        raw_connections = {}
    for name, raw in raw_connections.items():
        where = f"connections.{name}"
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be a mapping")
            continue
        kind_name = raw.get("kind")
        if kind_name not in registry.CONNECTION_KINDS:
            errors.append(
                f"{where}.kind: unknown connection kind {kind_name!r} (known: "
                f"{', '.join(registry.connection_kind_names()) or 'none'})"
            )
            continue
        try:
            connections[name] = registry.connection_kind(kind_name).spec.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_format_error(where, e) for e in exc.errors())

    checks: list[CheckSpec] = []
    raw_checks = data.get("checks") or []
    if not isinstance(raw_checks, list):
        errors.append("checks: must be a list")
        raw_checks = []
    seen_ids: dict[str, int] = {}
    for index, raw in enumerate(raw_checks):
        where = f"checks[{index}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: must be a mapping")
            continue
        check_id = raw.get("id")
        if isinstance(check_id, str):
            where = f"checks[{index}] (id {check_id})"
            if check_id in seen_ids:
                errors.append(f"{where}.id: duplicate check id (also checks[{seen_ids[check_id]}])")
                continue
            seen_ids[check_id] = index
        kind_name = raw.get("kind")
        if kind_name not in registry.PROBE_KINDS:
            errors.append(
                f"{where}.kind: unknown probe kind {kind_name!r} (known: "
                f"{', '.join(registry.probe_kind_names())})"
            )
            continue
        values = dict(raw)
        if defaults.interval is not None:
            values.setdefault("interval", defaults.interval)
        if defaults.timeout is not None:
            values.setdefault("timeout", defaults.timeout)
        try:
            spec = registry.probe_kind(kind_name).spec.model_validate(values)
        except ValidationError as exc:
            errors.extend(_format_error(where, e) for e in exc.errors())
            continue
        errors.extend(_connection_errors(spec, where, connections))
        checks.append(spec)

    # Secret references are resolved now (so a missing one stops the start) wherever
    # something enabled needs them: enabled checks and the connections they use.
    env = os.environ if environ is None else environ
    enabled = [spec for spec in checks if spec.enabled]
    used = {ref.name for spec in enabled for ref in connection_references(spec)}
    for name in sorted(n for n in used if n in connections):
        for path, ref in _iter_secret_refs(connections[name], f"connections.{name}"):
            errors.extend(_secret_error(ref, path, env))
    for spec in enabled:
        for path, ref in _iter_secret_refs(spec, f"checks (id {spec.id})"):
            errors.extend(_secret_error(ref, path, env))

    if errors:
        raise ConfigError(errors)
    return Config(settings=settings, connections=connections, checks=checks, source=source)


def _connection_errors(
    spec: CheckSpec, where: str, connections: Mapping[str, ConnectionSpec]
) -> Iterator[str]:
    """One error per connection name in `spec` (any typed option, nested or in a list)
    that is not declared, or declared with another kind."""
    for ref in connection_references(spec):
        option = f"{where}.{ref.path}"
        declared = connections.get(ref.name)
        if declared is None:
            yield f"{option}: no connection named {ref.name!r} under connections:"
        elif declared.kind != ref.kind:
            yield (f"{option}: connection {ref.name!r} is a {declared.kind} connection, "
                   f"this check needs {ref.kind}")


def _secret_error(ref: SecretRef, path: str, environ: Mapping[str, str]) -> list[str]:
    try:
        ref.resolve(environ)
    except LookupError as exc:
        return [f"{path}: secret reference {ref.describe()} cannot be resolved: {exc}"]
    return []


def load(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load `path` (or the embedded default when None) with its includes, and validate."""
    if path is None:
        documents = _preset_documents(DEFAULT_PRESET)
        merged: dict[str, Any] = {}
        for origin, text in documents:
            merged = _merge(merged, _resolve_document(_parse_yaml(text, origin), origin, None,
                                                      frozenset({DEFAULT_PRESET})))
        return build(merged, "embedded default", environ)
    text = _read_file(path)
    data = _parse_yaml(text, str(path))
    data = _resolve_document(data, str(path), path.parent, frozenset())
    return build(data, str(path), environ)
