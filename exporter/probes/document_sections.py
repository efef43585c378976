"""Headings and section bodies of a Markdown or reStructuredText document (runbooks).

A section starts at a heading (Markdown `#`..`######`, or a line underlined with
`=`, `-`, `~`, `^`, `*`, `+`, `#`) and runs to the next heading of the same or a higher
level; its body is the text in between, subsections included. Fenced code blocks
(```/~~~) are body text, never headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_UNDERLINE = re.compile(r"^ {0,3}([=\-~^*+#])\1{2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_UNDERLINE_LEVEL = {"=": 1, "#": 1, "-": 2, "*": 2, "~": 3, "^": 4, "+": 5}


@dataclass(frozen=True, slots=True)
class Section:
    """A heading and the size of its body."""

    title: str
    level: int
    body_bytes: int  # non-blank body text in UTF-8 bytes, subsections included


def _headings(lines: list[str]) -> list[tuple[int, int, str, int]]:
    """(first line, level, title, lines the heading takes) of every heading."""
    found = []
    fenced = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        atx = _ATX.match(line)
        if atx:
            found.append((index, len(atx.group(1)), atx.group(2).strip(), 1))
            continue
        underline = _UNDERLINE.match(line)
        if underline and index > 0 and lines[index - 1].strip() and not (
                found and found[-1][0] + found[-1][3] - 1 == index - 1):
            found.append((index - 1, _UNDERLINE_LEVEL[underline.group(1)],
                          lines[index - 1].strip(), 2))
    return found


def sections(text: str) -> list[Section]:
    """Every section of `text`, in document order."""
    lines = text.splitlines()
    heads = _headings(lines)
    result = []
    for position, (start, level, title, height) in enumerate(heads):
        end = len(lines)
        for later_start, later_level, _, _ in heads[position + 1:]:
            if later_level <= level:
                end = later_start
                break
        body = [line.strip() for line in lines[start + height:end]]
        result.append(Section(title, level, len(" ".join(b for b in body if b).encode())))
    return result
