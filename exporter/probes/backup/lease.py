"""Run-mode restore drills on one replica only: a coordination.k8s.io/v1 Lease.

The lease is taken and renewed by kubernetes-asyncio's own leader election
(`LeaderElection` with a `LeaseLock`): `try_acquire_or_renew` once when the check first
runs (so that run already knows who leads), then the library's `acquire` loop and
`renew_loop` in a background task for as long as the process runs. Expiry is judged the
library's way: a candidate takes the lease once it has seen the same record unchanged
for `duration` seconds (local observation, no clock comparison between replicas).

Leadership is held continuously rather than per drill because drill results are kept in
each replica's own state directory: a lease released after every drill would let every
replica, its own records being old, run the "due" drill in turn. On a clean stop
(`stop_all`) the lease is released (holder cleared) so another replica takes over on its
next try; after a crash it expires after `duration` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock
from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.model import Duration, KubernetesConnectionName, ProbeContext, ProbeError, Reason

log = logging.getLogger("readiness.backup.lease")

RESOURCE = "leases.coordination.k8s.io"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class DrillLease(BaseModel):
    """`lease:` of a run-mode `restore_drill` check."""

    model_config = ConfigDict(extra="forbid")

    connection: KubernetesConnectionName = Field(description="a `kubernetes` connection")
    namespace: str = Field(pattern=_DNS_LABEL, description="namespace of the Lease")
    name: str | None = Field(default=None, pattern=_DNS_NAME, description="Lease name "
                             "(default readiness-restore-drill-<scenario>)")
    duration: Duration = Field(default=60.0, ge=3, le=3600, description="leaseDurationSeconds;"
                               " a crashed holder is replaced after this long")

    @field_validator("duration")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        if value != int(value):
            raise ValueError("duration must be whole seconds")
        return value

    def lease_name(self, scenario: str) -> str:
        """The Lease's name for `scenario`."""
        if self.name is not None:
            return self.name
        tail = re.sub(r"[^a-z0-9.-]+", "-", scenario.lower()).strip("-.") or "drill"
        return f"readiness-restore-drill-{tail}"[:253].rstrip("-.")


def identity() -> str:
    """This replica's holder identity: the pod name (HOSTNAME), else the host name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


class _Api:
    """The LeaseLock's CoordinationV1Api, with a request timeout and the outcome of each
    verb remembered (403s and transport failures become reportable check errors).

    Transport failures are turned into `ApiException`s so the library's loops treat them
    as a failed attempt and retry instead of crashing.
    """

    def __init__(self, api: Any, timeout: float) -> None:
        self._api = api
        self._timeout = timeout
        self.last: dict[str, int | str | None] = {}

    async def _call(self, verb: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                result = await method(*args, **kwargs)
        except ApiException as exc:
            self.last[verb] = int(exc.status or 0)
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.last[verb] = "timeout" if isinstance(exc, TimeoutError) else \
                type(exc).__name__
            failure = ApiException(status=503, reason=f"transport: {type(exc).__name__}")
            failure.body = json.dumps({"code": 503}).encode()
            raise failure from None
        self.last[verb] = None
        return result

    async def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("get", self._api.read_namespaced_lease, *args, **kwargs)

    async def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("create", self._api.create_namespaced_lease, *args, **kwargs)

    async def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("update", self._api.replace_namespaced_lease, *args, **kwargs)


async def _nothing() -> None:
    """The election config's callbacks (leadership is tracked by `Elector` itself)."""


