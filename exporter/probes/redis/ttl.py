"""TTL review for `kind: redis, aspect: ttl` (3.2.4): a bounded SCAN with pipelined PTTL.

The keyspace is walked with `SCAN cursor COUNT n` (never `KEYS`), each batch's TTLs
read in one pipeline, and the walk stops at the first of: cursor back at 0 (complete),
`max_keys` keys sampled, or `time_budget` elapsed. SCAN visits keys in hash-table
order, so a partial walk is an unbiased sample. Keys are grouped by prefix (the text
before the first separator); a key whose TTL exceeds `max_ttl` (or its prefix's limit)
counts as a key without TTL. Only the `top_prefixes` largest groups get a label, the
rest share `other`, so the label set stays bounded whatever the keyspace holds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from exporter.model import Duration, Measurement, MetricFamily
from exporter.transport.redis import Redis

NO_PREFIX = "(none)"
OTHER = "other"
_MAX_TRACKED_PREFIXES = 10_000
_MAX_LABEL_CHARS = 64


class TtlOptions(BaseModel):
    """`ttl:` options of the TTL review."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_share_without_ttl: float = Field(
        default=0.1, ge=0, le=1,
        description="fail when a prefix has a larger share of keys without a TTL",
    )
    scan_count: int = Field(default=100, gt=0, le=100_000, description="SCAN COUNT hint")
    max_keys: int = Field(default=100_000, gt=0, le=10_000_000, description="key cap")
    time_budget: Duration = Field(default=5.0, gt=0, description="stop scanning after this")
    match: str | None = Field(default=None, description="SCAN MATCH pattern (default all)")
    separator: str = Field(default=":", min_length=1, description="prefix separator")
    top_prefixes: int = Field(default=10, gt=0, le=100, description="prefixes with a label")
    ignore_prefixes: list[str] = Field(
        default=[], description="prefixes whose keys are meant to live forever (not judged)"
    )
    max_ttl: Duration | None = Field(
        default=None, gt=0,
        description="longest accepted TTL: a key set to expire later counts as a key "
                    "without TTL (a 10-year TTL is not a TTL); default: any TTL counts",
    )
    max_ttl_per_prefix: dict[str, Duration] = Field(
        default={}, description="longest accepted TTL per key prefix, overriding max_ttl",
    )

    def ttl_limit_ms(self, prefix: str) -> float | None:
        """The longest accepted TTL in milliseconds for keys of `prefix`, if any."""
        limit = self.max_ttl_per_prefix.get(prefix, self.max_ttl)
        return None if limit is None else limit * 1000.0

    def counts_as_persistent(self, prefix: str, pttl: int) -> bool:
        """A key without TTL, or whose TTL exceeds its prefix's limit."""
        if pttl == -1:
            return True
        limit = self.ttl_limit_ms(prefix)
        return limit is not None and pttl > limit


KEYS_SAMPLED = MetricFamily(
    "readiness_redis_ttl_keys_sampled",
    "Keys whose TTL the last review read (bounded SCAN sample).",
)
SCAN_COMPLETE = MetricFamily(
    "readiness_redis_ttl_scan_complete",
    "1 when the last review walked the whole keyspace, 0 when it stopped at a bound.",
)
SCAN_SECONDS = MetricFamily(
    "readiness_redis_ttl_scan_duration_seconds",
    "Wall time of the last review's SCAN walk.",
)
KEYSPACE_KEYS = MetricFamily(
    "readiness_redis_keyspace_keys",
    "Keys in the database (DBSIZE) when the review ran.",
)
PREFIX_KEYS = MetricFamily(
    "readiness_redis_ttl_prefix_keys_sampled",
    "Sampled keys per prefix (top prefixes by count, the rest as 'other').",
    ("prefix",),
)
PREFIX_RATIO = MetricFamily(
    "readiness_redis_ttl_prefix_without_ttl_ratio",
    "Share of sampled keys of a prefix that have no TTL.",
    ("prefix",),
)
OVERALL_RATIO = MetricFamily(
    "readiness_redis_ttl_without_ttl_ratio",
    "Share of all sampled keys that have no TTL.",
)
TARGET_RATIO = MetricFamily(
    "readiness_redis_ttl_without_ttl_target_ratio",
    "Objective: highest accepted share of keys without TTL per prefix.",
)

METRICS = (KEYS_SAMPLED, SCAN_COMPLETE, SCAN_SECONDS, KEYSPACE_KEYS, PREFIX_KEYS,
           PREFIX_RATIO, OVERALL_RATIO, TARGET_RATIO)


