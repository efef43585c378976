"""The newest segment of a WAL archive directory: the point-in-time recovery point (10.2).

Reads the archive itself rather than the server's report of it (`pg_stat_archiver` says
`archive_command` exited 0, not that a segment is there). Segment files are named by
their 24 hex digits, as `archive_command` copies them (`000000010000000000000003`) or
as pgBackRest stores them (`...03-<sha1>.gz`); history, backup-label and `.partial`
files are not segments. The newest segment's mtime is when it was archived.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from exporter.model import ProbeError, Reason

SEGMENT_RE = re.compile(
    r"^[0-9A-F]{24}(-[0-9a-f]{40})?(\.(gz|lz4|zst|bz2|xz|br))?$")


def _newest_under(root: str) -> tuple[float | None, int]:
    """(newest segment mtime, segment count) under `root`, walked with `os.scandir`."""
    newest: float | None = None
    count = 0
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                found = list(entries)
        except FileNotFoundError:
            if current == root:
                raise
            continue  # removed by expiry during the walk
        for entry in found:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                if not SEGMENT_RE.match(entry.name):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            count += 1
            newest = mtime if newest is None else max(newest, mtime)
    return newest, count


def newest_segment(directory: Path) -> tuple[float | None, str]:
    """(archive time of the newest WAL segment under `directory`, note). Blocking: call
    through `ctx.run_blocking`. `ProbeError(config)` when the directory cannot be read."""
    try:
        newest, _count = _newest_under(str(directory))
    except FileNotFoundError:
        raise ProbeError(Reason.CONFIG, f"WAL archive {directory} does not exist") from None
    except OSError as exc:
        raise ProbeError(Reason.CONFIG, f"cannot read WAL archive {directory}: "
                         f"{exc.strerror}") from None
    if newest is None:
        return None, f"no WAL segment in {directory}"
    return newest, ""
