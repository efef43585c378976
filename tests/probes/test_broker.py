"""`kind: broker` against the machine's RabbitMQ (management API on 127.0.0.1:15672).

Each test module run creates its own vhost (and deletes it with everything in it), so
parallel workers and other users of the broker never see each other's queues. A real
AMQP 0-9-1 consumer (a few frames over a socket) makes "queue has a consumer" true.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from aiohttp import web

from exporter import config, lint
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.broker import KIND, BrokerCheck
from tests.support.servers import free_port

API = "http://127.0.0.1:15672"
AMQP_PORT = 5672
WRONG = "wrong-Pw-4711-never-shown"


def mgmt(method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    """Call the management API as guest (test set-up only)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{API}{path}", data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


# One worker runs every test of this module: the memory-alarm test blocks publishers on
# the shared broker for a few seconds, which must not overlap the other broker tests.
pytestmark = pytest.mark.xdist_group("rabbitmq")


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    name = f"readiness-test-{uuid.uuid4().hex[:10]}"
    mgmt("PUT", f"/api/vhosts/{quote(name, safe='')}", {})
    mgmt("PUT", f"/api/permissions/{quote(name, safe='')}/guest",
         {"configure": ".*", "write": ".*", "read": ".*"})
    try:
        yield name
    finally:
        mgmt("DELETE", f"/api/vhosts/{quote(name, safe='')}")


def declare(vhost: str, queue: str, arguments: dict[str, Any] | None = None) -> None:
    mgmt("PUT", f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}",
         {"durable": False, "auto_delete": False, "arguments": arguments or {}})


def publish(vhost: str, queue: str, count: int) -> None:
    for i in range(count):
        mgmt("POST", f"/api/exchanges/{quote(vhost, safe='')}/amq.default/publish",
             {"properties": {}, "routing_key": queue, "payload": f"m{i}",
              "payload_encoding": "string"})


def build(**check: Any) -> BrokerCheck:
    raw = {"id": "3.3.x", "section": "3.3", "title": "broker", "kind": "broker",
           "url": API, "user": "guest", "password": "${BROKER_TEST_PASSWORD}", **check}
    spec = config.build({"checks": [raw]}, "test").checks[0]
    assert isinstance(spec, BrokerCheck)
    return spec


@pytest.fixture(autouse=True)
def password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_TEST_PASSWORD", "guest")
    monkeypatch.setenv("BROKER_WRONG_PASSWORD", WRONG)


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    context = RuntimeContext(state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def samples(outcome: Outcome, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(m.labels.items())): m.value
            for m in outcome.measurements if m.family == family}


