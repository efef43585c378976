"""`${VAR}`, `${VAR:-default}` and `${inputs.NAME}` expansion in a configuration document.

The loader calls `expand_document` on the merged YAML before validation. Every string
option is expanded except prose (titles, reasons) and secret options: a `SecretRef` keeps
its reference form and is never replaced by a value. Relative paths (options typed as a
path) are resolved against the configuration's base directory. Each substitution is
recorded as a `Use` so messages can name the input or variable that set a target.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel

from exporter.model import CheckSpec, SecretRef

_REF_RE = re.compile(r"\$\$\{|\$\{(inputs\.)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
PATH_KEYS = frozenset({"path", "paths"})
"""Check options that name files although typed as text (globs, lists of globs)."""
PROSE_KEYS = frozenset({"title", "description", "disabled_reason", "section", "id", "item"})
"""Keys whose text is shown to people, never expanded (it may quote `${...}` as advice)."""


@dataclass(frozen=True, slots=True)
class Use:
    """One substitution: the option it landed in and what supplied the value."""

    option: str
    """Where in the document, e.g. `checks (id 2.2.2).url` or `connections.app-db.host`."""
    source: str
    """What supplied it: `inputs.app_url` or `${DATABASE_HOST}`."""
    value: str
    """The expanded text (never a secret: secret options are not expanded)."""


@dataclass
class Expansion:
    """The result of expanding one document: substitutions made and problems found."""

    uses: list[Use] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(option, message) pairs: unset variables without a default, unknown inputs."""


class Expander:
    """Expands references in strings against an environment and a table of inputs."""

    def __init__(self, environ: Mapping[str, str], inputs: Mapping[str, Any],
                 base_dir: Path | None) -> None:
        self.environ = environ
        self.inputs = inputs
        self.base_dir = base_dir
        self.result = Expansion()

    def text(self, value: str, option: str) -> Any:
        """`value` with its references replaced; a lone `${inputs.X}` may be a mapping."""
        whole = _REF_RE.fullmatch(value)
        if whole and whole.group(1) and whole.group(2) in self.inputs:
            found = self.inputs[whole.group(2)]
            if not isinstance(found, str):
                self.result.uses.append(Use(option, f"inputs.{whole.group(2)}", "(a mapping)"))
                return found
        sources: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            is_input, name, default = match.group(1), match.group(2), match.group(3)
            if is_input:
                if name not in self.inputs:
                    self.result.errors.append((option, _unknown_input(name, self.inputs)))
                    return match.group(0)
                found = self.inputs[name]
                if not isinstance(found, str | int | float) or isinstance(found, bool):
                    self.result.errors.append(
                        (option, f"inputs.{name} is a mapping; use it as the whole value"))
                    return match.group(0)
                sources.append(f"inputs.{name}")
                return str(found)
            if name in self.environ:
                sources.append(f"${{{name}}}")
                return self.environ[name]
            if default is not None:
                return default
            self.result.errors.append(
                (option, f"environment variable {name} is not set; set it or write "
                         f"${{{name}:-default}}"))
            return match.group(0)

        expanded = _REF_RE.sub(replace, value)
        if expanded != value:
            source = ", ".join(sources) if sources else "a ${...:-default}"
            self.result.uses.append(Use(option, source, expanded))
        return expanded

    def path(self, value: str) -> str:
        """A relative path made absolute against the base directory."""
        if self.base_dir is None or not value or "://" in value:
            return value
        candidate = Path(value).expanduser()
        if candidate.is_absolute():
            return value
        return str(self.base_dir / candidate)


def _unknown_input(name: str, inputs: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(inputs), n=1)
    hint = f" (did you mean inputs.{close[0]}?)" if close else ""
    return f"no input named {name}{hint}; see `readiness-exporter inputs`"


# --------------------------------------------------------------------------- schema walk


