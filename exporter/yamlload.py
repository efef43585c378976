"""Bounded YAML parsing for configuration files.

A safe loader with limits: duplicate keys and list or mapping keys are refused, and the
document is measured with its aliases expanded before anything is built from it, so an
alias bomb ("billion laughs") or a self-referring alias is refused in linear time
instead of being expanded by whoever walks the result later.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_EXPANDED_NODES = 500_000
"""Nodes in a document with every alias expanded (a 1,000-check file has about 30,000)."""

MAX_DEPTH = 64
"""Nesting of lists and mappings, aliases expanded."""

MAX_PROBLEM_CHARS = 200
"""Longest YAML problem text repeated in an error message."""

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLoadError(Exception):
    """The text is not an acceptable YAML document; the message says where and why."""


class _StrictLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """A safe loader that rejects duplicate keys and lists or mappings used as keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        mark = key_node.start_mark
        if not isinstance(key_node, ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value, not a list or mapping "
                f"(line {mark.line + 1})", mark)
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in result
        except TypeError:  # an unhashable tagged scalar
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value (line {mark.line + 1})", mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shorten(repr(key), 80)} (line {mark.line + 1})",
                mark)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _where(node: Node) -> str:
    return f"line {node.start_mark.line + 1} column {node.start_mark.column + 1}"


class _Measure:
    """Size and height of a node graph with aliases expanded, memoised per node."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[int, int]] = {}
        self._active: set[int] = set()

    def __call__(self, node: Node, depth: int) -> tuple[int, int]:
        key = id(node)
        known = self._memo.get(key)
        if known is None:
            known = self._measure(node, depth)
            self._memo[key] = known
        height = known[1]
        if depth + height > MAX_DEPTH:
            raise YamlLoadError(f"{_where(node)}: nested more than {MAX_DEPTH} levels deep")
        return known

    def _measure(self, node: Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise YamlLoadError(f"{_where(node)}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ScalarNode):
            return 1, 0
        key = id(node)
        if key in self._active:
            raise YamlLoadError(f"{_where(node)}: an alias refers to a node that contains it")
        self._active.add(key)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                children += (key_node, value_node)
        size, height = 1, 0
        for child in children:
            child_size, child_height = self(child, depth + 1)
            size += child_size
            height = max(height, child_height + 1)
            if size > MAX_EXPANDED_NODES:
                raise YamlLoadError(
                    f"{_where(node)}: more than {MAX_EXPANDED_NODES} values once aliases are "
                    "expanded (an alias bomb?)")
        self._active.discard(key)
        return size, height


def parse(text: str) -> Any:
    """Parse one YAML document within the limits; `YamlLoadError` says why not."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Measure()(node, 0)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlLoadError(f"{where}YAML syntax error: {shorten(problem, MAX_PROBLEM_CHARS)}"
                            ) from None
    except RecursionError:
        raise YamlLoadError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        reason = str(exc).split(";")[0]
        raise YamlLoadError(f"a value cannot be read: {shorten(reason, MAX_PROBLEM_CHARS)}"
                            ) from None
    finally:
        loader.dispose()