async def until(spec: BrokerCheck, ctx: RuntimeContext, predicate: Any,
                seconds: float = 20) -> Outcome:
    """Run until `predicate(outcome)` holds: queue counters reach the API every ~5 s."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = await KIND.run(spec, ctx)
        if predicate(outcome) or time.monotonic() > deadline:
            return outcome
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- AMQP consumer


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def _method(channel: int, class_id: int, method_id: int, args: bytes) -> bytes:
    return _frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def _short(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def _long(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


async def _read_method(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    while True:
        kind, _channel, size = struct.unpack(">BHI", await reader.readexactly(7))
        payload = (await reader.readexactly(size + 1))[:-1]  # drop the frame-end octet
        if kind == 1:
            class_id, method_id = struct.unpack(">HH", payload[:4])
            return class_id, method_id, payload[4:]


@asynccontextmanager
async def consumer(vhost: str, queue: str) -> AsyncIterator[None]:
    """A real AMQP 0-9-1 consumer on `queue`, held open for the block."""
    reader, writer = await asyncio.open_connection("127.0.0.1", AMQP_PORT)
    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        assert (await _read_method(reader))[:2] == (10, 10)  # Start
        writer.write(_method(0, 10, 11, _long(b"") + _short("PLAIN") +
                             _long(b"\x00guest\x00guest") + _short("en_US")))
        class_id, method_id, args = await _read_method(reader)
        assert (class_id, method_id) == (10, 30)  # Tune
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", args[:8])
        writer.write(_method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        writer.write(_method(0, 10, 40, _short(vhost) + _short("") + b"\x00"))
        assert (await _read_method(reader))[:2] == (10, 41)  # Open-Ok
        writer.write(_method(1, 20, 10, _short("")))
        assert (await _read_method(reader))[:2] == (20, 11)  # Channel.Open-Ok
        writer.write(_method(1, 60, 20, struct.pack(">H", 0) + _short(queue) + _short("") +
                             b"\x02" + _long(b"")))  # no-ack
        assert (await _read_method(reader))[:2] == (60, 21)  # Consume-Ok
        yield
    finally:
        writer.close()
        await writer.wait_closed()


# --------------------------------------------------------------------------- health


async def test_health_passes_on_running_broker(ctx: RuntimeContext) -> None:
    outcome = await until(build(aspect="health"), ctx, lambda o: o.status is Status.PASS)
    assert outcome.status is Status.PASS, outcome
    assert "no alarms" in outcome.message
    assert samples(outcome, "readiness_broker_up") == {(): 1.0}
    running = samples(outcome, "readiness_broker_node_running")
    assert running and set(running.values()) == {1.0}
    alarms = samples(outcome, "readiness_broker_node_alarm")
    assert {dict(k)["resource"] for k in alarms} == {"memory", "disk"}
    assert set(alarms.values()) == {0.0}
    [info] = samples(outcome, "readiness_broker_info")
    assert dict(info)["product"] == "RabbitMQ"
    assert samples(outcome, "readiness_broker_node_memory_limit_bytes")


def _watermark() -> list[str]:
    """The current vm_memory_high_watermark as set_vm_memory_high_watermark arguments."""
    text = subprocess.run(["rabbitmqctl", "eval",
                           "application:get_env(rabbit, vm_memory_high_watermark)."],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    inner = text.removeprefix("{ok,").removesuffix("}")
    if inner.startswith("{absolute,"):
        return ["absolute", inner.removeprefix("{absolute,").removesuffix("}")]
    float(inner)
    return [inner]


async def test_memory_alarm_fails_health(ctx: RuntimeContext) -> None:
    original = _watermark()
    subprocess.run(["rabbitmqctl", "set_vm_memory_high_watermark", "absolute", "1000000"],
                   capture_output=True, check=True, timeout=60)
    try:
        outcome = await until(build(aspect="health"), ctx,
                              lambda o: o.status is Status.FAIL, seconds=15)
    finally:
        subprocess.run(["rabbitmqctl", "set_vm_memory_high_watermark", *original],
                       capture_output=True, check=True, timeout=60)
    assert outcome.status is Status.FAIL, outcome
    assert "memory alarm on rabbit@" in outcome.message
    alarms = samples(outcome, "readiness_broker_node_alarm")
    assert [dict(k)["resource"] for k, v in alarms.items() if v == 1.0] == ["memory"]
    healed = await until(build(aspect="health"), ctx, lambda o: o.status is Status.PASS)
    assert healed.status is Status.PASS, healed


# --------------------------------------------------------------------------- errors


async def test_wrong_password_is_error_auth_and_never_shown(
        ctx: RuntimeContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = [await KIND.run(build(aspect=aspect, password="${BROKER_WRONG_PASSWORD}"), ctx)
                for aspect in ("health", "retention", "consumers")]
    for outcome in outcomes:
        assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome
        assert "127.0.0.1:15672 rejected the credentials (HTTP 401)" in outcome.message
        assert WRONG not in repr(outcome)
    for record in caplog.records:
        assert WRONG not in record.getMessage() and WRONG not in repr(record.__dict__)


async def test_refused_and_missing_vhost(ctx: RuntimeContext) -> None:
    refused = await KIND.run(build(url=f"http://127.0.0.1:{free_port()}"), ctx)
    assert (refused.status, refused.reason) == (Status.ERROR, Reason.CONNECT), refused
    assert samples(refused, "readiness_broker_up") == {(): 0.0}
    missing = await KIND.run(build(aspect="retention", vhost="no-such-vhost-" +
                                   uuid.uuid4().hex[:6]), ctx)
    assert (missing.status, missing.reason) == (Status.ERROR, Reason.CONFIG), missing


async def test_password_env_is_read_at_run_time(ctx: RuntimeContext,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROKER_RUNTIME_PASSWORD", raising=False)
    spec = build(password=None, password_env="BROKER_RUNTIME_PASSWORD")  # loads while unset
    unset = await KIND.run(spec, ctx)
    assert (unset.status, unset.reason) == (Status.ERROR, Reason.CONFIG)
    assert unset.message == ("password_env: environment variable BROKER_RUNTIME_PASSWORD is "
                             "not set (set it, or change password_env)")
    monkeypatch.setenv("BROKER_RUNTIME_PASSWORD", "guest")
    # Retried: under a full parallel suite the management API can answer slowly.
    passed = await until(spec, ctx, lambda o: o.status is Status.PASS)
    assert passed.status is Status.PASS, passed
    empty = await KIND.run(build(aspect="retention", queues="^no-such-queue-prefix-zz"), ctx)
    assert (empty.status, empty.message) == (Status.PASS, "no queues to judge"), empty
    nothing = await KIND.run(build(password=None), ctx)
    assert (nothing.status, nothing.reason) == (Status.ERROR, Reason.CONFIG)


def test_config_rejects_inline_password_and_bad_regex() -> None:
    with pytest.raises(config.ConfigError) as err:
        build(password="guest")
    assert "reference only" in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        build(queues="(")
    assert ".queues: invalid regular expression" in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        build(url="http://guest:guest@127.0.0.1:15672")
    assert "credentials" in str(err.value)


# --------------------------------------------------------------------------- retention


async def test_retention_from_arguments_and_policies(vhost: str,
                                                     ctx: RuntimeContext) -> None:
    declare(vhost, "ret.ttl", {"x-message-ttl": 60000})
    declare(vhost, "ret.len", {"x-max-length": 100})
    declare(vhost, "ret.pol")
    declare(vhost, "ret.bare")
    declare(vhost, "ret.bare2")
    mgmt("PUT", f"/api/policies/{quote(vhost, safe='')}/ret-pol",
         {"pattern": r"^ret\.pol$", "definition": {"max-length-bytes": 1048576},
          "apply-to": "queues"})
    spec = build(aspect="retention", vhost=vhost, queues=r"^ret\.", page_size=2)
    outcome = await until(spec, ctx, lambda o: "2 of 5" in o.message, seconds=10)
    assert outcome.status is Status.FAIL, outcome
    assert outcome.message == ("2 of 5 queues without a retention policy: ret.bare, "
                               "ret.bare2")
    assert samples(outcome, "readiness_broker_queues") == {(("vhost", vhost),): 5.0}
    assert samples(outcome, "readiness_broker_queues_without_retention") == {
        (("vhost", vhost),): 2.0}
    # an operator-style catch-all policy with a TTL covers the rest
    mgmt("PUT", f"/api/policies/{quote(vhost, safe='')}/ret-bare",
         {"pattern": r"^ret\.bare", "definition": {"message-ttl": 3600000},
          "apply-to": "queues", "priority": 1})
    fixed = await until(spec, ctx, lambda o: o.status is Status.PASS, seconds=10)
    assert fixed.status is Status.PASS, fixed
    assert fixed.message == "all 5 queues have a retention policy"
    narrower = await KIND.run(build(aspect="retention", vhost=vhost, queues=r"^ret\.",
                                    retention_keys=["message-ttl"]), ctx)
    assert narrower.status is Status.FAIL
    assert "ret.len" in narrower.message and "ret.ttl" not in narrower.message


# --------------------------------------------------------------------------- consumers


async def test_consumers_and_backlog(vhost: str, ctx: RuntimeContext) -> None:
    for name in ("work.a", "work.b", "work.d"):
        declare(vhost, name)
    publish(vhost, "work.d", 5)
    spec = build(aspect="consumers", vhost=vhost, queues=r"^work\.", max_ready=3)
    async with consumer(vhost, "work.a"):
        outcome = await until(spec, ctx, lambda o: "work.d (no consumer, 5 ready)" in o.message
                              and "work.a" not in o.message)
        assert outcome.status is Status.FAIL, outcome
        assert outcome.message == ("2 of 3 queues not kept up with: work.b (no consumer), "
                                   "work.d (no consumer, 5 ready)")
        labels = {("vhost", vhost)}
        assert samples(outcome, "readiness_broker_queues_without_consumers") == {
            tuple(labels): 2.0}
        assert samples(outcome, "readiness_broker_queues_over_backlog") == {tuple(labels): 1.0}
        ready = samples(outcome, "readiness_broker_queue_messages_ready")
        assert ready[(("queue", "work.d"), ("vhost", vhost))] == 5.0
        assert samples(outcome, "readiness_broker_queue_messages_ready_target") == {(): 3.0}
        top1 = await KIND.run(build(aspect="consumers", vhost=vhost, queues=r"^work\.",
                                    top_queues=1), ctx)
        assert list(samples(top1, "readiness_broker_queue_messages_ready")) == [
            (("queue", "work.d"), ("vhost", vhost))]
        relaxed = await KIND.run(build(aspect="consumers", vhost=vhost, queues=r"^work\.",
                                       exclude_queues=r"^work\.b$", max_ready=10), ctx)
        assert relaxed.status is Status.FAIL
        assert relaxed.message.endswith("work.d (no consumer)")
        lenient = await KIND.run(build(aspect="consumers", vhost=vhost, queues=r"^work\.",
                                       require_consumers=False, max_ready=10), ctx)
        assert lenient.status is Status.PASS, lenient


# --------------------------------------------------------------------------- TLS wiring


async def test_https_url_verifies_with_ca_file(ctx: RuntimeContext, tmp_path: Path) -> None:
    """An https management URL is verified: unknown CA -> error/tls, ca_file -> trusted."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    app = web.Application()  # answers nothing: every path is 404
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx)
    await site.start()
    try:
        untrusted = await KIND.run(build(url=f"https://127.0.0.1:{port}"), ctx)
        assert (untrusted.status, untrusted.reason) == (Status.ERROR, Reason.TLS), untrusted
        trusted = await KIND.run(build(url=f"https://127.0.0.1:{port}",
                                       tls={"ca_file": str(tmp_path / "ca.pem")}), ctx)
        assert (trusted.status, trusted.reason) == (Status.ERROR, Reason.PROTOCOL), trusted
        assert trusted.message == "/api/overview: HTTP 404"
        # the flat ca_file of earlier releases still works for one release
        old = build(url=f"https://127.0.0.1:{port}", ca_file=str(tmp_path / "ca.pem"))
        assert old.tls.ca_file == tmp_path / "ca.pem"
        assert (await KIND.run(old, ctx)).message == "/api/overview: HTTP 404"
    finally:
        await runner.cleanup()


