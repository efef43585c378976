"""Faults between the `redis` kind and a real redis-server (started here, password set):
each fault gives the transport table's reason within the check's timeout, the next run
after it clears passes on the same runtime, and nothing leaks (fds, threads, the
server's `CLIENT LIST`, the proxy's connections)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exporter import registry
from tests.resilience.harness import (
    ANSWERING_FAULTS,
    ANSWERING_IDS,
    FAULT_IDS,
    FAULTS,
    NEAR_MISS_IDS,
    NEAR_MISSES,
    Fault,
    Subject,
    assert_no_leak,
    fault_then_recovery,
    lingering_requests,
    passes_under,
)
from tests.support.fault_proxy import fault_proxy
from tests.support.servers import RedisServer, redis_server

PASSWORD = "faults-redis-pw-" + uuid.uuid4().hex
ENV = "READINESS_FAULTS_REDIS_PASSWORD"
TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server(password=PASSWORD) as started:
        yield started


async def client_count(server: RedisServer) -> int:
    """Clients the server sees, without the redis-cli asking."""
    process = await asyncio.create_subprocess_exec(
        "redis-cli", "-p", str(server.port), "--no-auth-warning", "-a", PASSWORD,
        "CLIENT", "LIST", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    lines = [line for line in out.decode().splitlines() if line.strip()]
    return sum(1 for line in lines if "cmd=client|list" not in line)


@pytest.fixture
async def subject(server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subject]:
    monkeypatch.setenv(ENV, PASSWORD)
    async with fault_proxy("127.0.0.1", server.port) as proxy:
        connection = registry.connection_kind("redis").spec.model_validate(
            {"kind": "redis", "host": "127.0.0.1", "port": proxy.port,
             "password": f"${{{ENV}}}"})
        spec = registry.probe_kind("redis").spec.model_validate(
            {"id": "faults-redis", "section": "3.2", "title": "faults", "kind": "redis",
             "connection": "cache", "aspect": "ping", "timeout": TIMEOUT})
        yield Subject(spec, proxy, lambda: client_count(server), {"cache": connection},
                      (PASSWORD,))


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_fault_gives_its_reason_and_clears(subject: Subject, fault: Fault,
                                                 tmp_path: Path) -> None:
    """Warm: a pooled connection exists when the fault starts."""
    await fault_then_recovery(subject, fault, tmp_path / "state", warm=True)


async def test_fault_on_a_fresh_runtime(subject: Subject, tmp_path: Path) -> None:
    """The first connection of a runtime is the one faulted (no pooled connection)."""
    for fault in subject.faults:
        await fault_then_recovery(subject, fault, tmp_path / "state", warm=False)


@pytest.mark.parametrize("fault", NEAR_MISSES, ids=NEAR_MISS_IDS)
async def test_milder_fault_still_passes(subject: Subject, fault: Fault,
                                         tmp_path: Path) -> None:
    await passes_under(subject, fault, tmp_path / "state")


async def test_no_leak_after_fault_cycles(subject: Subject, tmp_path: Path) -> None:
    await assert_no_leak(subject, tmp_path / "state")


@pytest.mark.parametrize("fault", ANSWERING_FAULTS, ids=ANSWERING_IDS)
async def test_ended_check_leaves_no_request_on_the_wire(subject: Subject, fault: Fault,
                                                         tmp_path: Path) -> None:
    assert await lingering_requests(subject, fault, tmp_path / "state") == 0
