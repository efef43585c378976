"""How a probe shows a value it observed (a JSON field, a config value, a setting).

An observed string may be a secret (a token echoed by the target, a password in a
config file), so it is shown only when it equals one of the configured public
constants it was compared with; otherwise only its shape (`a 43-character string`).
Numbers, booleans and null are shown as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["describe", "shape"]


def shape(value: Any) -> str:
    """The kind and size of `value`, never its content."""
    if isinstance(value, str):
        return f"a {len(value)}-character string" if value else "an empty string"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float)


def describe(value: Any, public: Iterable[Any] = ()) -> str:
    """`value` as a message may show it.

    Numbers, booleans and null are shown; a string only when it equals one of the
    `public` values (configured constants it was compared with); anything else by shape.
    """
    if _scalar(value):
        return "null" if value is None else repr(value)
    if isinstance(value, str) and any(
            isinstance(item, str) and item == value for item in public):
        return repr(value)
    return shape(value)