def test_flat_ca_file_is_deprecated_with_a_warning(tmp_path: Path) -> None:
    raw = {"id": "3.3.1", "section": "3.3", "title": "broker", "kind": "broker",
           "url": "https://rabbit:15671", "user": "monitor",
           "password": "${BROKER_TEST_PASSWORD}", "ca_file": str(tmp_path / "ca.pem")}
    cfg = config.build({"checks": [raw]}, "test")
    assert lint.config_warnings(cfg) == [
        "checks (id 3.3.1).ca_file is deprecated: write checks (id 3.3.1).tls.ca_file (the "
        "old name is accepted until the next release)"]
    with pytest.raises(config.ConfigError) as err:
        config.build({"checks": [{**raw, "tls": {"ca_file": "/other.pem"}}]}, "test")
    assert "ca_file is the old spelling of tls.ca_file" in str(err.value)
    modern_raw = {key: value for key, value in raw.items() if key != "ca_file"}
    modern = config.build({"checks": [{**modern_raw, "tls": {
        "ca_file": str(tmp_path / "ca.pem")}}]}, "test")
    assert lint.config_warnings(modern) == []


async def test_missing_ca_file_names_the_option(ctx: RuntimeContext, tmp_path: Path) -> None:
    spec = build(url="https://127.0.0.1:15671", tls={"ca_file": str(tmp_path / "no.pem")})
    outcome = await KIND.run(spec, ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome
    assert outcome.message.startswith(f"tls.ca_file: {tmp_path / 'no.pem'} does not exist")


async def test_monitoring_user_without_resource_rights_is_enough(vhost: str,
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    user = f"readiness-mon-{uuid.uuid4().hex[:8]}"
    mgmt("PUT", f"/api/users/{user}", {"password": "mon-Pw-1", "tags": "monitoring"})
    try:
        monkeypatch.setenv("BROKER_MON_PASSWORD", "mon-Pw-1")
        declare(vhost, "mon.q", {"x-max-length": 10})
        spec = build(aspect="retention", vhost=vhost, queues=r"^mon\.", user=user,
                     password="${BROKER_MON_PASSWORD}")
        denied = await KIND.run(spec, ctx)
        assert (denied.status, denied.reason) == (Status.ERROR, Reason.AUTH), denied
        mgmt("PUT", f"/api/permissions/{quote(vhost, safe='')}/{user}",
             {"configure": "^$", "write": "^$", "read": "^$"})
        allowed = await until(spec, ctx, lambda o: o.status is Status.PASS, seconds=10)
        assert allowed.status is Status.PASS, allowed
        health = await until(build(aspect="health", user=user,
                                   password="${BROKER_MON_PASSWORD}"), ctx,
                             lambda o: o.status is Status.PASS, seconds=10)
        assert health.status is Status.PASS, health
    finally:
        mgmt("DELETE", f"/api/users/{user}")
