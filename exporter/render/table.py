"""`check --output table`: failures first, then passing and disabled checks, then the verdict.

On a terminal the columns fit its width (long titles wrap, passing rows are cut with an
ellipsis) and statuses are coloured; elsewhere the text is plain at a fixed width.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from exporter.model import Severity
from exporter.render.summary import (
    Summary,
    needs_attention,
    status_name,
    stood_in_by,
    summarise,
)
from exporter.render.terminal import PLAIN_WIDTH
from exporter.results import sorted_states
from exporter.store import CheckState

STATUS_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta",
                "skipped": "yellow", "pending": "yellow"}
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


def _badge(state: CheckState) -> Text:
    status = status_name(state)
    label = status.upper()
    if state.outcome is not None and state.outcome.reason is not None:
        label += f"/{state.outcome.reason.value}"
    if not state.spec.enabled:
        label = "DISABLED"
    return Text(label, style=STATUS_STYLE[status] if state.spec.enabled else "dim")


ID_MAX_WIDTH = 22
WIDE = 120
"""From this width on, the section gets its own column."""


def _rows_table(width: int) -> Table:
    table = Table(box=None, show_header=False, show_edge=False, pad_edge=False,
                  padding=(0, 1), expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("id", overflow="fold", max_width=ID_MAX_WIDTH, style="bold")
    table.add_column("severity", no_wrap=True)
    if width >= WIDE:
        table.add_column("section", no_wrap=True, style="dim")
    table.add_column("what", overflow="fold", min_width=24)
    return table


def _add_row(table: Table, state: CheckState, what: RenderableType) -> None:
    cells: list[RenderableType] = [_badge(state), state.spec.id, _severity(state)]
    if len(table.columns) == 5:
        cells.append(state.spec.section)
    table.add_row(*cells, what)


def _severity(state: CheckState) -> Text:
    severity = state.spec.severity.value
    return Text(severity, style="red" if severity == "critical" else "")


def _attention_table(states: list[CheckState], width: int) -> Table:
    table = _rows_table(width)
    for state in states:
        message = state.outcome.message if state.outcome else "not run yet"
        alternative = stood_in_by(state)
        if alternative is not None:
            message += f" · does not block go-live: alternative {alternative} passes"
        what = Group(Text(state.spec.title), Text(message, style="dim", overflow="fold"))
        _add_row(table, state, what)
    return table


def _quiet_table(states: list[CheckState], cut: bool, width: int) -> Table:
    table = _rows_table(width)
    for state in states:
        message = state.outcome.message if state.outcome else ""
        what = Text(state.spec.title)
        what.append(f" · {message}", style="dim")
        if cut:
            what.no_wrap, what.overflow = True, "ellipsis"
        _add_row(table, state, what)
    return table


def _heading(text: str) -> Text:
    return Text(text, style="bold underline")


def _verdict(summary: Summary) -> Text:
    return Text(summary.verdict(), style="bold green" if summary.go_live else "bold red")


def render(states: Iterable[CheckState], console: Console, failures_only: bool = False) -> None:
    """Print the table and the verdict line on `console`."""
    ordered = sorted_states(states)
    summary = summarise(ordered)
    attention = sorted((s for s in ordered if needs_attention(s)),
                       key=lambda s: SEVERITY_RANK[s.spec.severity])  # stable: sections kept
    passing = [s for s in ordered if s.spec.enabled and not needs_attention(s)]
    disabled = [s for s in ordered if not s.spec.enabled]
    cut = console.is_terminal
    if attention:
        console.print(_heading(f"Needs attention ({len(attention)})"))
        console.print(_attention_table(attention, console.width))
        console.print()
    if failures_only:
        hidden = len(passing) + len(disabled)
        if hidden:
            console.print(Text(f"{len(passing)} passing and {len(disabled)} disabled checks "
                               "not shown (--failures-only)", style="dim"))
    else:
        if passing:
            console.print(_heading(f"Passing ({len(passing)})"))
            console.print(_quiet_table(passing, cut, console.width))
            console.print()
        if disabled:
            console.print(_heading(f"Disabled ({len(disabled)})"))
            console.print(_quiet_table(disabled, cut, console.width))
            console.print()
    console.print(_verdict(summary))


def to_table(states: Iterable[CheckState], failures_only: bool = False) -> str:
    """The plain-text rendering (no colour, fixed width) as a string."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, color_system=None, no_color=True,
                      width=PLAIN_WIDTH, highlight=False, emoji=False, markup=False)
    render(states, console, failures_only)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
