"""Write the reference rendering of the dashboards to `dashboards/<uid>.json`.

The panels live in exporter/mixin_dashboards.py (`readiness-exporter mixin` renders them
for a setup); the JSON files here use no selector and carry `${BOARD_URL}` and
`${RUNBOOK_BASE_URL}` in the `board_url` and `runbook_base` dashboard variables:

    .venv/bin/python dashboards/generate.py           # rewrite the JSON files
    .venv/bin/python dashboards/generate.py --check   # exit 1 when a file is out of date

A test asserts the committed JSON equals this output, so edit the panels and regenerate
rather than editing the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from exporter.mixin import REFERENCE_BOARD_URL, REFERENCE_RUNBOOK_BASE_URL
from exporter.mixin_dashboards import (  # noqa: F401  (re-exported for the tests)
    DASHBOARDS,
    PANELS,
    Dashboard,
    Panel,
    Query,
    render,
)
from exporter.mixin_dashboards import build as _build

HERE = Path(__file__).resolve().parent


def build() -> dict[str, dict[str, Any]]:
    """The reference rendering: no selector, URLs as `${BOARD_URL}`-style placeholders."""
    return _build(board_url=REFERENCE_BOARD_URL, runbook_url=REFERENCE_RUNBOOK_BASE_URL)


def path_of(uid: str, directory: Path = HERE) -> Path:
    """`dashboards/<uid>.json`."""
    return directory / f"{uid}.json"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with `--check` report the ones that are out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for uid, dashboard in build().items():
        target = path_of(uid, args.out)
        text = render(dashboard)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(target.name)
        if not args.check:
            target.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
