"""Conformance of the Redis, S3 and RabbitMQ-management kinds: the same failure gives the
same reason from `redis` (Redis transport), `broker` (HTTP transport) and `backup` with an
S3 source (S3 transport), against real servers on loopback; secrets never show.

Servers: redis-server (requirepass; TLS on `--tls-port` with trustme certificates),
moto's S3 server with signatures enforced, the machine's RabbitMQ management API
(127.0.0.1:15672, guest/guest), a loopback TLS server and a silent server.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, ConnectionSpec, Outcome, Reason, Status
from exporter.runner import run_check
from tests.support.servers import RedisServer, redis_server
from tests.transport.kv_servers import (
    BUCKET,
    UNRESOLVABLE_HOST,
    MotoS3,
    Target,
    https_not_found,
    moto_with_auth,
    redis_tls,
    refused,
    silent_server,
    unresolvable,
)

SECRET_ENV = "READINESS_KV_CONFORMANCE_SECRET"
KEY_ID_ENV = "READINESS_KV_CONFORMANCE_KEY_ID"
UNSET_ENV = "READINESS_KV_CONFORMANCE_UNSET"
TIMEOUT = 2.5
RABBIT = Target("127.0.0.1", 15672)
REDIS_PASSWORD = "kv-conformance-redis-pw-" + uuid.uuid4().hex[:8]

Built = tuple[CheckSpec, dict[str, ConnectionSpec]]


def _url(target: Target) -> str:
    return f"{'https' if target.tls else 'http'}://{target.host}:{target.port}"


def _redis(target: Target, tls: dict[str, Any] | None, secret_env: str) -> Built:
    connection: dict[str, Any] = {
        "kind": "redis", "host": target.host, "port": target.port,
        "password": f"${{{secret_env}}}", "connect_timeout": 1, "command_timeout": 1}
    if tls is not None or target.tls:
        connection["tls"] = tls or {}
    spec = registry.probe_kind("redis").spec.model_validate(
        {"id": "kv-redis", "section": "3.2", "title": "conformance", "kind": "redis",
         "connection": "cache", "aspect": "ping", "timeout": TIMEOUT})
    declared = registry.connection_kind("redis").spec.model_validate(connection)
    return spec, {"cache": declared}


def _broker(target: Target, tls: dict[str, Any] | None, secret_env: str) -> Built:
    data: dict[str, Any] = {
        "id": "kv-broker", "section": "3.3", "title": "conformance", "kind": "broker",
        "url": _url(target), "user": "guest", "password": f"${{{secret_env}}}",
        "timeout": TIMEOUT}
    if tls is not None:
        data["tls"] = tls
    return registry.probe_kind("broker").spec.model_validate(data), {}


def _backup_s3(target: Target, tls: dict[str, Any] | None, secret_env: str) -> Built:
    source: dict[str, Any] = {
        "type": "s3", "bucket": BUCKET, "prefix": "db/", "endpoint_url": _url(target),
        "access_key_id": f"${{{KEY_ID_ENV}}}", "secret_access_key": f"${{{secret_env}}}"}
    if tls is not None:
        source["tls"] = tls
    data = {"id": "kv-backup", "section": "10.1", "title": "conformance", "kind": "backup",
            "source": source, "timeout": TIMEOUT}
    return registry.probe_kind("backup").spec.model_validate(data), {}


@dataclass(frozen=True)
class Subject:
    """One probe kind under test and how to point it at a target."""

    kind: str
    build: Callable[[Target, dict[str, Any] | None, str], Built]
    tls_option: str
    """Where its TLS block is configured (error messages name `<tls_option>.ca_file`)."""
    secret_option: str
    kept_on_error: frozenset[str] = field(default_factory=frozenset)


SUBJECTS = [
    Subject("redis", _redis, "connections.cache.tls", "connections.cache.password",
            frozenset({"readiness_redis_up"})),
    Subject("broker", _broker, "tls", "password", frozenset({"readiness_broker_up"})),
    Subject("backup", _backup_s3, "source.tls", "source.secret_access_key"),
]


@dataclass(frozen=True)
class Case:
    """One failure and the reason every kind must give for it."""

    name: str
    reason: Reason
    transport_reached: bool = True


CASES = [
    Case("refused", Reason.CONNECT),
    Case("dns", Reason.DNS),
    Case("silent", Reason.TIMEOUT),
    Case("wrong_ca", Reason.TLS),
    Case("wrong_credentials", Reason.AUTH),
    Case("missing_ca_file", Reason.CONFIG, transport_reached=False),
    Case("unset_secret", Reason.CONFIG, transport_reached=False),
]


@dataclass
class Servers:
    """The module's long-lived servers."""

    ca: trustme.CA
    other_ca: Path
    redis_secured: RedisServer
    redis_tls: RedisServer
    moto: MotoS3


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    ca = trustme.CA()
    other_ca = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with redis_server(password=REDIS_PASSWORD) as secured, \
            redis_tls(ca, tmp_path_factory.mktemp("redis-tls"), REDIS_PASSWORD) as tls, \
            moto_with_auth() as moto:
        yield Servers(ca, other_ca, secured, tls, moto)


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch, servers: Servers) -> str:
    """A wrong secret (for every server here) in SECRET_ENV; a valid S3 key id."""
    value = f"kv-conformance-s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_ENV, value)
    monkeypatch.setenv(KEY_ID_ENV, servers.moto.key_id)
    monkeypatch.delenv(UNSET_ENV, raising=False)
    return value


