"""Faults between the `kubernetes` kind (the real kubernetes-asyncio client, through a
kubeconfig) and the Kubernetes stand-in (`tests/probes/k8s_apiserver.py`): each fault
gives the transport table's reason within the check's timeout, the next run after it
clears passes on the same runtime, and nothing leaks (fds, threads, the stand-in's open
connections, the proxy's connections). The token never shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.model import Reason, Status
from exporter.probes.kubernetes.connection import KubernetesConnection
from exporter.probes.kubernetes.spec import KubernetesCheck
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
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
    recovered,
    run,
)
from tests.support.fault_proxy import Mode, fault_proxy
from tests.support.servers import free_port

TOKEN = "faults-k8s-token-do-not-leak-7731"
TIMEOUT = 4.0
REQUEST_TIMEOUT = 1.5
KUBE_FAULTS = (*FAULTS, BODY_FAULT)


@pytest.fixture
async def subject(tmp_path: Path) -> AsyncIterator[Subject]:
    api = FakeApiServer(token=TOKEN)
    api.load_fixtures()  # the namespace list is ~2 KB: a reset at 1 KiB is mid-body
    await api.start(free_port())
    runner = api._runner
    assert runner is not None and runner.server is not None
    server = runner.server

    async def open_connections() -> int:
        return len(server.connections)

    try:
        async with fault_proxy("127.0.0.1", api.port) as proxy:
            kubeconfig = write_kubeconfig(tmp_path / "kubeconfig",
                                          f"http://127.0.0.1:{proxy.port}", TOKEN)
            # Every run asks the API server: no shared LIST, no watch keeping a cache.
            connection = KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                              snapshot_ttl=0, watch=False,
                                              request_timeout=REQUEST_TIMEOUT)
            spec = KubernetesCheck.model_validate(
                {"id": "faults-k8s", "section": "4.1", "title": "faults", "kind": "kubernetes",
                 "assert": "namespaces_exist", "required_namespaces": ["qbitel"],
                 "connection": "k8s", "timeout": TIMEOUT})
            yield Subject(spec, proxy, open_connections, {"k8s": connection}, (TOKEN,),
                          KUBE_FAULTS)
    finally:
        await api.stop()


@pytest.mark.parametrize("fault", KUBE_FAULTS, ids=[f.name for f in KUBE_FAULTS])
async def test_fault_gives_its_reason_and_clears(subject: Subject, fault: Fault,
                                                 tmp_path: Path) -> None:
    """Warm: the ApiClient holds a connection when the fault starts."""
    await fault_then_recovery(subject, fault, tmp_path / "state", warm=True)


async def test_fault_on_a_fresh_runtime(subject: Subject, tmp_path: Path) -> None:
    """The ApiClient's first connection is the one faulted."""
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


async def test_a_list_its_check_gave_up_on_is_not_joined_by_the_next_run(
        subject: Subject, tmp_path: Path) -> None:
    """`request_timeout` (30 s here, 8 s by default) longer than the check's `timeout`:
    the LIST the timed-out check was waiting for is cancelled with it, so the first run
    after the fault clears asks afresh and passes. (It used to join the old LIST, shared
    by key, and end in `timeout` again until that LIST gave up.)"""
    connection = subject.connections["k8s"]
    assert isinstance(connection, KubernetesConnection)
    slow = Subject(subject.spec.model_copy(update={"timeout": 1.0}), subject.proxy,
                   subject.server_connections,
                   {"k8s": connection.model_copy(update={"request_timeout": 30.0})},
                   subject.secrets)
    ctx = slow.context(tmp_path / "state")
    try:
        await recovered(slow, ctx)
        subject.proxy.set(Mode.BLACKHOLE)
        outcome, _ = await run(slow, ctx)
        assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.TIMEOUT), \
            outcome.message
        subject.proxy.clear()
        await recovered(slow, ctx)  # at once: not 30 s later
    finally:
        subject.proxy.clear()
        await ctx.aclose()
