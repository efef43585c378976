"""Persistence review for `kind: redis, aspect: persistence` (3.2.3).

RDB save rules and `appendonly` come from `CONFIG GET`; where CONFIG is renamed away or
forbidden by ACL, `INFO persistence` is used instead: it shows whether AOF is on, but
not the save rules, so RDB then counts as configured only when a background save has
completed since the server started. Save and write status and the last save time always
come from INFO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exporter.model import Duration, Measurement, MetricFamily
from exporter.transport.redis import PermissionDenied, Redis, ReplyError


class PersistenceOptions(BaseModel):
    """`persistence:` options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require: Literal["any", "rdb", "aof", "both"] = Field(
        default="any", description="which persistence must be on"
    )
    max_age: Duration | None = Field(
        default=86400.0, gt=0,
        description="fail when changes are pending and the last RDB save is older; "
        "null: no age rule",
    )


RDB_ENABLED = MetricFamily("readiness_redis_rdb_enabled",
                           "1 when RDB snapshots are configured (save rules).")
AOF_ENABLED = MetricFamily("readiness_redis_aof_enabled", "1 when appendonly is on.")
SAVE_RULES = MetricFamily("readiness_redis_rdb_save_rules",
                          "Number of RDB save rules (only when CONFIG is readable).")
BGSAVE_OK = MetricFamily("readiness_redis_rdb_last_bgsave_ok",
                         "1 when the last background RDB save succeeded.")
AOF_WRITE_OK = MetricFamily("readiness_redis_aof_last_write_ok",
                            "1 when the last AOF write succeeded (only with AOF on).")
LAST_SAVE = MetricFamily("readiness_redis_rdb_last_save_timestamp_seconds",
                         "Time of the last successful RDB save (or server start).")
CHANGES = MetricFamily("readiness_redis_rdb_changes_since_last_save",
                       "Writes not yet in an RDB snapshot.")
AGE_TARGET = MetricFamily(
    "readiness_redis_rdb_last_save_age_target_seconds",
    "Objective: maximum age of the last RDB save while changes are pending.",
)
SOURCE = MetricFamily("readiness_redis_persistence_source_info",
                      "Where the persistence settings were read: config or info.", ("source",))

METRICS = (RDB_ENABLED, AOF_ENABLED, SAVE_RULES, BGSAVE_OK, AOF_WRITE_OK, LAST_SAVE, CHANGES,
           AGE_TARGET, SOURCE)


def objectives(options: PersistenceOptions) -> tuple[Measurement, ...]:
    """The configured maximum save age: known before the server is asked, so exported
    also when the review errors."""
    if options.max_age is None:
        return ()
    return (Measurement(AGE_TARGET.name, options.max_age),)


@dataclass(frozen=True, slots=True)
class PersistenceVerdict:
    """Problems found (empty: ready), a summary and the measurements."""

    problems: list[str]
    summary: str
    measurements: tuple[Measurement, ...]


async def _config(client: Redis) -> dict[str, str] | None:
    """`save` and `appendonly` from CONFIG GET, or None when CONFIG cannot be used."""
    try:
        save = await client.config_get("save")
        appendonly = await client.config_get("appendonly")
    except ReplyError as exc:  # renamed ("unknown command") or NOPERM
        text = str(exc).lower()
        if "unknown command" in text or "no permissions" in text or \
                isinstance(exc, PermissionDenied):
            return None
        raise
    merged = {**_text(save), **_text(appendonly)}
    return merged


def _text(mapping: Any) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)):
        (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in dict(mapping).items()
    }


def _int(info: dict[str, Any], name: str, default: int = 0) -> int:
    try:
        return int(info.get(name, default))
    except (TypeError, ValueError):
        return default


async def review(client: Redis, options: PersistenceOptions,
                 now: float) -> PersistenceVerdict:
    """Read the settings and status and judge them against `options`."""
    config = await _config(client)
    info: dict[str, Any] = await client.info("persistence")

    aof_on = _int(info, "aof_enabled") == 1
    if config is not None:
        source = "config"
        rules = config.get("save", "").split()
        save_rules = len(rules) // 2
        rdb_on = save_rules > 0
        aof_on = config.get("appendonly", "no") == "yes"
    else:
        source = "info"
        save_rules = -1
        rdb_on = _int(info, "rdb_last_bgsave_time_sec", -1) >= 0

    bgsave_ok = str(info.get("rdb_last_bgsave_status", "ok")) == "ok"
    aof_write_ok = str(info.get("aof_last_write_status", "ok")) == "ok"
    last_save = float(_int(info, "rdb_last_save_time"))
    changes = _int(info, "rdb_changes_since_last_save")

    problems: list[str] = []
    wanted = {"any": rdb_on or aof_on, "rdb": rdb_on, "aof": aof_on,
              "both": rdb_on and aof_on}[options.require]
    if not wanted:
        unknown = " (CONFIG unavailable, no background save seen)" if source == "info" else ""
        need = {"any": "RDB or AOF", "rdb": "RDB", "aof": "AOF", "both": "RDB and AOF"}
        problems.append(f"{need[options.require]} persistence is off{unknown}")
    if rdb_on and not bgsave_ok:
        problems.append("last background save failed")
    if aof_on and not aof_write_ok:
        problems.append("last AOF write failed")
    age = max(0.0, now - last_save) if last_save > 0 else 0.0
    if rdb_on and options.max_age is not None and changes > 0 and age > options.max_age:
        problems.append(f"{changes} changes unsaved, last RDB save {_ago(age)} ago "
                        f"(max {_ago(options.max_age)})")

    modes = [name for name, on in (("RDB", rdb_on), ("AOF", aof_on)) if on]
    summary = f"{' + '.join(modes) or 'no persistence'} (from {source})"

    measurements = [
        Measurement(RDB_ENABLED.name, 1.0 if rdb_on else 0.0),
        Measurement(AOF_ENABLED.name, 1.0 if aof_on else 0.0),
        Measurement(BGSAVE_OK.name, 1.0 if bgsave_ok else 0.0),
        Measurement(LAST_SAVE.name, last_save),
        Measurement(CHANGES.name, float(changes)),
        Measurement(SOURCE.name, 1.0, {"source": source}),
    ]
    if save_rules >= 0:
        measurements.append(Measurement(SAVE_RULES.name, float(save_rules)))
    if aof_on:
        measurements.append(Measurement(AOF_WRITE_OK.name, 1.0 if aof_write_ok else 0.0))
    measurements.extend(objectives(options))
    return PersistenceVerdict(problems, summary, tuple(measurements))


def _ago(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