def _wrong_credentials_target(subject: Subject, servers: Servers) -> Target:
    if subject.kind == "redis":
        return Target("127.0.0.1", servers.redis_secured.port)
    if subject.kind == "broker":
        return RABBIT
    host_port = servers.moto.url.rsplit("/", 1)[-1]
    return Target("127.0.0.1", int(host_port.rsplit(":", 1)[1]))


@contextlib.asynccontextmanager
async def _tls_target(subject: Subject, servers: Servers) -> AsyncIterator[Target]:
    if subject.kind == "redis":
        yield Target("127.0.0.1", servers.redis_tls.port, tls=True)
    else:
        async with https_not_found(servers.ca) as target:
            yield target


@contextlib.asynccontextmanager
async def _built(case: Case, subject: Subject, servers: Servers,
                 tmp_path: Path) -> AsyncIterator[Built]:
    if case.name == "refused":
        yield subject.build(refused(), None, SECRET_ENV)
    elif case.name == "dns":
        yield subject.build(unresolvable(), None, SECRET_ENV)
    elif case.name == "silent":
        async with silent_server() as target:
            yield subject.build(target, None, SECRET_ENV)
    elif case.name == "wrong_ca":
        async with _tls_target(subject, servers) as target:
            yield subject.build(target, {"ca_file": str(servers.other_ca)}, SECRET_ENV)
    elif case.name == "wrong_credentials":
        yield subject.build(_wrong_credentials_target(subject, servers), None, SECRET_ENV)
    elif case.name == "missing_ca_file":
        yield subject.build(refused(), {"ca_file": str(tmp_path / "missing-ca.pem")},
                            SECRET_ENV)
    elif case.name == "unset_secret":
        yield subject.build(refused(), None, UNSET_ENV)
    else:  # pragma: no cover - a new case needs its set-up here
        raise AssertionError(case.name)


async def _run(built: Built, tmp_path: Path) -> Outcome:
    spec, connections = built
    context = RuntimeContext(connections, state_dir=tmp_path / "state")
    try:
        outcome, _ = await run_check(spec, context)
    finally:
        await context.aclose()
    return outcome


