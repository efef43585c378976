"""`redis`: Redis is up, requires a password, persists, and its keys expire (3.2.1-3.2.4).

One kind with an `aspect`: `ping` (PING answered, version and role), `auth` (a fresh
unauthenticated connection is refused with NOAUTH; the ACL `default` user is not
`nopass` where ACL GETUSER may be read), `persistence` (see `persistence`) and
`ttl` (see `ttl`). Every aspect except the unauthenticated probe uses the runtime's
client of the named `redis` connection (`exporter.transport.redis`).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from exporter.model import (
    CheckSpec,
    Findings,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.redis import persistence as redis_persistence
from exporter.probes.redis import ttl as redis_ttl
from exporter.transport.redis import CONNECTION, RedisClient, ReplyError, redis_client

__all__ = ["CONNECTION", "KIND", "RedisCheck", "objectives", "run"]


class RedisCheck(CheckSpec):
    """`kind: redis` options."""

    connection_fields: ClassVar[dict[str, str]] = {"connection": "redis"}

    kind: Literal["redis"]
    connection: str = Field(description="name of a `kind: redis` connection")
    aspect: Literal["ping", "auth", "persistence", "ttl"] = Field(
        default="ping", description="what to check"
    )
    persistence: redis_persistence.PersistenceOptions = Field(
        default=redis_persistence.PersistenceOptions(),
        description="options of aspect persistence",
    )
    ttl: redis_ttl.TtlOptions = Field(default=redis_ttl.TtlOptions(),
                                      description="options of aspect ttl")

    @model_validator(mode="after")
    def _options_match_aspect(self) -> RedisCheck:
        for name in ("persistence", "ttl"):
            if name in self.model_fields_set and self.aspect != name:
                raise ValueError(f"{name}: options only apply to aspect {name}")
        if self.aspect == "ttl" and self.ttl.time_budget >= self.timeout:
            raise ValueError(
                f"ttl.time_budget ({self.ttl.time_budget:g}s) must be shorter than timeout "
                f"({self.timeout:g}s)"
            )
        return self


UP = MetricFamily("readiness_redis_up", "1 when the server answered PING, 0 when not.")
PING_SECONDS = MetricFamily("readiness_redis_ping_seconds", "Round trip of the last PING.")
SERVER_INFO = MetricFamily("readiness_redis_server_info", "Server version and replication "
                           "role (value 1).", ("version", "role"))
AUTH_REQUIRED = MetricFamily(
    "readiness_redis_auth_required",
    "1 when an unauthenticated connection is refused (NOAUTH), 0 when it is served.",
)
DEFAULT_NOPASS = MetricFamily(
    "readiness_redis_default_user_nopass",
    "1 when the ACL default user is nopass; absent when ACLs cannot be read.",
)

_MESSAGE_OFFENDERS = 3


async def _ping(handle: RedisClient) -> Outcome:
    client = handle.client
    try:
        started = time.perf_counter()
        await client.ping()
        elapsed = time.perf_counter() - started
        info: dict[str, Any] = await client.info("server")
        replication: dict[str, Any] = await client.info("replication")
    except Exception as exc:
        return handle.error(exc, "PING").with_measurements((Measurement(UP.name, 0.0),)) \
            .outcome()
    version = str(info.get("redis_version", "unknown"))[:32]
    role = str(replication.get("role", "unknown"))[:16]
    return Outcome.passed(
        f"PONG from {handle.address} in {elapsed * 1000:.1f} ms (Redis {version}, {role})",
        (Measurement(UP.name, 1.0), Measurement(PING_SECONDS.name, elapsed),
         Measurement(SERVER_INFO.name, 1.0, {"version": version, "role": role})),
    )


async def _default_user_nopass(handle: RedisClient) -> bool | None:
    """Whether the ACL default user is nopass; None when ACLs cannot be read."""
    try:
        user: Any = await handle.client.acl_getuser("default")
    except ReplyError:  # NOPERM, ACL renamed, or Redis < 6
        return None
    if not user:
        return None
    flags = [f.decode() if isinstance(f, bytes) else str(f) for f in user.get("flags", [])]
    return "nopass" in flags and "off" not in flags


async def _auth(handle: RedisClient) -> Outcome:
    try:
        reply = await handle.unauthenticated_reply()
    except Exception as exc:
        return handle.error(exc, "unauthenticated PING").outcome()
    upper = reply.upper()
    refused = upper.startswith("-NOAUTH") or "AUTHENTICATION REQUIRED" in upper
    findings = Findings()
    findings.measure(AUTH_REQUIRED, 1.0 if refused else 0.0)
    if upper.startswith("-DENIED"):
        findings.problem("no password set (server is in protected mode)")
    elif not refused and upper.startswith("+PONG"):
        findings.problem("an unauthenticated PING was answered: no password required")
    elif not refused:
        return findings.error(ProbeError(
            Reason.PROTOCOL, f"unexpected reply to an unauthenticated PING from "
            f"{handle.address}"))

    nopass: bool | None = None
    acl_note = "ACL not checked (the connection has no credentials)"
    if handle.has_credentials:
        try:
            nopass = await _default_user_nopass(handle)
        except Exception as exc:
            return findings.error(handle.error(exc, "ACL GETUSER default"))
        acl_note = "ACL not readable" if nopass is None else "default user has a password"
    if nopass is not None:
        findings.measure(DEFAULT_NOPASS, 1.0 if nopass else 0.0)
        if nopass:
            findings.problem("ACL default user is nopass")
    findings.note(f"unauthenticated access refused (NOAUTH); {acl_note}")
    return findings.outcome()


def objectives(spec: RedisCheck) -> tuple[Measurement, ...]:
    """The aspect's configured objectives (none for ping and auth).

    They come from the configuration, so an `error` run (server unreachable, bad
    credentials) exports them too and dashboards keep their threshold lines.
    """
    if spec.aspect == "persistence":
        return redis_persistence.objectives(spec.persistence)
    if spec.aspect == "ttl":
        return redis_ttl.objectives(spec.ttl)
    return ()


async def _persistence(spec: RedisCheck, handle: RedisClient, ctx: ProbeContext) -> Outcome:
    try:
        verdict = await redis_persistence.review(handle.client, spec.persistence, ctx.now())
    except Exception as exc:
        return handle.error(exc, "persistence review").with_measurements(objectives(spec)) \
            .outcome()
    if verdict.problems:
        return Outcome.failed(f"{'; '.join(verdict.problems)} [{verdict.summary}]",
                              verdict.measurements)
    return Outcome.passed(verdict.summary, verdict.measurements)


async def _ttl(spec: RedisCheck, handle: RedisClient) -> Outcome:
    try:
        dbsize = int(await handle.client.dbsize())
        found = await redis_ttl.sample(handle.client, spec.ttl)
    except Exception as exc:
        return handle.error(exc, "TTL review").with_measurements(objectives(spec)).outcome()
    verdict = redis_ttl.judge(found, spec.ttl, dbsize)
    scope = "all" if found.complete else f"a sample of {found.sampled} of ~{dbsize}"
    if found.sampled == 0:
        return Outcome.passed("no keys to review", verdict.measurements)
    if verdict.offenders:
        named = ", ".join(f"{label} {share:.0%}"
                          for label, share in verdict.offenders[:_MESSAGE_OFFENDERS])
        more = len(verdict.offenders) - _MESSAGE_OFFENDERS
        extra = f" and {more} more" if more > 0 else ""
        return Outcome.failed(
            f"keys without TTL{_over_max(spec)} above "
            f"{spec.ttl.max_share_without_ttl:.0%}: {named}{extra} "
            f"({scope} keys)", verdict.measurements)
    return Outcome.passed(
        f"{verdict.overall:.0%} of {found.sampled} keys without TTL{_over_max(spec)}, "
        f"every prefix within "
        f"{spec.ttl.max_share_without_ttl:.0%} ({scope} keys)", verdict.measurements)


def _over_max(spec: RedisCheck) -> str:
    """Message suffix when over-long TTLs count as missing ones."""
    limited = spec.ttl.max_ttl is not None or spec.ttl.max_ttl_per_prefix
    return " (or over max TTL)" if limited else ""


async def run(spec: RedisCheck, ctx: ProbeContext) -> Outcome:
    """Run the configured aspect against the shared client."""
    try:
        handle = await redis_client(ctx, spec.connection)
    except ProbeError as exc:
        return exc.with_measurements(objectives(spec)).outcome()
    if spec.aspect == "ping":
        return await _ping(handle)
    if spec.aspect == "auth":
        return await _auth(handle)
    if spec.aspect == "persistence":
        return await _persistence(spec, handle, ctx)
    return await _ttl(spec, handle)


KIND = ProbeKind(
    name="redis",
    spec=RedisCheck,
    run=run,
    summary="Redis PING, password required (NOAUTH), persistence, and key TTL review.",
    metrics=(UP, PING_SECONDS, SERVER_INFO, AUTH_REQUIRED, DEFAULT_NOPASS,
             *redis_persistence.METRICS, *redis_ttl.METRICS),
)
