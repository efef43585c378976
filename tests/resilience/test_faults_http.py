"""Faults between the `http` kind and a local aiohttp application (a JSON health
endpoint): each fault gives the transport table's reason within the check's timeout, the
next run after it clears passes on the same runtime, and nothing leaks (fds, threads, the
application's open connections, the proxy's connections)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from exporter import registry
from tests.resilience.harness import (
    FAULT_IDS,
    FAULTS,
    NEAR_MISS_IDS,
    NEAR_MISSES,
    Fault,
    Subject,
    assert_no_leak,
    faulted_runs,
    recovered,
    run,
)
from tests.support.fault_proxy import fault_proxy
from tests.support.servers import free_port

TIMEOUT = 1.0


async def _health(_: web.Request) -> web.Response:
    # Large enough that slow reads cannot deliver it within the timeout by chance.
    return web.json_response({"status": "ok", "padding": "x" * 2048})


@pytest.fixture
async def subject() -> AsyncIterator[Subject]:
    app = web.Application()
    app.router.add_get("/health", _health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server = runner.server
    assert server is not None

    async def open_connections() -> int:
        return len(server.connections)

    try:
        async with fault_proxy("127.0.0.1", port) as proxy:
            spec = registry.probe_kind("http").spec.model_validate(
                {"id": "faults-http", "section": "5.1", "title": "faults", "kind": "http",
                 "url": f"http://127.0.0.1:{proxy.port}/health", "timeout": TIMEOUT,
                 "json_assertions": [{"path": "status", "value": "ok"}]})
            yield Subject(spec, proxy, open_connections)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_fault_gives_its_reason_and_clears(subject: Subject, fault: Fault,
                                                 tmp_path: Path) -> None:
    ctx = subject.context(tmp_path / "state")
    try:
        await recovered(subject, ctx)  # a kept-alive connection exists when the fault starts
        await faulted_runs(subject, ctx, fault)
        await recovered(subject, ctx)
    finally:
        await ctx.aclose()


async def test_fault_on_a_fresh_runtime(subject: Subject, tmp_path: Path) -> None:
    """The first connection of a runtime is the one faulted (nothing kept alive)."""
    for fault in FAULTS:
        ctx = subject.context(tmp_path / "state")
        try:
            await faulted_runs(subject, ctx, fault)
            await recovered(subject, ctx)
        finally:
            await ctx.aclose()


@pytest.mark.parametrize("fault", NEAR_MISSES, ids=NEAR_MISS_IDS)
async def test_milder_fault_still_passes(subject: Subject, fault: Fault,
                                         tmp_path: Path) -> None:
    ctx = subject.context(tmp_path / "state")
    try:
        fault.apply(subject.proxy, TIMEOUT)
        outcome, _ = await run(subject, ctx)
        assert outcome.status.value == "pass", outcome.message
    finally:
        subject.proxy.clear()
        await ctx.aclose()


async def test_no_leak_after_fault_cycles(subject: Subject, tmp_path: Path) -> None:
    await assert_no_leak(subject, tmp_path / "state")