def objectives(options: TtlOptions) -> tuple[Measurement, ...]:
    """The configured highest share without TTL: exported also when the review errors."""
    return (Measurement(TARGET_RATIO.name, options.max_share_without_ttl),)


@dataclass
class TtlSample:
    """Counts gathered by one walk."""

    sampled: int = 0
    complete: bool = False
    seconds: float = 0.0
    keys: Counter[str] = field(default_factory=Counter)
    persistent: Counter[str] = field(default_factory=Counter)


def prefix_of(key: bytes | str, separator: bytes) -> str:
    """The label-safe prefix of `key` (text before the first separator)."""
    raw = key if isinstance(key, bytes) else key.encode()
    head, found, _ = raw.partition(separator)
    if not found:
        return NO_PREFIX
    return head.decode("utf-8", "backslashreplace")[:_MAX_LABEL_CHARS]


async def sample(client: Redis, options: TtlOptions) -> TtlSample:
    """Walk the keyspace within the bounds and count keys with and without TTL."""
    result = TtlSample()
    separator = options.separator.encode()
    started = time.monotonic()
    cursor = 0
    while True:
        cursor, keys = await client.scan(cursor=cursor, match=options.match,
                                         count=options.scan_count)
        keys = keys[: options.max_keys - result.sampled]
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.pttl(key)
            ttls = await pipe.execute()
            for key, ttl in zip(keys, ttls, strict=True):
                if ttl == -2:  # expired or deleted between SCAN and PTTL
                    continue
                prefix = prefix_of(key, separator)
                if prefix not in result.keys and len(result.keys) >= _MAX_TRACKED_PREFIXES:
                    prefix = OTHER
                result.sampled += 1
                result.keys[prefix] += 1
                if options.counts_as_persistent(prefix, ttl):
                    result.persistent[prefix] += 1
        if cursor == 0:
            result.complete = True
            break
        if result.sampled >= options.max_keys or time.monotonic() - started >= \
                options.time_budget:
            break
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True, slots=True)
class TtlVerdict:
    """The judged sample: bounded buckets, offenders and measurements."""

    buckets: dict[str, tuple[int, int]]  # label -> (keys, keys without TTL)
    offenders: list[tuple[str, float]]
    overall: float
    measurements: tuple[Measurement, ...]


def judge(found: TtlSample, options: TtlOptions, dbsize: int) -> TtlVerdict:
    """Fold prefixes into top-N + other, compare each bucket with the threshold."""
    ignored = set(options.ignore_prefixes)
    ranked = [p for p, _ in found.keys.most_common() if p != OTHER]
    top = ranked[: options.top_prefixes]
    buckets: dict[str, tuple[int, int]] = {p: (found.keys[p], found.persistent[p]) for p in top}
    rest_keys = sum(found.keys[p] for p in found.keys if p not in buckets)
    rest_persistent = sum(found.persistent[p] for p in found.keys if p not in buckets)
    if rest_keys:
        buckets[OTHER] = (rest_keys, rest_persistent)

    # Ignored prefixes are judged out of the "other" bucket too.
    judged: dict[str, tuple[int, int]] = {}
    for label, (keys, persistent) in buckets.items():
        if label == OTHER:
            keys -= sum(found.keys[p] for p in ignored if p not in buckets)
            persistent -= sum(found.persistent[p] for p in ignored if p not in buckets)
        if label in ignored or keys <= 0:
            continue
        judged[label] = (keys, persistent)
    offenders = sorted(
        ((label, persistent / keys) for label, (keys, persistent) in judged.items()
         if persistent / keys > options.max_share_without_ttl),
        key=lambda item: (-item[1], item[0]),
    )
    total_persistent = sum(found.persistent.values())
    overall = total_persistent / found.sampled if found.sampled else 0.0

    measurements = [
        Measurement(KEYS_SAMPLED.name, float(found.sampled)),
        Measurement(SCAN_COMPLETE.name, 1.0 if found.complete else 0.0),
        Measurement(SCAN_SECONDS.name, found.seconds),
        Measurement(KEYSPACE_KEYS.name, float(dbsize)),
        Measurement(OVERALL_RATIO.name, overall),
        *objectives(options),
    ]
    for label, (keys, persistent) in buckets.items():
        measurements.append(Measurement(PREFIX_KEYS.name, float(keys), {"prefix": label}))
        measurements.append(Measurement(PREFIX_RATIO.name, persistent / keys,
                                        {"prefix": label}))
    return TtlVerdict(buckets, offenders, overall, tuple(measurements))
