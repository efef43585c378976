"""7.2: the Compose project's containers are running and healthy, through the Docker
Engine API on a unix socket. No Docker engine runs on this machine: the tests talk to
`docker_engine`, an aiohttp server on a unix socket answering the Engine's own paths
with bodies shaped like the Engine's."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter import registry
from exporter.config import _parse_yaml, _preset_documents
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes import docker
from tests.probes.docker_engine import SECRET_ENV, FakeContainer, docker_engine

PROJECT = "qbitel"


@pytest.fixture
async def shutdown_docker() -> AsyncIterator[None]:
    yield
    await docker.shutdown()


def spec(socket: Path, **fields: Any) -> docker.DockerCheck:
    return docker.DockerCheck.model_validate({
        "id": "7.2", "section": "7.2", "title": "t", "kind": "docker", "project": PROJECT,
        "socket": str(socket), **fields})


def healthy_project() -> list[FakeContainer]:
    return [FakeContainer(PROJECT, "api", health="healthy"),
            FakeContainer(PROJECT, "api", number=2, health="healthy"),
            FakeContainer(PROJECT, "worker"),  # no health check in its image
            FakeContainer(PROJECT, "migrate", state="exited", exit_code=0),
            FakeContainer(PROJECT, "api", number=3, state="exited", exit_code=1, oneoff=True),
            FakeContainer("other", "api", state="exited", exit_code=137)]


def values(outcome: Outcome, family: str) -> dict[str, float]:
    return {next(iter(m.labels.values())): m.value for m in outcome.measurements
            if m.family == family}


@pytest.fixture
def socket(tmp_path: Path) -> Path:
    return tmp_path / "docker.sock"


async def test_running_and_healthy_project_passes(socket: Path, ctx: RuntimeContext,
                                                  shutdown_docker: None) -> None:
    async with docker_engine(socket, healthy_project()) as requests:
        outcome = await docker.run(spec(socket, services=["api", "worker"],
                                        allow_exited=["migrate"]), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == ("qbitel: 4 containers of 2 services; 3 running, 2 healthy by "
                               "health check, 2 without one")
    assert values(outcome, "readiness_docker_containers")["running"] == 3
    assert values(outcome, "readiness_docker_containers")["exited"] == 1
    assert values(outcome, "readiness_docker_service_running_containers") == {
        "api": 2, "worker": 1}
    # the Engine was asked with the Compose project label filter, stopped ones included
    assert requests[0].startswith("/containers/json?all=1&filters=")
    assert "com.docker.compose.project%3Dqbitel" in requests[0]
    assert SECRET_ENV.split("=")[1] not in repr(outcome)


@pytest.mark.parametrize(("change", "words"), [
    ({"service": "api", "number": 2, "health": "unhealthy"}, "qbitel-api-2 unhealthy"),
    ({"service": "api", "number": 2, "health": "starting"}, "qbitel-api-2 starting"),
    ({"service": "worker", "state": "exited", "exit_code": 137},
     "qbitel-worker-1 exited (code 137)"),
    ({"service": "worker", "state": "restarting", "exit_code": 1},
     "qbitel-worker-1 restarting"),
    ({"service": "migrate", "state": "exited", "exit_code": 1},
     "qbitel-migrate-1 exited (code 1)"),
], ids=["unhealthy", "health-starting", "exited", "restarting", "job-failed"])
async def test_not_running_or_not_healthy_fails(change: dict[str, Any], words: str,
                                                socket: Path, ctx: RuntimeContext,
                                                shutdown_docker: None) -> None:
    containers = healthy_project()
    for container in containers:
        if (container.project, container.service, container.number, container.oneoff) == (
                PROJECT, change["service"], change.get("number", 1), False):
            for key, value in change.items():
                setattr(container, key, value)
    async with docker_engine(socket, containers):
        outcome = await docker.run(spec(socket, allow_exited=["migrate"]), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert words in outcome.message


async def test_health_not_required_lets_starting_pass(socket: Path, ctx: RuntimeContext,
                                                      shutdown_docker: None) -> None:
    containers = [FakeContainer(PROJECT, "api", health="starting")]
    async with docker_engine(socket, containers):
        lenient = await docker.run(spec(socket, require_healthy=False), ctx)
    assert lenient.status is Status.PASS
    assert "healthy" not in lenient.message  # never claims a health check it did not judge


async def test_missing_service_fails(socket: Path, ctx: RuntimeContext,
                                     shutdown_docker: None) -> None:
    async with docker_engine(socket, healthy_project()):
        outcome = await docker.run(spec(socket, services=["api", "worker", "scheduler"],
                                        allow_exited=["migrate"]), ctx)
    assert outcome.status is Status.FAIL
    assert "no running container for service scheduler" in outcome.message
    assert values(outcome, "readiness_docker_service_running_containers")["scheduler"] == 0


async def test_misspelled_project_is_a_config_error(socket: Path, ctx: RuntimeContext,
                                                    shutdown_docker: None) -> None:
    async with docker_engine(socket, healthy_project()):
        outcome = await docker.run(spec(socket, project="qbitl"), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "com.docker.compose.project=qbitl" in outcome.message and "`project`" in outcome.message


async def test_pinned_api_version(socket: Path, ctx: RuntimeContext,
                                  shutdown_docker: None) -> None:
    async with docker_engine(socket, healthy_project()) as requests:
        outcome = await docker.run(spec(socket, api_version="1.43",
                                        allow_exited=["migrate"]), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert all(path.startswith("/v1.43/containers/") for path in requests)


async def test_no_engine_and_no_permission(socket: Path, ctx: RuntimeContext,
                                           shutdown_docker: None) -> None:
    absent = await docker.run(spec(socket), ctx)
    assert absent.status is Status.ERROR and absent.reason is Reason.CONNECT
    assert str(socket) in absent.message
    if os.geteuid() == 0:
        return  # root ignores socket permissions; the connect case above still ran
    async with docker_engine(socket, healthy_project()):
        socket.chmod(0)
        denied = await docker.run(spec(socket), ctx)
    assert denied.status is Status.ERROR and denied.reason is Reason.AUTH


async def test_client_is_reused_across_runs(socket: Path, ctx: RuntimeContext,
                                            shutdown_docker: None) -> None:
    async with docker_engine(socket, healthy_project()):
        await docker.run(spec(socket, allow_exited=["migrate"]), ctx)
        first = dict(docker._sessions)
        await docker.run(spec(socket, allow_exited=["migrate"]), ctx)
        assert docker._sessions == first and len(first) == 1
    await docker.shutdown()
    assert not docker._sessions


def test_preset_ships_it_disabled_with_kubernetes() -> None:
    checks = [c for origin, text in _preset_documents("qbitel-production")
              for c in _parse_yaml(text, origin).get("checks", []) if c["id"] == "7.2"]
    assert len(checks) == 1
    check = registry.probe_kind("docker").spec.model_validate(checks[0])
    assert check.enabled is False and "Kubernetes" in (check.disabled_reason or "")
    assert check.project == PROJECT
