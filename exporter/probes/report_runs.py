"""Which report files make up the newest CI run, and whether a file names the release.

A CI job writes several report files per run (one JUnit file per module, one scan per
image). Judging only the newest file ignores failures in the others, so `report`
reads every file of the newest run. A run is, by `run_by`:

- `directory`: the files that share the parent directory of the newest match;
- `run_id`: the files whose path gives the same first group of `run_id_pattern` (a
  regular expression searched in the path) as the newest match;
- `mtime_window`: the files modified within `run_window` before the newest match.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporter.probes.report_formats import ReportError

RunBy = Literal["directory", "run_id", "mtime_window"]
# Files next to a report that state the release it was built from.
SIDECAR_NAMES = ("release", "RELEASE", "release.txt", "VERSION", "version")


class NoReport(Exception):
    """No report exists (the check fails: nothing shows the item is done)."""


class RunConfigError(ValueError):
    """The run cannot be told with the configured options."""


@dataclass(frozen=True, slots=True)
class ReportFile:
    """One file of the selected run, read."""

    path: str  # file path or URL
    mtime: float | None  # file time or HTTP Last-Modified
    data: bytes


@dataclass(frozen=True, slots=True)
class RunSelection:
    """How to pick the newest run among the files a glob matches."""

    pattern: str
    run_by: RunBy
    run_id_pattern: str | None
    run_window: float
    max_bytes: int
    max_files: int


def _matches(pattern: str) -> list[tuple[float, str]]:
    found = []
    for name in glob.glob(os.path.expanduser(pattern), recursive=True):
        try:
            stat = os.stat(name)
        except OSError:
            continue
        if os.path.isfile(name) and not _is_sidecar(name):
            found.append((stat.st_mtime, name))
    return found


def _is_sidecar(name: str) -> bool:
    return Path(name).name in SIDECAR_NAMES or name.endswith(".release")


def _run_id(path: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.search(path)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _members(selection: RunSelection, files: list[tuple[float, str]]) -> list[tuple[float, str]]:
    newest_mtime, newest = max(files)
    if selection.run_by == "directory":
        parent = os.path.dirname(newest)
        return [f for f in files if os.path.dirname(f[1]) == parent]
    if selection.run_by == "mtime_window":
        return [f for f in files if newest_mtime - f[0] <= selection.run_window]
    assert selection.run_id_pattern is not None
    pattern = re.compile(selection.run_id_pattern)
    wanted = _run_id(newest, pattern)
    if wanted is None:
        raise RunConfigError(f"run_id_pattern {selection.run_id_pattern!r} does not match the "
                          f"newest report {newest}: change run_id_pattern or run_by")
    return [f for f in files if _run_id(f[1], pattern) == wanted]


def _read(path: str, max_bytes: int) -> bytes:
    size = os.stat(path).st_size
    if size > max_bytes:
        raise ReportError(f"{path} is {size} bytes, over max_bytes {max_bytes}")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ReportError(f"{path} is over max_bytes {max_bytes}")
    return data


def newest_run(selection: RunSelection) -> list[ReportFile]:
    """Every file of the newest run, oldest first (blocking: call in a thread)."""
    files = _matches(selection.pattern)
    if not files:
        raise NoReport(f"no report matches {selection.pattern}")
    members = sorted(_members(selection, files))
    if len(members) > selection.max_files:
        raise RunConfigError(f"the newest run has {len(members)} report files, over max_files "
                          f"{selection.max_files}: narrow path or change run_by")
    return [ReportFile(name, mtime, _read(name, selection.max_bytes))
            for mtime, name in members]


def release_pattern(release: str) -> re.Pattern[str]:
    """The release as a whole token: `v1.4.2` and `unit-1.4.2.xml` name 1.4.2;
    `1.4.20`, `11.4.2` and `1.4.2-rc1` do not."""
    return re.compile(r"(?:^|(?<=[/\\_\-\s.]))v?" + re.escape(release)
                      + r"(?=$|[/\\_\s]|\.[^0-9])")


def sidecar_release(path: str) -> str | None:
    """The release stated by a sidecar of `path` (`<file>.release`, else a `release`,
    `release.txt` or `VERSION` file in its directory), stripped; None without one."""
    candidates = [path + ".release"]
    directory = os.path.dirname(path)
    candidates += [os.path.join(directory, name) for name in SIDECAR_NAMES]
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8") as handle:
                return handle.read(256).strip()
        except (OSError, UnicodeDecodeError):
            continue
    return None


def names_release(path: str, release: str, properties: tuple[str, ...]) -> str | None:
    """How the report names `release` (`property`, `file name`, `sidecar`), else None.

    `properties` are release values the report carries itself (JUnit properties)."""
    if release in properties or f"v{release}" in properties:
        return "property"
    if release_pattern(release).search(path.replace(os.sep, "/")):
        return "file name"
    stated = None if "://" in path else sidecar_release(path)
    if stated is not None and stated in (release, f"v{release}"):
        return "sidecar"
    return None