@dataclass
class Elector:
    """One replica's candidacy for one scenario's Lease."""

    spec: DrillLease
    scenario: str
    client: Any
    on_lost: Callable[[], None]
    leading: bool = False
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.identity = identity()
        self.name = self.spec.lease_name(self.scenario)
        duration = int(self.spec.duration)
        retry = max(1.0, duration / 15)
        lock = LeaseLock(self.name, self.spec.namespace, self.identity, self.client)
        self.api = _Api(lock.api_instance, timeout=max(1.0, retry))
        lock.api_instance = self.api  # type: ignore[assignment]
        self.config = Config(lock, lease_duration=duration, renew_deadline=duration * 2 / 3,
                             retry_period=retry, onstarted_leading=_nothing,
                             onstopped_leading=_nothing)
        self.election = LeaderElection(self.config)

    @property
    def where(self) -> str:
        return f"{self.spec.namespace}/{self.name}"

    @property
    def holder(self) -> str | None:
        """The holder this replica last saw (None: unknown or free)."""
        record = self.election.observed_record
        return record.holder_identity if record is not None else None

    async def start(self) -> None:
        """Try once now, then keep acquiring / renewing in the background."""
        try:
            self.leading = await self.election.try_acquire_or_renew()
        except Exception as exc:  # the background campaign retries
            log.warning("restore drill lease election failed",
                        extra={"lease": self.where, "error": type(exc).__name__})
        if self.leading:
            log.info("restore drill lease acquired", extra={"lease": self.where,
                                                             "holder": self.identity})
        self.task = asyncio.create_task(self._campaign(self.leading),
                                        name=f"restore-drill-lease-{self.scenario}")

    async def _campaign(self, leading: bool) -> None:
        while True:
            try:
                if not leading:
                    await self.election.acquire()
                    self.leading = True
                    log.info("restore drill lease acquired", extra={
                        "lease": self.where, "holder": self.identity})
                await self.election.renew_loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("restore drill lease election failed",
                            extra={"lease": self.where, "error": type(exc).__name__})
                await asyncio.sleep(self.config.retry_period)
            leading = False
            if self.leading:
                self.leading = False
                log.warning("restore drill lease lost", extra={"lease": self.where})
                self.on_lost()

    def problem(self) -> ProbeError | None:
        """Why this replica cannot take part in the election, if it cannot."""
        if self.leading:
            return None
        denied = [verb for verb, status in self.api.last.items() if status == 403]
        if denied:
            return ProbeError(Reason.AUTH, f"forbidden: missing RBAC permission to "
                              f"{'/'.join(denied)} {RESOURCE} in namespace "
                              f"{self.spec.namespace} (the drill lease needs get, create, "
                              "update)")
        if self.api.last.get("get") == 401:
            return ProbeError(Reason.AUTH, "the API server rejected the credentials (401) "
                              f"of connection {self.spec.connection}")
        failure = self.api.last.get("get")
        if isinstance(failure, str):
            reason = Reason.TIMEOUT if failure == "timeout" else Reason.CONNECT
            return ProbeError(reason, f"cannot read lease {self.where} ({failure})")
        if isinstance(failure, int) and failure not in (404,):
            return ProbeError(Reason.PROTOCOL, f"reading lease {self.where}: the API server "
                              f"answered HTTP {failure}")
        return None

    async def stop(self, release: bool = True) -> None:
        """Stop campaigning; with `release`, clear the holder if it is this replica."""
        was_leading, self.leading = self.leading, False
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if release and was_leading:
            await self._release()

    async def _release(self) -> None:
        try:
            lease = await self.api.read_namespaced_lease(self.name, self.spec.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            await self.api.replace_namespaced_lease(name=self.name,
                                                    namespace=self.spec.namespace, body=lease)
            log.info("restore drill lease released", extra={"lease": self.where})
        except ApiException as exc:
            log.warning("releasing the restore drill lease failed; it expires after "
                        f"{int(self.spec.duration)}s", extra={"lease": self.where,
                                                              "status": exc.status})


_ELECTORS: dict[tuple[str, str], tuple[Any, Elector]] = {}


async def elector(spec: DrillLease, scenario: str, ctx: ProbeContext,
                  on_lost: Callable[[], None]) -> Elector:
    """This replica's (started) elector for the scenario's lease; ProbeError(config) when
    the connection is not a usable `kubernetes` connection."""
    from exporter.probes.kubernetes.connection import api_client, cluster_of

    try:  # the connection's client is the runtime's Kubernetes transport client
        cluster = await cluster_of(ctx, spec.connection)
    except ProbeError as exc:
        raise ProbeError(exc.reason, f"lease {exc.message}") from None
    key = (str(ctx.state_dir), scenario)
    known = _ELECTORS.get(key)
    if known is not None and known[0] is cluster and known[1].spec == spec:
        return known[1]
    if known is not None:  # connection reopened or options changed: campaign anew
        await known[1].stop(release=known[0] is cluster)
    found = Elector(spec, scenario, await api_client(cluster), on_lost)
    _ELECTORS[key] = (cluster, found)
    await found.start()
    return found


def current(state_dir: str, scenario: str) -> Elector | None:
    """The elector of a scenario in this process, if any (tests)."""
    known = _ELECTORS.get((state_dir, scenario))
    return known[1] if known is not None else None


async def stop_all(release: bool = True) -> None:
    """Stop every election of this process (releasing held leases unless told not to)."""
    electors = [e for _, e in _ELECTORS.values()]
    _ELECTORS.clear()
    for item in electors:
        await item.stop(release)
