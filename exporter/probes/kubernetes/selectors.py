"""Label selectors with the full Kubernetes semantics.

`matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist) are ANDed. An
empty selector (`{}`) selects everything; a missing one (`None`) selects nothing; callers
that follow other rules for a missing selector decide before calling `matches`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector that Kubernetes itself would reject (unknown operator, bad values)."""


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether `selector` (a LabelSelector as JSON) selects an object with `labels`."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        if not _expression(expression, labels):
            return False
    return True


def _expression(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expression.get("key", "")
    operator = expression.get("operator")
    values = expression.get("values") or []
    if operator == "In":
        if not values:
            raise SelectorError(f"operator In on {key!r} needs values")
        return key in labels and labels[key] in values
    if operator == "NotIn":
        if not values:
            raise SelectorError(f"operator NotIn on {key!r} needs values")
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise SelectorError(f"unknown selector operator {operator!r} on {key!r}")


def parse_selector(text: str) -> dict[str, Any]:
    """Parse the string form (`app=web,tier in (a,b),!legacy,env!=dev`) into a selector."""
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for part in _split_top(text):
        part = part.strip()
        if not part:
            continue
        lowered = part.replace("\t", " ")
        if " notin " in lowered or " in " in lowered:
            op = "NotIn" if " notin " in lowered else "In"
            key, _, rest = lowered.partition(" notin " if op == "NotIn" else " in ")
            rest = rest.strip()
            if not (rest.startswith("(") and rest.endswith(")")):
                raise SelectorError(f"set-based requirement needs (values): {part!r}")
            values = [v.strip() for v in rest[1:-1].split(",") if v.strip()]
            expressions.append({"key": key.strip(), "operator": op, "values": values})
        elif "!=" in part:
            key, _, value = part.partition("!=")
            expressions.append({"key": key.strip(), "operator": "NotIn",
                                "values": [value.strip()]})
        elif "=" in part:
            key, _, value = part.partition("==" if "==" in part else "=")
            match_labels[key.strip()] = value.strip()
        elif part.startswith("!"):
            expressions.append({"key": part[1:].strip(), "operator": "DoesNotExist"})
        else:
            expressions.append({"key": part, "operator": "Exists"})
    return {"matchLabels": match_labels, "matchExpressions": expressions}


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
