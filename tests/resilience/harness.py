"""What every fault test does, whatever the family: the faults and the reason each must give,
one check run through `run_check` on one `RuntimeContext`, and the footprint counted
before and after (open fds, threads, server-side and proxied connections).

A family module builds a `Subject` (the check, its connections, a counter of the
connections its server sees) in front of a `FaultProxy`; its tests call
`fault_then_recovery` (warm and fresh runtimes), `passes_under` (the near misses),
`assert_no_leak` and `lingering_requests`. The expected reasons are the transport table's (`BASE_ERRORS` and each
family's rows) and the same for every family:

- added latency above the timeout, blackhole, slow reads: `timeout`;
- a TCP reset mid-stream: `connect` (the connection was lost; not `protocol`, which is
  kept for answers the client could not understand).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from exporter.context import RuntimeContext
from exporter.model import CheckSpec, ConnectionSpec, Outcome, Reason, Status
from exporter.runner import run_check
from tests.support.fault_proxy import FaultProxy, Mode

RESET_AFTER = 7
"""Bytes the proxy still carries after a reset is set: a few bytes into the exchange
(`reset`: into the client's request; `reset_in_answer`: into the server's answer)."""
RUNS_PER_FAULT = 2
SLACK = 2.0
"""Seconds a faulted run may take beyond the check's timeout before it counts as a hang
(scheduling on a loaded machine); a run that ignored its timeout took 16-31 s."""


@dataclass(frozen=True)
class Fault:
    """One fault: how to set it on the proxy for a check of `timeout` seconds, and the
    reason the check must end with."""

    name: str
    apply: Callable[[FaultProxy, float], None]
    reason: Reason


FAULTS = [
    Fault("latency", lambda proxy, timeout: proxy.set(Mode.LATENCY, latency=timeout * 2),
          Reason.TIMEOUT),
    Fault("blackhole", lambda proxy, _timeout: proxy.set(Mode.BLACKHOLE), Reason.TIMEOUT),
    Fault("slow_reads", lambda proxy, timeout: proxy.set(
        Mode.SLOW, trickle_bytes=1, trickle_delay=timeout / 4), Reason.TIMEOUT),
    Fault("reset", lambda proxy, _timeout: proxy.set(Mode.RESET, reset_after=RESET_AFTER),
          Reason.CONNECT),
    Fault("reset_in_answer", lambda proxy, _timeout: proxy.set(
        Mode.RESET, reset_after=RESET_AFTER, downstream_only=True), Reason.CONNECT),
    Fault("close_in_answer", lambda proxy, _timeout: proxy.set(
        Mode.CLOSE, reset_after=RESET_AFTER, downstream_only=True), Reason.CONNECT),
]
FAULT_IDS = [fault.name for fault in FAULTS]

RESET_IN_BODY = 1024
BODY_FAULT = Fault("reset_in_body", lambda proxy, _timeout: proxy.set(
    Mode.RESET, reset_after=RESET_IN_BODY, downstream_only=True), Reason.CONNECT)
"""For the families whose answer has a body of more than RESET_IN_BODY bytes (HTTP,
Kubernetes, S3): the reset lands after the headers, in the middle of the body."""

NEAR_MISSES = [
    Fault("latency_below_timeout",
          lambda proxy, timeout: proxy.set(Mode.LATENCY, latency=timeout / 20), Reason.TIMEOUT),
    Fault("slow_reads_within_timeout", lambda proxy, timeout: proxy.set(
        Mode.SLOW, trickle_bytes=4096, trickle_delay=timeout / 50), Reason.TIMEOUT),
]
"""The same faults, milder: the answer still arrives within the timeout, so the check
passes (the fault tests above do not pass merely because every slow answer is an error)."""
NEAR_MISS_IDS = [fault.name for fault in NEAR_MISSES]


POOL_THREAD_PREFIXES = ("readiness-probe", "asyncio_")
"""Threads of the runtime's pool (`RuntimeContext`, 8 at most) and of the loop's default
executor (name resolution): pools that grow to a bounded steady size and keep it."""
POOL_THREADS_MAX = 8 + min(32, (os.cpu_count() or 1) + 4)


@dataclass(frozen=True)
class Footprint:
    """What a leak would grow (pool threads are counted apart: they may grow, bounded)."""

    fds: int
    threads: int
    server_connections: int
    proxied_connections: int
    pool_threads: int = field(default=0, compare=False)


@dataclass
class Subject:
    """One family under test: its check, connections, proxy and server-side counter."""

    spec: CheckSpec
    proxy: FaultProxy
    server_connections: Callable[[], Awaitable[int]]
    connections: dict[str, ConnectionSpec] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    faults: tuple[Fault, ...] = tuple(FAULTS)

    def context(self, state_dir: Path) -> RuntimeContext:
        """A new runtime context with the subject's connections."""
        return RuntimeContext(self.connections, state_dir=state_dir)


def open_fds() -> int:
    """File descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    """Threads of this process (Python's and the libraries' own), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


def pool_threads() -> int:
    """Live threads of the pools in POOL_THREAD_PREFIXES."""
    return sum(1 for thread in threading.enumerate()
               if thread.name.startswith(POOL_THREAD_PREFIXES))


async def footprint(subject: Subject) -> Footprint:
    """Count everything now."""
    pooled = pool_threads()
    return Footprint(open_fds(), os_threads() - pooled, await subject.server_connections(),
                     subject.proxy.live, pooled)


async def quiet(subject: Subject, limit: float = 10.0) -> Footprint:
    """The footprint once it stops moving (four equal readings 0.25 s apart, or the last
    reading after `limit` seconds): requests in flight have ended."""
    gc.collect()  # sockets an earlier test left to the garbage collector close now
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    readings = [await footprint(subject)]
    while loop.time() < end and (len(readings) < 4 or len(set(readings[-4:])) > 1):
        await asyncio.sleep(0.25)
        readings.append(await footprint(subject))
    return readings[-1]


