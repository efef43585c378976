"""PostgreSQL setting values with units, converted to base units (bytes, seconds).

`pg_settings` holds `shared_buffers` in 8kB pages, `work_mem` in kB,
`checkpoint_timeout` in s...; a baseline is written the way postgresql.conf is
(`4GB`, `64MB`, `5min`). Both sides are converted to bytes or seconds before comparing.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from exporter.probes.observed import describe

_MEMORY = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

_UNIT_RE = re.compile(r"^(\d+)?\s*([A-Za-z]+)$")
_VALUE_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
_EXPECT_RE = re.compile(r"^\s*(==|=|!=|>=|<=|>|<)?\s*([^<>=!\s].*?)\s*$")

OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge,
    "<=": operator.le, ">": operator.gt, "<": operator.lt,
}
_BOOL = {"on": "on", "true": "on", "yes": "on", "1": "on",
         "off": "off", "false": "off", "no": "off", "0": "off"}


def base_unit(pg_unit: str | None) -> tuple[str, float]:
    """`('bytes', 8192.0)` for `8kB`, `('seconds', 0.001)` for `ms`, `('', 1.0)` for none."""
    if not pg_unit:
        return "", 1.0
    match = _UNIT_RE.match(pg_unit.strip())
    if not match:
        raise ValueError(f"unknown unit {pg_unit!r}")
    count = float(match.group(1) or 1)
    unit = match.group(2)
    if unit in _MEMORY:
        return "bytes", count * _MEMORY[unit]
    if unit in _TIME:
        return "seconds", count * _TIME[unit]
    raise ValueError(f"unknown unit {pg_unit!r}")


def to_base(value: str, pg_unit: str | None) -> tuple[float, str]:
    """Convert a value written with or without a unit into the setting's base unit.

    A bare number is in the setting's own unit (as in postgresql.conf); `-1` stays -1.
    """
    kind, factor = base_unit(pg_unit)
    match = _VALUE_RE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a number with an optional unit")
    number = float(match.group(1))
    unit = match.group(2)
    if not unit or number == -1:
        return (number * factor if number != -1 else -1.0), kind
    if unit in _MEMORY and kind == "bytes":
        return number * _MEMORY[unit], kind
    if unit in _TIME and kind == "seconds":
        return number * _TIME[unit], kind
    raise ValueError(f"unit {unit!r} does not fit a setting measured in {pg_unit or 'no unit'}")


def human(value: float, unit: str) -> str:
    """`4GB` for 4294967296 bytes, `5min` for 300 seconds, `200` for a plain number."""
    table = _MEMORY if unit == "bytes" else _TIME if unit == "seconds" else {}
    for name, size in sorted(table.items(), key=lambda item: -item[1]):
        if value and value % size == 0 and size <= abs(value):
            return f"{value / size:g}{name}"
    return f"{value:g}" + ("B" if unit == "bytes" else "s" if unit == "seconds" else "")


@dataclass(frozen=True, slots=True)
class Expectation:
    """A parsed baseline entry such as `4GB`, `>= 200` or `on`."""

    op: str
    text: str

    @classmethod
    def parse(cls, raw: str | int | float | bool) -> Expectation:
        if isinstance(raw, bool):
            return cls("==", "on" if raw else "off")
        match = _EXPECT_RE.match(str(raw))
        if not match or not match.group(2):
            raise ValueError(f"cannot read expectation {raw!r}")
        op = match.group(1) or "=="
        return cls("==" if op == "=" else op, match.group(2))


@dataclass(frozen=True, slots=True)
class Comparison:
    """Result of comparing one setting with its expectation."""

    ok: bool
    actual: float | None  # base units, for numeric settings
    expected: float | None
    unit: str  # bytes | seconds | ''
    shown: str  # human form of the actual value


def compare(expect: Expectation, setting: str, vartype: str, pg_unit: str | None) -> Comparison:
    """Compare a `pg_settings` row (setting, vartype, unit) with an expectation."""
    if vartype in ("integer", "real"):
        actual, unit = to_base(setting, pg_unit)
        expected, _ = to_base(expect.text, pg_unit)
        shown = human(actual, unit)
        return Comparison(OPS[expect.op](actual, expected), actual, expected, unit, shown)
    if expect.op not in ("==", "!="):
        raise ValueError(f"{expect.op} needs a numeric setting")
    if vartype == "bool":
        want = _BOOL.get(expect.text.lower())
        if want is None:
            raise ValueError(f"{expect.text!r} is not a boolean")
        equal = _BOOL.get(setting.lower(), setting) == want
        shown = setting
    else:
        equal = setting.lower() == expect.text.lower()
        # An enum setting is one of a fixed set of words; a string setting may hold a
        # secret (`primary_conninfo` carries a password): shown only when configured.
        shown = setting if vartype == "enum" or equal else describe(setting)
    return Comparison(equal if expect.op == "==" else not equal, None, None, "", shown)
