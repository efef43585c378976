"""Wording shared by probe messages."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["shortened"]


def shortened(items: Sequence[str], limit: int) -> str:
    """`a, b, c and 4 more`: the first `limit` items by name, the rest counted, so a
    message stays short however many items fail."""
    shown = ", ".join(items[:limit])
    extra = len(items) - limit
    return f"{shown} and {extra} more" if extra > 0 else shown
