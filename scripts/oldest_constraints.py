"""Print pip constraints pinning every dependency of pyproject.toml at its lower bound.

`make test-oldest` installs the package with these constraints, so the tests run against
the oldest versions pyproject.toml allows. Usage: python scripts/oldest_constraints.py
[--extra test] [pyproject.toml]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# `name[extras]>=1.2,<2` -> name, 1.2 (only `>=` bounds pin; `==`, `~=` keep theirs).
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")
_LOWER_BOUND = re.compile(r">=\s*([0-9][^,;\s]*)")


def lower_bound_pins(requirements: list[str]) -> list[str]:
    """Return `name==version` for each requirement that states a `>=` lower bound."""
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement.split(";", 1)[0])
        if match is None:
            continue
        name, spec = match.group(1).lower(), match.group(2)
        bound = _LOWER_BOUND.search(spec)
        if bound is not None:
            pins[name] = f"{name}=={bound.group(1)}"
    return sorted(pins.values())


def main(argv: list[str] | None = None) -> int:
    """Print the constraints for the runtime dependencies and the chosen extras."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="also pin this extra")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in args.extra:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    sys.stdout.write("".join(f"{pin}\n" for pin in lower_bound_pins(requirements)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