def _flatten(annotation: Any) -> list[Any]:
    """The alternatives of an annotation, through Annotated, Optional and unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_flatten(arg))
        return out
    return [annotation]


def _is_class(candidate: Any, base: type) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, base)


def _holds_secret(annotation: Any) -> bool:
    """True when a string at this place is (or is inside) a secret reference."""
    for alt in _flatten(annotation):
        if _is_class(alt, SecretRef):
            return True
        origin = typing.get_origin(alt)
        if origin in (list, tuple, set, frozenset, dict) and not any(
            _is_class(a, BaseModel) and not _is_class(a, SecretRef)
            for arg in typing.get_args(alt) for a in _flatten(arg)
        ) and any(_holds_secret(arg) for arg in typing.get_args(alt)):
            return True
    return False


def _is_path(annotation: Any) -> bool:
    for alt in _flatten(annotation):
        if _is_class(alt, Path):
            return True
        if typing.get_origin(alt) in (list, tuple, set, frozenset) and any(
                _is_path(arg) for arg in typing.get_args(alt)):
            return True
    return False


def _with_variants(models: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """The models, then the per-value models of a kind validated through a base
    (`kubernetes`'s per-assertion models: `variants()`)."""
    out = list(models)
    for model in models:
        variants = getattr(model, "variants", None)
        if callable(variants):
            out.extend(variants())
    return out


def _field_annotation(models: list[type[BaseModel]], key: str) -> Any:
    for model in _with_variants(models):
        for name, info in model.model_fields.items():
            if key in (name, info.alias):
                return info.annotation
    return Any


def model_at(model: type[BaseModel], steps: list[Any]) -> type[BaseModel] | None:
    """The nested model at a validation error's location (for "did you mean")."""
    current: Any = model
    for step in steps:
        if isinstance(step, int):
            continue
        models = [a for a in _flatten(current) if _is_class(a, BaseModel)]
        annotation = _field_annotation(models, str(step))
        inner: list[Any] = []
        for alt in _flatten(annotation):
            if typing.get_origin(alt) in (list, tuple, set, frozenset, dict):
                inner.extend(_flatten(typing.get_args(alt)[-1]))
            else:
                inner.append(alt)
        current = Union[tuple(inner)] if len(inner) > 1 else (inner[0] if inner else Any)  # noqa: UP007
    found = [a for a in _flatten(current) if _is_class(a, BaseModel)]
    return found[0] if found else None


def walk(value: Any, annotation: Any, expander: Expander, option: str,
         pathish: bool = False) -> Any:
    """`value` with every non-secret, non-prose string expanded (paths made absolute)."""
    if isinstance(value, str):
        if _holds_secret(annotation):
            return value
        expanded = expander.text(value, option)
        if not isinstance(expanded, str):  # a whole `${inputs.X}` that is a mapping
            return walk(expanded, annotation, expander, option, pathish)
        if pathish or _is_path(annotation):
            return expander.path(expanded)
        return expanded
    alternatives = _flatten(annotation)
    if isinstance(value, dict):
        models = [a for a in alternatives if _is_class(a, BaseModel)]
        if any(_is_class(m, SecretRef) for m in models):
            return value
        value_annotation: Any = Any
        for alt in alternatives:
            if typing.get_origin(alt) is dict and len(typing.get_args(alt)) == 2:
                value_annotation = typing.get_args(alt)[1]
        is_check = any(_is_class(m, CheckSpec) for m in models)
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key in PROSE_KEYS:
                out[key] = item
                continue
            inner = _field_annotation(models, str(key)) if models else value_annotation
            out[key] = walk(item, inner, expander, f"{option}.{key}",
                            pathish=str(key) in PATH_KEYS and is_check)
        return out
    if isinstance(value, list):
        item_annotation: Any = Any
        for alt in alternatives:
            if typing.get_origin(alt) in (list, tuple, set, frozenset) and typing.get_args(alt):
                item_annotation = typing.get_args(alt)[0]
        return [walk(item, item_annotation, expander, f"{option}[{i}]", pathish)
                for i, item in enumerate(value)]
    return value
