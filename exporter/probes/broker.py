"""`broker`: RabbitMQ is healthy, queues have retention, consumers keep up (3.3.1-3.3.3).

Everything comes from the RabbitMQ management HTTP API through the HTTP transport
(`exporter.transport.http`: the shared `tls:` options, one error table), with a
monitoring user (tag `monitoring` is enough). Three aspects:

- `health`: the API answers, every node is running, no memory or disk alarm is in
  effect (`/api/health/checks/alarms`, evaluated live by the broker).
- `retention`: every selected queue has a message TTL, a length limit, a max age or an
  expiry, either from its `x-` arguments or from its effective (operator) policy.
- `consumers`: every selected queue has a consumer, and no queue's ready backlog is
  above `max_ready`.

Queues are listed page by page (`page_size`) so 10,000 queues cost bounded memory.
Labels are bounded: vhost, node, and queue only for the `top_queues` largest backlogs.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretRef,
    SecretReference,
)
from exporter.transport.base import Deadline, request_budget
from exporter.transport.http import HTTP, HttpClient, HttpOptions, reject_credentials
from exporter.transport.secrets import resolve_secret
from exporter.transport.spellings import RenamedOptions
from exporter.transport.tls import TlsClientOptions

_QUEUE_COLUMNS = "name,vhost,arguments,effective_policy_definition,exclusive,consumers," \
    "messages_ready"
_NAMED = 3


class BrokerCheck(CheckSpec, RenamedOptions):
    """`kind: broker` options."""

    renamed = {"ca_file": "tls.ca_file"}

    kind: Literal["broker"]
    url: str = Field(default="http://127.0.0.1:15672",
                     description="management API base URL (http or https)")
    user: str = Field(min_length=1, description="management user (tag monitoring)")
    password: SecretReference | None = Field(
        default=None, description="password by reference, resolved when the configuration loads")
    password_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="or: variable holding the password, read at each run (not at load)")
    aspect: Literal["health", "retention", "consumers"] = Field(
        default="health", description="what to check")
    vhost: str | None = Field(default=None, description="only this vhost (default: all)")
    queues: str = Field(default=".*", description="regex: queues to judge (search)")
    exclude_queues: str | None = Field(
        default=r"^amq\.", description="regex: queues never judged (server-named ones)")
    include_exclusive: bool = Field(
        default=False, description="judge exclusive (connection-owned) queues too")
    retention_keys: list[str] = Field(
        default=["message-ttl", "max-length", "max-length-bytes", "max-age", "expires"],
        min_length=1,
        description="policy keys (or x- arguments) that count as a retention policy")
    max_ready: int = Field(default=1000, ge=0,
                           description="consumers: highest accepted messages_ready per queue")
    require_consumers: bool = Field(default=True,
                                    description="consumers: fail on queues without consumer")
    top_queues: int = Field(default=10, ge=0, le=100,
                            description="queues with a per-queue backlog label")
    page_size: int = Field(default=500, gt=0, le=10_000, description="queues per API page")
    tls: TlsClientOptions = Field(
        default_factory=TlsClientOptions,
        description="TLS options of an https url (ca_file, cert_file, key_file, "
        "server_name, insecure_skip_verify); was the flat ca_file")

    @field_validator("queues", "exclude_queues")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        if "@" in value.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError("url must not carry credentials: use user and password")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_password(self) -> BrokerCheck:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give either password or password_env, not both")
        return self


UP = MetricFamily("readiness_broker_up", "1 when the management API answered.")
INFO = MetricFamily("readiness_broker_info", "Broker product and version (value 1).",
                    ("product", "version"))
NODE_RUNNING = MetricFamily("readiness_broker_node_running", "1 when the node runs.",
                            ("node",))
NODE_ALARM = MetricFamily("readiness_broker_node_alarm",
                          "1 when a resource alarm (memory, disk) is in effect on the node.",
                          ("node", "resource"))
NODE_MEM = MetricFamily("readiness_broker_node_memory_used_bytes", "Memory used.", ("node",))
NODE_MEM_LIMIT = MetricFamily("readiness_broker_node_memory_limit_bytes",
                              "Memory high watermark.", ("node",))
NODE_DISK = MetricFamily("readiness_broker_node_disk_free_bytes", "Free disk.", ("node",))
NODE_DISK_LIMIT = MetricFamily("readiness_broker_node_disk_free_limit_bytes",
                               "Free disk alarm limit.", ("node",))
QUEUES = MetricFamily("readiness_broker_queues", "Queues judged.", ("vhost",))
NO_RETENTION = MetricFamily("readiness_broker_queues_without_retention",
                            "Queues with no TTL, length limit, max age or expiry.", ("vhost",))
NO_CONSUMERS = MetricFamily("readiness_broker_queues_without_consumers",
                            "Queues with no consumer.", ("vhost",))
OVER_BACKLOG = MetricFamily("readiness_broker_queues_over_backlog",
                            "Queues whose messages_ready is above the target.", ("vhost",))
READY = MetricFamily("readiness_broker_queue_messages_ready",
                     "Ready messages of the queues with the largest backlog (top N).",
                     ("vhost", "queue"))
READY_TARGET = MetricFamily("readiness_broker_queue_messages_ready_target",
                            "Objective: highest accepted messages_ready per queue.")

METRICS = (UP, INFO, NODE_RUNNING, NODE_ALARM, NODE_MEM, NODE_MEM_LIMIT, NODE_DISK,
           NODE_DISK_LIMIT, QUEUES, NO_RETENTION, NO_CONSUMERS, OVER_BACKLOG, READY,
           READY_TARGET)


class _Api:
    """GET JSON from the management API through the HTTP transport."""

    def __init__(self, spec: BrokerCheck, client: HttpClient, password: str) -> None:
        self.spec = spec
        self.client = client
        self.deadline = Deadline(request_budget(spec.timeout))
        token = base64.b64encode(f"{spec.user}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    async def get(self, path: str, *, accept: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        url = f"{self.spec.url}{path}"
        response = await self.client.request("GET", url, budget=self.deadline.remaining(),
                                             headers=self._headers)
        status = response.status
        if status in (401, 403):
            raise reject_credentials(url, status)
        if status == 404 and self.spec.vhost is not None and "/queues/" in path:
            raise ProbeError(Reason.CONFIG, f"vhost: {self.spec.vhost!r} not found on the "
                             "broker (change vhost)")
        if status not in accept:
            raise ProbeError(Reason.PROTOCOL, f"{path.split('?')[0]}: HTTP {status}")
        try:
            return status, json.loads(response.body)
        except ValueError:
            raise ProbeError(Reason.PROTOCOL, f"{path.split('?')[0]}: "
                             "not a JSON answer") from None

    async def queues(self) -> AsyncIterator[dict[str, Any]]:
        """Every queue of the selected vhost(s), one API page at a time."""
        base = "/api/queues" if self.spec.vhost is None else \
            f"/api/queues/{quote(self.spec.vhost, safe='')}"
        page = 1
        while True:
            _, body = await self.get(f"{base}?page={page}&page_size={self.spec.page_size}"
                                     f"&columns={_QUEUE_COLUMNS}")
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise ProbeError(Reason.PROTOCOL, f"{base}: unexpected answer")
            for item in body["items"]:
                if isinstance(item, dict):
                    yield item
            if page >= int(body.get("page_count") or 0):
                return
            page += 1


async def _health(api: _Api) -> Outcome:
    _, overview = await api.get("/api/overview")
    _, nodes = await api.get("/api/nodes?columns=name,running,mem_used,mem_limit,disk_free,"
                             "disk_free_limit")
    _, alarms = await api.get("/api/health/checks/alarms", accept=(200, 503))
    overview = overview if isinstance(overview, dict) else {}
    product = str(overview.get("product_name") or "RabbitMQ")[:32]
    version = str(overview.get("product_version") or overview.get("rabbitmq_version")
                  or "unknown")[:32]
    measurements = [Measurement(UP.name, 1.0),
                    Measurement(INFO.name, 1.0, {"product": product, "version": version})]
    in_effect = {(str(a.get("node")), str(a.get("resource")))
                 for a in (alarms.get("alarms") or []) if isinstance(a, dict)} \
        if isinstance(alarms, dict) else set()
    if isinstance(alarms, dict) and alarms.get("status") == "failed" and not in_effect:
        in_effect.add(("cluster", "unknown"))
    problems: list[str] = []
    names: list[str] = []
    for node in nodes if isinstance(nodes, list) else []:
        name = str(node.get("name", "unknown"))
        names.append(name)
        running = bool(node.get("running"))
        measurements.append(Measurement(NODE_RUNNING.name, 1.0 if running else 0.0,
                                        {"node": name}))
        if not running:
            problems.append(f"node {name} not running")
        for family, key in ((NODE_MEM, "mem_used"), (NODE_MEM_LIMIT, "mem_limit"),
                            (NODE_DISK, "disk_free"), (NODE_DISK_LIMIT, "disk_free_limit")):
            if isinstance(node.get(key), int | float):
                measurements.append(Measurement(family.name, float(node[key]), {"node": name}))
    for name in sorted(set(names) | {n for n, _ in in_effect}):
        for resource in ("memory", "disk"):
            on = (name, resource) in in_effect
            measurements.append(Measurement(NODE_ALARM.name, 1.0 if on else 0.0,
                                            {"node": name, "resource": resource}))
    for node_name, resource in sorted(in_effect):
        problems.append(f"{resource} alarm on {node_name}")
    if problems:
        return Outcome.failed("; ".join(problems), tuple(measurements))
    return Outcome.passed(f"{product} {version}: {len(names)} node(s) running, no alarms",
                          tuple(measurements))


def _has_retention(queue: dict[str, Any], keys: list[str]) -> bool:
    arguments = queue.get("arguments") or {}
    policy = queue.get("effective_policy_definition") or {}
    arguments = arguments if isinstance(arguments, dict) else {}
    policy = policy if isinstance(policy, dict) else {}  # older brokers send [] for {}
    return any(f"x-{key}" in arguments or key in policy for key in keys)


def _named(items: list[str], total: int) -> str:
    shown = ", ".join(items[:_NAMED])
    return shown + (f" and {total - _NAMED} more" if total > _NAMED else "")


@dataclass
class _QueueTally:
    """What the queue aspects count, per vhost, while the pages stream by."""

    spec: BrokerCheck
    judged: Counter[str] = field(default_factory=Counter)
    no_retention: Counter[str] = field(default_factory=Counter)
    no_consumers: Counter[str] = field(default_factory=Counter)
    over: Counter[str] = field(default_factory=Counter)
    offenders: list[str] = field(default_factory=list)
    backlog: list[tuple[int, str, str]] = field(default_factory=list)

    def selected(self, queue: dict[str, Any], include: re.Pattern[str],
                 exclude: re.Pattern[str] | None) -> bool:
        """Whether the queue is one the check judges."""
        name = str(queue.get("name", ""))
        if not include.search(name) or (exclude is not None and exclude.search(name)):
            return False
        return not queue.get("exclusive") or self.spec.include_exclusive

    def add(self, queue: dict[str, Any]) -> None:
        """Judge one selected queue."""
        name, vhost = str(queue.get("name", "")), str(queue.get("vhost", ""))
        self.judged[vhost] += 1
        label = name if self.spec.vhost is not None else f"{vhost}/{name}"
        if self.spec.aspect == "retention":
            if not _has_retention(queue, self.spec.retention_keys):
                self.no_retention[vhost] += 1
                self.offenders.append(label)
            return
        ready = int(queue.get("messages_ready") or 0)
        self.backlog.append((ready, vhost, name))
        self.backlog.sort(key=lambda item: (-item[0], item[1], item[2]))
        del self.backlog[self.spec.top_queues:]
        problems = []
        if self.spec.require_consumers and int(queue.get("consumers") or 0) == 0:
            self.no_consumers[vhost] += 1
            problems.append("no consumer")
        if ready > self.spec.max_ready:
            self.over[vhost] += 1
            problems.append(f"{ready} ready")
        if problems:
            self.offenders.append(f"{label} ({', '.join(problems)})")

    def measurements(self) -> tuple[Measurement, ...]:
        """Per-vhost counts, and the largest backlogs for `consumers`."""
        found = [Measurement(UP.name, 1.0)]
        retention = self.spec.aspect == "retention"
        for vhost in sorted(self.judged):
            labels = {"vhost": vhost}
            found.append(Measurement(QUEUES.name, float(self.judged[vhost]), labels))
            if retention:
                found.append(Measurement(NO_RETENTION.name, float(self.no_retention[vhost]),
                                         labels))
            else:
                found.append(Measurement(NO_CONSUMERS.name, float(self.no_consumers[vhost]),
                                         labels))
                found.append(Measurement(OVER_BACKLOG.name, float(self.over[vhost]), labels))
        if not retention:
            found.append(Measurement(READY_TARGET.name, float(self.spec.max_ready)))
            for ready, vhost, name in self.backlog:
                found.append(Measurement(READY.name, float(ready),
                                         {"vhost": vhost, "queue": name[:128]}))
        return tuple(found)

    def outcome(self) -> Outcome:
        """The verdict of the aspect over every judged queue."""
        measurements = self.measurements()
        total = sum(self.judged.values())
        offenders = self.offenders
        if total == 0:
            return Outcome.passed("no queues to judge", measurements)
        if self.spec.aspect == "retention":
            if offenders:
                return Outcome.failed(f"{len(offenders)} of {total} queues without a "
                                      f"retention policy: {_named(offenders, len(offenders))}",
                                      measurements)
            return Outcome.passed(f"all {total} queues have a retention policy", measurements)
        if offenders:
            return Outcome.failed(f"{len(offenders)} of {total} queues not kept up with: "
                                  f"{_named(offenders, len(offenders))}", measurements)
        return Outcome.passed(f"all {total} queues have consumers and at most "
                              f"{self.spec.max_ready} ready messages", measurements)


async def _queues(spec: BrokerCheck, api: _Api) -> Outcome:
    include = re.compile(spec.queues)
    exclude = re.compile(spec.exclude_queues) if spec.exclude_queues else None
    tally = _QueueTally(spec)
    async for queue in api.queues():
        if tally.selected(queue, include, exclude):
            tally.add(queue)
    return tally.outcome()


def _password(spec: BrokerCheck) -> str:
    """The management password, resolved now under the secret policy."""
    if spec.password is not None:
        return resolve_secret(spec.password, "password").get_secret_value()
    if spec.password_env is not None:
        value = resolve_secret(SecretRef(env=spec.password_env), "password_env")
        if value.get_secret_value():
            return value.get_secret_value()
        raise ProbeError(Reason.CONFIG, f"password_env: {spec.password_env} is empty (set "
                         "it, or change password_env)")
    raise ProbeError(Reason.CONFIG, "no password configured for the management API (set "
                     "password or password_env)")


async def run(spec: BrokerCheck, ctx: ProbeContext) -> Outcome:
    """Run the configured aspect against the management API."""
    # the backlog objective comes from the configuration: kept on error (issue 13)
    kept = ((Measurement(READY_TARGET.name, float(spec.max_ready)),)
            if spec.aspect == "consumers" else ())
    try:
        password = _password(spec)
        client = await ctx.client(HTTP, HttpOptions(tls=spec.tls))
    except ProbeError as exc:
        return exc.with_measurements(kept).outcome()
    try:
        api = _Api(spec, client, password)
        if spec.aspect == "health":
            return await _health(api)
        return await _queues(spec, api)
    except ProbeError as exc:
        unreachable = exc.reason in (Reason.CONNECT, Reason.DNS, Reason.TLS, Reason.TIMEOUT)
        return exc.with_measurements((Measurement(UP.name, 0.0 if unreachable else 1.0),
                                      *kept)).outcome()


KIND = ProbeKind(
    name="broker",
    spec=BrokerCheck,
    run=run,
    summary="RabbitMQ (management API): node alarms, queue retention policies, consumers "
            "and backlog.",
    metrics=METRICS,
)
