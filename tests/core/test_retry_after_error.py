"""Retry after error: a check whose last run ended in `error` runs again after a short,
growing, jittered backoff instead of waiting a whole interval (issue 16)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import config
from exporter.daemon import Runtime
from exporter.model import Reason, Status
from exporter.scheduler import RetryBackoff
from tests.support.servers import free_port

INTERVAL = 120.0  # far longer than any wait below: a recovery seen here came from a retry


def http_config(port: int, state_dir: Path, **settings: Any) -> config.Config:
    return config.build({
        "settings": {"first_round_spread": 0.1, "jitter": 0, "state_dir": str(state_dir),
                     "retry_initial": 0.2, "retry_max": 1, **settings},
        "checks": [{"id": "api", "section": "7.4", "title": "api", "kind": "http",
                    "url": f"http://127.0.0.1:{port}/", "interval": INTERVAL, "timeout": 2}],
    }, "test", {})


@asynccontextmanager
async def listening(port: int) -> AsyncIterator[None]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def wait_for(runtime: Runtime, status: Status, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if runtime.store.get("api").status is status:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_check_erroring_on_a_refused_port_recovers_before_its_next_interval(
        tmp_path: Path) -> None:
    port = free_port()
    runtime = Runtime(http_config(port, tmp_path), None)
    await runtime.start()
    try:
        assert await wait_for(runtime, Status.ERROR, 10)
        outcome = runtime.store.get("api").outcome
        assert outcome is not None and outcome.reason is Reason.CONNECT
        # Still refused: the retries keep coming (more than one run within the wait,
        # where the interval alone would give exactly one).
        await asyncio.sleep(1.5)
        assert runtime.store.get("api").runs >= 2
        async with listening(port):
            assert await wait_for(runtime, Status.PASS, 15), \
                "no retry reached the server well before the next interval"
    finally:
        await runtime.stop()


async def test_without_retry_the_error_stays_until_the_next_interval(tmp_path: Path) -> None:
    port = free_port()
    runtime = Runtime(http_config(port, tmp_path, retry_after_error=False), None)
    await runtime.start()
    try:
        assert await wait_for(runtime, Status.ERROR, 10)
        async with listening(port):
            assert not await wait_for(runtime, Status.PASS, 3)
        assert runtime.store.get("api").runs == 1
    finally:
        await runtime.stop()


async def test_a_passing_check_keeps_its_interval(tmp_path: Path) -> None:
    port = free_port()
    async with listening(port):
        runtime = Runtime(http_config(port, tmp_path), None)
        await runtime.start()
        try:
            assert await wait_for(runtime, Status.PASS, 10)
            await asyncio.sleep(1.5)
            assert runtime.store.get("api").runs == 1
        finally:
            await runtime.stop()


@pytest.mark.parametrize("streak", [1, 2, 3, 5, 10, 60])
def test_backoff_doubles_within_its_bounds_and_jitters(streak: int) -> None:
    backoff = RetryBackoff(initial=1.0, maximum=30.0)
    ceiling = min(30.0, 2.0 ** (streak - 1))
    delays = {backoff.delay(streak) for _ in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # jittered, not in step


def test_retry_settings_are_bounded() -> None:
    with pytest.raises(config.ConfigError, match="retry_initial"):
        config.build({"settings": {"retry_initial": 0}, "checks": []}, "test", {})
    with pytest.raises(config.ConfigError, match="retry_max"):
        config.build({"settings": {"retry_max": 7200}, "checks": []}, "test", {})