async def settled(subject: Subject, expected: Footprint, limit: float = 15.0) -> Footprint:
    """The footprint once closes in flight have landed: polled until it equals
    `expected` or `limit` seconds pass (then the last one, for the assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    now = await footprint(subject)
    while now != expected and loop.time() < end:
        await asyncio.sleep(0.2)
        now = await footprint(subject)
    return now


async def run(subject: Subject, ctx: RuntimeContext) -> tuple[Outcome, float]:
    """One run of the subject's check on `ctx`."""
    return await run_check(subject.spec, ctx)


def assert_secret_free(subject: Subject, outcome: Outcome) -> None:
    """No configured secret in the outcome."""
    text = repr(outcome)
    for secret in subject.secrets:
        assert secret not in text


async def faulted_runs(subject: Subject, ctx: RuntimeContext, fault: Fault) -> list[Outcome]:
    """Set `fault`, run the check RUNS_PER_FAULT times, clear it; each run must end in the
    fault's reason within the check's timeout."""
    fault.apply(subject.proxy, subject.spec.timeout)
    outcomes = []
    try:
        for _ in range(RUNS_PER_FAULT):
            outcome, seconds = await run(subject, ctx)
            assert (outcome.status, outcome.reason) == (Status.ERROR, fault.reason), \
                f"{fault.name}: {outcome.status} {outcome.reason}: {outcome.message}"
            assert seconds < subject.spec.timeout + SLACK, (fault.name, seconds)
            assert_secret_free(subject, outcome)
            outcomes.append(outcome)
    finally:
        subject.proxy.clear()
    return outcomes


async def recovered(subject: Subject, ctx: RuntimeContext) -> Outcome:
    """The first run after a fault cleared, on the same context: it must pass."""
    outcome, _ = await run(subject, ctx)
    assert outcome.status is Status.PASS, f"no recovery: {outcome.reason}: {outcome.message}"
    return outcome


async def fault_cycle(subject: Subject, ctx: RuntimeContext) -> None:
    """Every fault in turn, each followed by a run that passes."""
    for fault in subject.faults:
        await faulted_runs(subject, ctx, fault)
        await recovered(subject, ctx)


async def fault_then_recovery(subject: Subject, fault: Fault, state_dir: Path, *,
                              warm: bool) -> None:
    """On a new runtime: `fault` gives its reason within the timeout, and the first run
    after it clears passes. `warm`: a passing run first, so the client holds a pooled
    (kept-alive) connection when the fault starts; otherwise the runtime's first
    connection is the one faulted."""
    ctx = subject.context(state_dir)
    try:
        if warm:
            await recovered(subject, ctx)
        await faulted_runs(subject, ctx, fault)
        await recovered(subject, ctx)
    finally:
        await ctx.aclose()


async def passes_under(subject: Subject, fault: Fault, state_dir: Path) -> None:
    """The near miss: with the milder `fault` set, the check still passes."""
    ctx = subject.context(state_dir)
    try:
        fault.apply(subject.proxy, subject.spec.timeout)
        outcome, _ = await run(subject, ctx)
        assert outcome.status is Status.PASS, f"{fault.name}: {outcome.message}"
    finally:
        subject.proxy.clear()
        await ctx.aclose()


async def assert_no_leak(subject: Subject, state_dir: Path, cycles: int = 2) -> None:
    """One fault cycle brings the pools to their steady size; after `cycles` more the
    footprint is what it was after the first, and closing the context releases every
    server-side and proxied connection."""
    before_all = await quiet(subject)
    ctx = subject.context(state_dir)
    try:
        await recovered(subject, ctx)
        await fault_cycle(subject, ctx)
        steady = await quiet(subject)
        for _ in range(cycles):
            await fault_cycle(subject, ctx)
        after = await settled(subject, steady)
        assert after == steady, f"steady {steady}, after {cycles} more fault cycles {after}"
        assert after.pool_threads <= POOL_THREADS_MAX, after
    finally:
        await ctx.aclose()
    closed = await settled(subject, Footprint(
        before_all.fds, after.threads, before_all.server_connections,
        before_all.proxied_connections))
    assert (closed.fds, closed.server_connections, closed.proxied_connections) == (
        before_all.fds, before_all.server_connections, before_all.proxied_connections), \
        f"before the context {before_all}, after closing it {closed}"


ANSWERING_FAULTS = [fault for fault in FAULTS if fault.name in ("latency", "slow_reads")]
"""Faults under which the server still answers, late: a request the check gave up on
could linger on the wire (and in a thread) after the check has ended."""
ANSWERING_IDS = [fault.name for fault in ANSWERING_FAULTS]


async def lingering_requests(subject: Subject, fault: Fault, state_dir: Path) -> int:
    """Requests still on the wire once RUNS_PER_FAULT faulted runs have ended, the fault
    still on: proxied connections beyond those open (idle in the client's pool) before."""
    ctx = subject.context(state_dir)
    try:
        await recovered(subject, ctx)
        before = await quiet(subject)
        fault.apply(subject.proxy, subject.spec.timeout)
        try:
            for _ in range(RUNS_PER_FAULT):
                outcome, _ = await run(subject, ctx)
                assert (outcome.status, outcome.reason) == (Status.ERROR, fault.reason), \
                    outcome.message
            during = await quiet(subject)
        finally:
            subject.proxy.clear()
        return max(0, during.proxied_connections - before.proxied_connections)
    finally:
        await ctx.aclose()


@contextlib.asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[int]:
    """A server that reads a request, writes `answer` and closes (FIN, no reset)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
