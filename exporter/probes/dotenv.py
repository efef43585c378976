"""A small, strict reader of `.env` files (KEY=value lines) shared by probes."""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class DotenvError(Exception):
    """The file cannot be read or parsed (message names the file and line, no values)."""


def parse_dotenv(path: Path) -> dict[str, str]:
    """Parse `KEY=value` lines; `#` comments, blank lines, quotes and `export ` allowed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DotenvError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DotenvError(f"{path}: not UTF-8 text") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise DotenvError(f"{path}:{number}: not a KEY=value line")
        key, value = match.group(1), match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