def _secret_free(outcome: Outcome, secret: str, caplog: pytest.LogCaptureFixture) -> None:
    assert secret not in repr(outcome)
    for measurement in outcome.measurements:
        assert secret not in "".join(measurement.labels.values())
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("subject", SUBJECTS, ids=[s.kind for s in SUBJECTS])
async def test_same_failure_same_reason(subject: Subject, case: Case, servers: Servers,
                                        secret: str, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with _built(case, subject, servers, tmp_path) as built:
        outcome = await _run(built, tmp_path)
    assert outcome.status is Status.ERROR, outcome
    assert outcome.reason is case.reason, outcome.message
    _secret_free(outcome, secret, caplog)
    _secret_free(outcome, servers.moto.secret, caplog)
    if case.transport_reached:
        kept = {m.family for m in outcome.measurements}
        assert subject.kept_on_error <= kept, outcome.measurements


@pytest.mark.parametrize("subject", SUBJECTS, ids=[s.kind for s in SUBJECTS])
async def test_messages_name_what_to_change(subject: Subject, servers: Servers, secret: str,
                                            tmp_path: Path) -> None:
    """Errors name the target (host) or the option and reference to fix."""
    outcomes = {}
    for name in ("dns", "missing_ca_file", "unset_secret"):
        case = next(c for c in CASES if c.name == name)
        async with _built(case, subject, servers, tmp_path) as built:
            outcomes[name] = await _run(built, tmp_path)
    assert UNRESOLVABLE_HOST in outcomes["dns"].message
    assert f"{subject.tls_option}.ca_file" in outcomes["missing_ca_file"].message
    assert "missing-ca.pem" in outcomes["missing_ca_file"].message
    assert UNSET_ENV in outcomes["unset_secret"].message
    assert subject.secret_option in outcomes["unset_secret"].message


@pytest.mark.parametrize("subject", SUBJECTS, ids=[s.kind for s in SUBJECTS])
async def test_the_right_ca_is_trusted(subject: Subject, servers: Servers, secret: str,
                                       tmp_path: Path) -> None:
    """The wrong-CA case is not a broken TLS server: with the right CA the handshake
    succeeds (whatever the kind then thinks of the answer)."""
    ca_file = tmp_path / "ca.pem"
    servers.ca.cert_pem.write_to_path(str(ca_file))
    async with _tls_target(subject, servers) as target:
        outcome = await _run(subject.build(target, {"ca_file": str(ca_file)}, SECRET_ENV),
                             tmp_path)
    assert outcome.reason is not Reason.TLS, outcome
    if subject.kind == "redis":  # the wrong password: the TLS session carried AUTH
        assert outcome.reason is Reason.AUTH, outcome


async def test_right_credentials_pass_everywhere(servers: Servers, secret: str,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrong-credentials case is only about the credentials."""
    monkeypatch.setenv("READINESS_KV_REDIS_OK", REDIS_PASSWORD)
    monkeypatch.setenv("READINESS_KV_BROKER_OK", "guest")
    monkeypatch.setenv("READINESS_KV_S3_OK", servers.moto.secret)
    subjects = {s.kind: s for s in SUBJECTS}
    for kind, env in (("redis", "READINESS_KV_REDIS_OK"), ("broker", "READINESS_KV_BROKER_OK"),
                      ("backup", "READINESS_KV_S3_OK")):
        subject = subjects[kind]
        outcome = await _run(subject.build(_wrong_credentials_target(subject, servers), None,
                                           env), tmp_path)
        assert outcome.status is not Status.ERROR, (kind, outcome)


async def test_s3_rotated_keys_are_read_after_a_rejection(
        servers: Servers, secret: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A rejected key drops the S3 client: once the secret is fixed, the next run of the
    same runtime builds a client with it (no restart)."""
    caplog.set_level(logging.DEBUG)
    subject = next(s for s in SUBJECTS if s.kind == "backup")
    spec, connections = subject.build(_wrong_credentials_target(subject, servers), None,
                                      SECRET_ENV)
    context = RuntimeContext(connections, state_dir=tmp_path / "state")
    try:
        rejected, _ = await run_check(spec, context)
        assert (rejected.status, rejected.reason) == (Status.ERROR, Reason.AUTH), rejected
        assert "rejected the credentials (S3 SignatureDoesNotMatch)" in rejected.message
        monkeypatch.setenv(SECRET_ENV, servers.moto.secret)
        rotated, _ = await run_check(spec, context)
        assert rotated.status is not Status.ERROR, rotated
    finally:
        await context.aclose()
    _secret_free(rejected, secret, caplog)
    _secret_free(rotated, servers.moto.secret, caplog)
