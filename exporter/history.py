"""The last N outcomes of every check, for the board's check pages.

A ring buffer per check, fed by `Store.subscribe`. When a state directory is given the
buffers are written to `<state_dir>/board-history.json` (at most every
`save_interval` seconds, atomically) and read back at start, so a restart keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exporter.store import CheckState, Store

log = logging.getLogger("readiness.history")

DEFAULT_LENGTH = 20
FILE_NAME = "board-history.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One past run of a check."""

    finished: float
    status: str
    reason: str | None
    message: str
    duration: float | None


class History:
    """Ring buffers of the last `length` outcomes per check id."""

    def __init__(self, length: int = DEFAULT_LENGTH, path: Path | None = None,
                 save_interval: float = 10.0) -> None:
        self.length = length
        self.path = path
        self.save_interval = save_interval
        self._entries: dict[str, deque[Entry]] = {}
        self._runs: dict[str, int] = {}
        self._last_save = 0.0
        self._saving = False
        self._write_failed = False
        self._known: Callable[[], Collection[str]] | None = None

    @classmethod
    def follow(cls, store: Store, state_dir: Path | None,
               length: int = DEFAULT_LENGTH) -> History:
        """A history fed by `store`, persisted under `state_dir` when one is given."""
        history = cls(length, state_dir / FILE_NAME if state_dir is not None else None)
        history.load()
        history._known = lambda: store.states.keys()
        store.subscribe(history.observe)
        return history

    def observe(self, states: Sequence[CheckState]) -> None:
        """Store listener: append each state's outcome when it is a new run."""
        for state in states:
            self._observe_one(state)
        self._forget_removed()

    def _forget_removed(self) -> None:
        """Drop the buffers of checks a reload removed (cheap when none were: a length
        comparison), persisted or not."""
        if self._known is None:
            return
        known = self._known()
        if len(self._entries) <= len(known) and len(self._runs) <= len(known):
            return
        current = set(known)
        for check_id in [c for c in self._entries if c not in current]:
            del self._entries[check_id]
        for check_id in [c for c in self._runs if c not in current]:
            del self._runs[check_id]

    def _observe_one(self, state: CheckState) -> None:
        check_id = state.spec.id
        if state.outcome is None or state.last_run is None:
            return
        if self._runs.get(check_id) == state.runs:
            return  # a reload re-notified the same run
        self._runs[check_id] = state.runs
        outcome = state.outcome
        self._buffer(check_id).append(Entry(
            state.last_run, outcome.status.value,
            outcome.reason.value if outcome.reason is not None else None,
            outcome.message, state.duration))
        if (self.path is not None and not self._saving
                and time.monotonic() - self._last_save >= self.save_interval):
            self._save_soon()

    def _buffer(self, check_id: str) -> deque[Entry]:
        buffer = self._entries.get(check_id)
        if buffer is None:
            buffer = self._entries[check_id] = deque(maxlen=self.length)
        return buffer

    def entries(self, check_id: str) -> list[Entry]:
        """Oldest first."""
        return list(self._entries.get(check_id, ()))

    def status_since(self, check_id: str) -> float | None:
        """Start of the newest run of equal statuses still in the buffer."""
        entries = self.entries(check_id)
        if not entries:
            return None
        since = entries[-1].finished
        for entry in reversed(entries):
            if entry.status != entries[-1].status:
                break
            since = entry.finished
        return since

    def _snapshot(self) -> dict[str, list[Entry]]:
        self._forget_removed()
        return {check_id: list(buffer) for check_id, buffer in self._entries.items()}

    def _save_soon(self) -> None:
        """Write in a worker thread when an event loop runs (a large history takes a
        while to serialise), else now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        self._saving = True
        self._last_save = time.monotonic()
        future = loop.run_in_executor(None, self._write, self._snapshot())
        future.add_done_callback(lambda _: setattr(self, "_saving", False))

    def save(self) -> None:
        """Write every buffer to the state file now (atomically); failures are logged."""
        if self.path is None:
            return
        self._last_save = time.monotonic()
        self._write(self._snapshot())

    def _write(self, snapshot: dict[str, list[Entry]]) -> None:
        assert self.path is not None
        document = {"version": FORMAT_VERSION,
                    "checks": {cid: [asdict(e) for e in entries]
                               for cid, entries in snapshot.items()}}
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".board-history-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if not self._write_failed:  # once, not every save_interval
                log.warning("cannot write the board history; set settings.state_dir to a "
                            "writable directory",
                            extra={"path": str(self.path), "error": exc.strerror})
            self._write_failed = True
        else:
            self._write_failed = False

    def load(self) -> None:
        """Read the state file if there is one; a damaged file is ignored (and logged)."""
        if self.path is None or not self.path.is_file():
            return
        try:
            document: Any = json.loads(self.path.read_text(encoding="utf-8"))
            if document.get("version") != FORMAT_VERSION:
                raise ValueError("unknown version")
            for check_id, items in document["checks"].items():
                buffer = self._buffer(str(check_id))
                for item in items:
                    buffer.append(Entry(float(item["finished"]), str(item["status"]),
                                        item.get("reason"), str(item["message"]),
                                        item.get("duration")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring an unreadable board history file",
                        extra={"path": str(self.path), "error": str(exc)[:200]})
            self._entries.clear()
