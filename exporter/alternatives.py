"""Checks of the `any_of` alternatives of a configuration (ids that exist, no cycles).

A check's `any_of` names other checks (an attestation, another automated check) that
stand in for it while its probe skips it; `Store` applies the rule, this module refuses
configurations where the names cannot mean anything: an unknown id, the check itself,
or alternatives that lead back to the check they stand in for.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from exporter.model import CheckSpec, Severity

__all__ = ["any_of_errors", "any_of_warnings"]


def _where(spec: CheckSpec) -> str:
    return f"checks (id {spec.id}).any_of"


def _unknown(spec: CheckSpec, known: set[str]) -> list[str]:
    errors: list[str] = []
    for index, check_id in enumerate(spec.any_of):
        if check_id == spec.id:
            errors.append(f"{_where(spec)}[{index}]: a check cannot be its own alternative")
        elif check_id not in known:
            close = difflib.get_close_matches(check_id, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"{_where(spec)}[{index}]: no check with id {check_id!r}{hint}")
    return errors


def _cycles(specs: Sequence[CheckSpec]) -> list[list[str]]:
    """Each cycle of the `any_of` graph once (as found from its smallest id)."""
    edges = {s.id: [a for a in s.any_of if a != s.id] for s in specs}
    found: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    done: set[str] = set()
    for start in sorted(edges):
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        on_path = {start}
        while stack:
            node, position = stack[-1]
            nexts = edges.get(node, [])
            if position == len(nexts):
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            stack[-1] = (node, position + 1)
            child = nexts[position]
            if child in on_path:
                cycle = path[path.index(child):]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    found.append([*cycle, child])
            elif child in edges and child not in done:
                stack.append((child, 0))
                path.append(child)
                on_path.add(child)
    return found


def any_of_errors(specs: Iterable[CheckSpec]) -> list[str]:
    """Every unknown or self-naming alternative, and every cycle of alternatives."""
    specs = list(specs)
    known = {s.id for s in specs}
    errors: list[str] = []
    for spec in specs:
        errors.extend(_unknown(spec, known))
    for cycle in _cycles(specs):
        errors.append(f"checks (id {cycle[0]}).any_of: alternatives form a cycle "
                      f"({' -> '.join(cycle)}); an alternative must not lead back to the "
                      "check it stands in for")
    return errors


def any_of_warnings(specs: Iterable[CheckSpec]) -> list[str]:
    """Alternatives that can never stand in: disabled checks; `any_of` on a check that
    does not gate go-live."""
    specs = list(specs)
    by_id = {s.id: s for s in specs}
    found: list[str] = []
    for spec in specs:
        if not spec.any_of or not spec.enabled:
            continue
        if spec.severity is not Severity.CRITICAL:
            found.append(f"{_where(spec)}: only a critical check gates go-live; its "
                         "alternatives change nothing")
        for index, check_id in enumerate(spec.any_of):
            other = by_id.get(check_id)
            if other is not None and not other.enabled:
                found.append(f"{_where(spec)}[{index}]: alternative {check_id} is disabled "
                             "and never stands in")
    return found
