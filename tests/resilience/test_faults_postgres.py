"""Faults between the `postgres` kind and the machine's real PostgreSQL (127.0.0.1:5432):
each fault gives the transport table's reason within the check's timeout, the next run
after it clears passes on the same runtime (the pool replaces its broken connections),
and nothing leaks (fds, threads, the server's `pg_stat_activity` rows for this test's
`application_name`, the proxy's connections)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
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
from tests.support.servers import pg_bin

TIMEOUT = 2.5
PG_PORT = 5432


async def sessions(application_name: str) -> int:
    """Backends the server has for `application_name` (asked directly, not proxied)."""
    process = await asyncio.create_subprocess_exec(
        pg_bin("psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
        "-d", "postgres", "-c",
        f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0
    return int(out.decode().strip())


@pytest.fixture
async def subject() -> AsyncIterator[Subject]:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    async with fault_proxy("127.0.0.1", PG_PORT) as proxy:
        connection = registry.connection_kind("postgres").spec.model_validate(
            {"kind": "postgres", "host": "127.0.0.1", "port": proxy.port, "user": "postgres",
             "application_name": name, "min_size": 1, "max_size": 2})
        spec = registry.probe_kind("postgres").spec.model_validate(
            {"id": "faults-postgres", "section": "3.1", "title": "faults", "kind": "postgres",
             "connection": "db", "min_version_num": 100000, "timeout": TIMEOUT})
        yield Subject(spec, proxy, lambda: sessions(name), {"db": connection})


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_fault_gives_its_reason_and_clears(subject: Subject, fault: Fault,
                                                 tmp_path: Path) -> None:
    """Warm: the pool holds a connection when the fault starts."""
    await fault_then_recovery(subject, fault, tmp_path / "state", warm=True)


async def test_fault_on_a_fresh_runtime(subject: Subject, tmp_path: Path) -> None:
    """The pool's first connection is the one faulted."""
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
