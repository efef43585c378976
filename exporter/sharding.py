"""Which shard of the checks this process runs: `--shard N`, or `--shard auto`, which
takes N from the pod's StatefulSet ordinal (the `-N` suffix of its name)."""

from __future__ import annotations

import os
import re
import socket
import zlib
from collections.abc import Iterable, Mapping

from exporter.model import CheckSpec, Severity

AUTO = "auto"
POD_NAME_ENV = "POD_NAME"
TOTAL_SHARDS_ENV = "TOTAL_SHARDS"
_ORDINAL = re.compile(r"-(\d+)$")


class ShardError(ValueError):
    """The shard cannot be determined; the message names what to change."""


def ordinal_of(pod_name: str) -> int | None:
    """The StatefulSet ordinal at the end of a pod name (`readiness-2` -> 2), else None."""
    match = _ORDINAL.search(pod_name)
    return int(match.group(1)) if match else None


def auto_shard(env: Mapping[str, str] | None = None, hostname: str | None = None) -> int:
    """The ordinal of this pod: from `POD_NAME` (the downward API), else the hostname
    (a StatefulSet pod's hostname is its name)."""
    env = os.environ if env is None else env
    name = env.get(POD_NAME_ENV) or (hostname if hostname is not None else socket.gethostname())
    ordinal = ordinal_of(name)
    if ordinal is None:
        source = f"${POD_NAME_ENV}" if env.get(POD_NAME_ENV) else "the hostname"
        raise ShardError(f"--shard auto: {source} {name!r} does not end in -N (a StatefulSet "
                         f"ordinal); set {POD_NAME_ENV} from the downward API "
                         "(metadata.name) or pass --shard N")
    return ordinal


def total_shards_of(flag: int | None, env: Mapping[str, str] | None = None) -> int:
    """`--total-shards`, else `$TOTAL_SHARDS`, else 1."""
    env = os.environ if env is None else env
    if flag is not None:
        return flag
    text = env.get(TOTAL_SHARDS_ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit():
        raise ShardError(f"${TOTAL_SHARDS_ENV}: expected a whole number, got {text!r}")
    return int(text)


def resolve_shard(value: str, total_shards: int, env: Mapping[str, str] | None = None,
                  hostname: str | None = None) -> int:
    """`--shard` (a number or `auto`) checked against `--total-shards`."""
    if total_shards < 1:
        raise ShardError("--total-shards must be at least 1")
    if value == AUTO:
        shard = auto_shard(env, hostname)
    elif value.isdigit():
        shard = int(value)
    else:
        raise ShardError(f"--shard: expected a number or 'auto', got {value!r}")
    if not 0 <= shard < total_shards:
        raise ShardError(f"--shard must be between 0 and {total_shards - 1} "
                         f"(--total-shards - 1); got {shard}"
                         + (" from the pod's ordinal: set --total-shards to the "
                            "StatefulSet's replicas" if value == AUTO else ""))
    return shard


def placement(specs: Iterable[CheckSpec]) -> dict[str, str]:
    """Check id -> the id whose hash picks its shard. A check listed in an aggregate's
    `ids` follows that aggregate (the first by id), so the aggregate sees its inputs;
    else an `any_of` alternative follows the check that names it (the first by id), so
    the check's shard sees its alternative; every other check is placed by its own id.
    Every shard computes the same map from the same configuration.

    An alternative held by an aggregate, or named by several checks that land on other
    shards, is not on every such check's shard: there it is never assumed (the check
    keeps blocking that shard's go-live while its probe skips it).
    """
    specs = list(specs)
    keys = {s.id: s.id for s in specs}
    for spec in sorted(specs, key=lambda s: s.id):
        listed: list[str] = list(getattr(spec, "ids", None) or ())
        if not listed or not getattr(type(spec), "summarises_other_checks", False):
            continue
        for check_id in listed:
            if keys.get(check_id) == check_id and check_id != spec.id:
                keys[check_id] = keys[spec.id]
    leader: dict[str, str] = {}
    for spec in sorted(specs, key=lambda s: s.id):
        for check_id in spec.any_of:
            if keys.get(check_id) == check_id and check_id != spec.id:
                leader.setdefault(check_id, spec.id)
    for check_id in leader:
        keys[check_id] = _follow(check_id, leader, keys)
    return keys


def _follow(check_id: str, leader: dict[str, str], keys: dict[str, str]) -> str:
    """The key of the check at the head of `check_id`'s chain of `any_of` leaders."""
    seen = {check_id}
    current = leader[check_id]
    while current in leader and current not in seen:  # a cycle is refused at load
        seen.add(current)
        current = leader[current]
    return keys[current]


def shard_of(key: str, total_shards: int) -> int:
    """The shard of a placement key (crc32, stable across processes and versions)."""
    return zlib.crc32(key.encode("utf-8")) % total_shards


def covered_by_fleet_go_live(spec: CheckSpec) -> bool:
    """An aggregate that passes exactly when every critical check it selects passes:
    the fleet's go-live (every shard's `readiness_go_live`) implies its verdict."""
    return (getattr(type(spec), "summarises_other_checks", False)
            and getattr(spec, "require", None) == "all"
            and list(getattr(spec, "severities", ())) == [Severity.CRITICAL]
            and getattr(spec, "max_age", None) is None)
