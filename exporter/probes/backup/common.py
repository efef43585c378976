"""Small helpers shared by the backup family: human units, metric families used twice."""

from __future__ import annotations

import re

from exporter.model import MetricFamily

RTO_TARGET = MetricFamily(
    "readiness_rto_target_seconds",
    "Recovery time objective of the scenario (from the configuration).",
    ("scenario",),
)
DRILL_DURATION = MetricFamily(
    "readiness_restore_drill_duration_seconds",
    "Wall time of the newest successful drill of the scenario: its measured RTO.",
    ("scenario",),
)


def human_duration(seconds: float) -> str:
    """`95` -> `1m35s`, `26000` -> `7h13m`, `200000` -> `2d7h`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def human_bytes(size: float) -> str:
    """`1536` -> `1.5 KiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_SLUG_RE = re.compile(r"[^a-z0-9_]+")


def slug(text: str) -> str:
    """Lower-case `[a-z0-9_]` form of a name, for database names."""
    return _SLUG_RE.sub("_", text.lower()).strip("_")[:30] or "x"
