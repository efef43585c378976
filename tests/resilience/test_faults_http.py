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
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.runner import run_check
from tests.resilience.harness import (
    ANSWERING_FAULTS,
    ANSWERING_IDS,
    BODY_FAULT,
    FAULTS,
    NEAR_MISS_IDS,
    NEAR_MISSES,
    Fault,
    Subject,
    assert_no_leak,
    fault_then_recovery,
    lingering_requests,
    passes_under,
    raw_server,
)
from tests.support.fault_proxy import fault_proxy
from tests.support.servers import free_port

TIMEOUT = 1.5
HTTP_FAULTS = (*FAULTS, BODY_FAULT)


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
            yield Subject(spec, proxy, open_connections, faults=HTTP_FAULTS)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("fault", HTTP_FAULTS, ids=[f.name for f in HTTP_FAULTS])
async def test_fault_gives_its_reason_and_clears(subject: Subject, fault: Fault,
                                                 tmp_path: Path) -> None:
    """Warm: a kept-alive connection exists when the fault starts."""
    await fault_then_recovery(subject, fault, tmp_path / "state", warm=True)


async def test_fault_on_a_fresh_runtime(subject: Subject, tmp_path: Path) -> None:
    """The first connection of a runtime is the one faulted (nothing kept alive)."""
    for fault in subject.faults:
        await fault_then_recovery(subject, fault, tmp_path / "state", warm=False)


@pytest.mark.parametrize("fault", NEAR_MISSES, ids=NEAR_MISS_IDS)
async def test_milder_fault_still_passes(subject: Subject, fault: Fault,
                                         tmp_path: Path) -> None:
    await passes_under(subject, fault, tmp_path / "state")


async def test_no_leak_after_fault_cycles(subject: Subject, tmp_path: Path) -> None:
    await assert_no_leak(subject, tmp_path / "state")


CUT_SHORT = {
    "content_length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 2000\r\n\r\n{\"status\": \"ok\", \"pad",
    "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n7d0\r\n{\"status\": \"ok\", \"pad",
}
HUNG_UP = {
    "in_status_line": b"HTTP/1.",
    "before_any_byte": b"",
}
MALFORMED = {
    "bad_chunk_size": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "not_http": b"SSH-2.0-OpenSSH_9.2\r\n",
}


async def _one_run(port: int, ctx: RuntimeContext) -> Outcome:
    spec = registry.probe_kind("http").spec.model_validate(
        {"id": "faults-http-raw", "section": "5.1", "title": "faults", "kind": "http",
         "url": f"http://127.0.0.1:{port}/health", "timeout": TIMEOUT})
    outcome, _ = await run_check(spec, ctx)
    return outcome


@pytest.mark.parametrize("answer", CUT_SHORT.values(), ids=CUT_SHORT.keys())
async def test_connection_closed_mid_body_is_connect(answer: bytes, ctx: RuntimeContext) -> None:
    """A body cut short by the connection's end (no reset) is the same lost connection
    as the reset: `connect`, where aiohttp's payload error used to give `protocol`."""
    async with raw_server(answer) as port:
        outcome = await _one_run(port, ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONNECT), outcome.message
    assert "lost before the answer was complete" in outcome.message


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_answer_not_understood_stays_protocol(answer: bytes, ctx: RuntimeContext) -> None:
    """The near miss: an answer that arrived whole but cannot be parsed is `protocol`."""
    async with raw_server(answer) as port:
        outcome = await _one_run(port, ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.PROTOCOL), outcome.message


@pytest.mark.parametrize("fault", ANSWERING_FAULTS, ids=ANSWERING_IDS)
async def test_ended_check_leaves_no_request_on_the_wire(subject: Subject, fault: Fault,
                                                         tmp_path: Path) -> None:
    assert await lingering_requests(subject, fault, tmp_path / "state") == 0


@pytest.mark.parametrize("answer", HUNG_UP.values(), ids=HUNG_UP.keys())
async def test_server_hanging_up_before_an_answer_is_connect(answer: bytes,
                                                             ctx: RuntimeContext) -> None:
    """A server that hangs up before its answer is complete: `connect`, as a PostgreSQL or
    Redis server doing so (aiohttp's ServerDisconnectedError used to give `protocol`)."""
    async with raw_server(answer) as port:
        outcome = await _one_run(port, ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONNECT), outcome.message
    assert "closed before a complete answer" in outcome.message
