"""A one-line progress display on stderr while `check` runs (terminal only)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.status import Status as Spinner

from exporter.model import Status
from exporter.render.terminal import console_for
from exporter.store import CheckState


class ProgressLine:
    """`checking 37/97 · 3 failing · 2.1.1`: updated per finished check, erased at the end.

    Does nothing when the stream is not a terminal, so piped output stays clean.
    """

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.failing = 0
        out = sys.stderr if stream is None else stream
        self._spinner = (Spinner(self._text(None), console=console_for(out))
                         if out.isatty() else None)

    def _text(self, last: str | None) -> str:
        text = f"checking {self.done}/{self.total}"
        if self.failing:
            text += f" · {self.failing} failing or erroring"
        if last:
            text += f" · {last}"
        return text

    def __call__(self, state: CheckState) -> None:
        """Store listener: count one finished check."""
        self.done += 1
        if state.spec.enabled and state.status in (Status.FAIL, Status.ERROR):
            self.failing += 1
        if self._spinner is not None:
            self._spinner.update(self._text(state.spec.id))

    def __enter__(self) -> ProgressLine:
        if self._spinner is not None:
            self._spinner.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._spinner is not None:
            self._spinner.stop()
