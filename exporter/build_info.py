"""What build is running: version, source revision and Python version, for
`readiness_exporter_build_info`."""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from exporter import __version__

REVISION_ENV = "READINESS_EXPORTER_REVISION"
"""Set by the image build (`--build-arg REVISION=$(git rev-parse HEAD)`)."""
REVISION_FILE = Path(__file__).with_name("REVISION")
"""Optional: a packager may write it at build time (a source tree without `.git`)."""
UNKNOWN = "unknown"
_REVISION = re.compile(r"[0-9A-Za-z._-]{1,64}")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """Labels of `readiness_exporter_build_info`."""

    version: str
    revision: str
    python_version: str


def _clean(value: str) -> str | None:
    value = value.strip()
    return value if _REVISION.fullmatch(value) else None


def _from_checkout(package_dir: Path) -> str | None:
    root = package_dir.parent
    if not (root / ".git").exists():
        return None
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return _clean(result.stdout) if result.returncode == 0 else None


def find_revision(environ: dict[str, str] | None = None, revision_file: Path = REVISION_FILE,
                  package_dir: Path | None = None) -> str:
    """The source revision: `$READINESS_EXPORTER_REVISION`, the build-time file, `git
    rev-parse HEAD` of a checkout, else "unknown" (malformed values count as unset)."""
    env = os.environ if environ is None else environ
    found = _clean(env.get(REVISION_ENV, ""))
    if found is None and revision_file.is_file():
        found = _clean(revision_file.read_text(encoding="utf-8", errors="replace")[:200])
    if found is None:
        found = _from_checkout(package_dir or Path(__file__).resolve().parent)
    return found or UNKNOWN


@functools.cache
def current() -> BuildInfo:
    """The running build (looked up once per process)."""
    return BuildInfo(__version__, find_revision(), platform.python_version())
