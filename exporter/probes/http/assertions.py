"""JSON body assertions: look a path up and compare it with the configured value.

A failing assertion never shows an observed string unless it equals a configured value:
a target may echo a token (see `exporter.probes.observed`).
"""

from __future__ import annotations

from typing import Any

from exporter.probes.http.spec import JsonAssertion, parse_json_path
from exporter.probes.observed import describe

_MISSING = object()


def lookup(document: Any, path: str) -> Any:
    """The value at `path` in `document`, or `_MISSING`."""
    current = document
    for part in parse_json_path(path):
        if isinstance(part, int):
            if isinstance(current, list) and -len(current) <= part < len(current):
                current = current[part]
            else:
                return _MISSING
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return _MISSING
    return current


def _equal(a: Any, b: Any) -> bool:
    # JSON true is not 1: compare booleans only with booleans.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def _ordered(actual: Any, expected: Any) -> bool:
    numbers = (int, float)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return False
    return (isinstance(actual, numbers) and isinstance(expected, numbers)) or (
        isinstance(actual, str) and isinstance(expected, str))


def _public(assertion: JsonAssertion) -> list[Any]:
    """The configured constants an observed value may be shown as."""
    if assertion.op == "in" and isinstance(assertion.value, list):
        return list(assertion.value)
    return [assertion.value]


def evaluate(assertion: JsonAssertion, document: Any) -> str | None:
    """None when the assertion holds, else a short reason (names the path, shows no
    observed string that is not one of the configured values)."""
    actual = lookup(document, assertion.path)
    op, expected = assertion.op, assertion.value
    shown = describe(actual, _public(assertion)) if actual is not _MISSING else ""
    if op == "exists":
        return None if actual is not _MISSING else f"{assertion.path} is missing"
    if actual is _MISSING:
        return f"{assertion.path} is missing (expected {assertion.describe()})"
    if op == "not_empty":
        empty = actual is None or (isinstance(actual, str | list | dict) and len(actual) == 0)
        return f"{assertion.path} is empty" if empty else None
    if op == "==":
        ok = _equal(actual, expected)
    elif op == "!=":
        ok = not _equal(actual, expected)
    elif op == "in":
        ok = any(_equal(actual, item) for item in expected)
    else:
        if not _ordered(actual, expected):
            return f"{assertion.path} is {shown}, not comparable with {expected!r}"
        ok = {"<": actual < expected, "<=": actual <= expected,
              ">": actual > expected, ">=": actual >= expected}[op]
    return None if ok else f"{assertion.path} is {shown} (expected {op} {expected!r})"
