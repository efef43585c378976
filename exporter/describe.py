"""Configuration models described for people: readable types, defaults, nested blocks.

`list` prints every option of a probe or connection kind with it; `explain` uses the
same type names.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from exporter.model import CheckSpec, SecretRef, parse_duration

MAX_DEPTH = 4


def _is_duration(metadata: list[Any]) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in metadata)


def type_name(annotation: Any) -> str:
    """`list[str]`, `'head' | 'downgrade'`, `duration`, `secret reference`, `int | null`."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *metadata = get_args(annotation)
        if _is_duration(metadata):
            return "duration"
        return type_name(inner)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_name(a) for a in get_args(annotation)))
    if origin in (list, tuple, set, frozenset, dict):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        inner = ", ".join(type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if isinstance(annotation, type):
        if issubclass(annotation, SecretRef):
            return "secret reference"
        if issubclass(annotation, enum.Enum):
            return " | ".join(repr(m.value) for m in annotation)
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, SecretStr):
            return "secret"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The configuration blocks (pydantic models) a field's type contains."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not issubclass(annotation, SecretRef):
            yield annotation
        return
    for arg in get_args(annotation):
        yield from nested_models(arg)


def default_text(info: FieldInfo) -> str:
    """`required`, or `default 32`, `default []`, `default null`; blocks show `{...}`."""
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "default null"
    if isinstance(value, BaseModel):
        return "default: the block's own defaults"
    if isinstance(value, bool):
        return f"default {str(value).lower()}"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        return f"default {str(value)!r}"
    if isinstance(value, float) and value.is_integer():
        return f"default {int(value)}"
    return f"default {value!r}"


def field_lines(model: type[BaseModel], indent: int = 4, skip: frozenset[str] = frozenset(),
                depth: int = 0, shown: set[type[BaseModel]] | None = None) -> list[str]:
    """One line per field (`name: type (default): description`), nested blocks indented.

    A block that appears twice lists its fields the first time only.
    """
    shown = set() if shown is None else shown
    lines: list[str] = []
    pad = " " * indent
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        annotation = info.rebuild_annotation() if info.metadata else info.annotation
        text = f"{pad}{name}: {type_name(annotation)} ({default_text(info)})"
        if info.description:
            text += f": {info.description}"
        lines.append(text)
        if depth >= MAX_DEPTH:
            continue
        for block in nested_models(info.annotation):
            if block is model:
                continue
            if block in shown:
                lines.append(f"{pad}  {block.__name__}: (fields above)")
                continue
            shown.add(block)
            label = f"{pad}  {block.__name__}" + (f": {_first_line(block.__doc__)}"
                                                  if block.__doc__ else "")
            lines.append(label)
            lines.extend(field_lines(block, indent + 4, depth=depth + 1, shown=shown))
    return lines


def _first_line(doc: str) -> str:
    return doc.strip().splitlines()[0]


def kind_option_lines(model: type[BaseModel]) -> list[str]:
    """A probe or connection kind's own options (not the fields every check has).

    A kind whose options depend on one field (`kubernetes`'s `assert`) lists its shared
    options, then each value with only the options it accepts; an option shared by
    several values is described the first time and named after that.
    """
    skip = frozenset(CheckSpec.model_fields) | {"kind"}
    variants = getattr(model, "variants", None)
    key = getattr(model, "variant_key", None)
    if not callable(variants) or not isinstance(key, str):
        return field_lines(model, skip=skip)
    lines = field_lines(model, skip=skip | {key})
    info = model.model_fields[key]
    spelled = info.alias or key
    lines.append(f"    {spelled}: one of the following, each with its own options")
    described = set(model.model_fields)
    for variant in variants():
        value = get_args(variant.model_fields[key].annotation)[0]
        doc = f": {_first_line(variant.__doc__)}" if variant.__doc__ else ""
        lines.append(f"      {spelled}: {value}{doc}")
        fresh = [n for n in variant.model_fields if n not in described]
        again = [n for n in variant.model_fields if n in described and n not in model.model_fields]
        lines.extend(field_lines(variant, indent=8,
                                 skip=frozenset(variant.model_fields) - set(fresh)))
        if again:
            lines.append(f"        also: {', '.join(again)} (described above)")
        described.update(fresh)
    return lines
