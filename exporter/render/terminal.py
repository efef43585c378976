"""Where `check` writes for a person: colour only on a terminal, `NO_COLOR` respected."""

from __future__ import annotations

import os
from typing import TextIO

from rich.console import Console

PLAIN_WIDTH = 100
"""Columns of the output when it is not a terminal: fixed, so logs and diffs are stable."""


def wants_colour(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Colour on a terminal unless `NO_COLOR` is set to a non-empty value (no-color.org)."""
    env = dict(os.environ) if environ is None else environ
    return stream.isatty() and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def console_for(stream: TextIO) -> Console:
    """A console that styles and fits the terminal width on a TTY, plain text otherwise."""
    if stream.isatty():
        colour = wants_colour(stream)
        return Console(file=stream, force_terminal=True, no_color=not colour,
                       color_system="auto" if colour else None, highlight=False,
                       emoji=False, markup=False)
    return Console(file=stream, force_terminal=False, color_system=None, no_color=True,
                   width=PLAIN_WIDTH, highlight=False, emoji=False, markup=False,
                   legacy_windows=False)
