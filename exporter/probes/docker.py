"""`docker`: the containers of a Docker Compose project are running and healthy (7.2).

Asks the Docker Engine API over its unix socket (`/var/run/docker.sock` by default):
`GET /containers/json?all=1&filters={"label":["com.docker.compose.project=<project>"]}`
lists the project's containers (stopped ones included), then `GET /containers/{id}/json`
gives each one's state and health-check status. One-off containers (`docker compose
run`) are left out. The client (an aiohttp session on a `UnixConnector`) is kept per
socket and event loop, reused across runs, and closed by the kind's shutdown hook.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from pydantic import Field

from exporter.model import (
    CheckSpec,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
)
from exporter.probes.wording import shortened

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# Engine container states (State.Status); anything else is exported as "other".
STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH = ("healthy", "unhealthy", "starting", "none")
_LIST_IN_MESSAGE = 5


class DockerCheck(CheckSpec):
    """`kind: docker` options."""

    kind: Literal["docker"]
    project: str = Field(min_length=1, description="Compose project name (label "
                         "com.docker.compose.project; `docker compose ls` shows it)")
    socket: Path = Field(default=Path("/var/run/docker.sock"),
                         description="Docker Engine API unix socket")
    api_version: str | None = Field(default=None, pattern=r"^1\.[0-9]+$", description=(
        "Engine API version to pin in the path, e.g. 1.43 (default: the engine's own)"))
    services: list[str] = Field(default=[], description="services that must each have a "
                                "running container (empty: those the project has)")
    allow_exited: list[str] = Field(default=[], description="services whose containers may "
                                    "have exited with code 0 (one-shot jobs such as migrations)")
    require_healthy: bool = Field(default=True, description="a container with a health "
                                  "check must report healthy (starting or unhealthy fails)")


CONTAINERS = MetricFamily(
    "readiness_docker_containers",
    "Containers of the Compose project by Engine state (created, running, paused, "
    "restarting, removing, exited, dead, other).",
    ("state",),
)
HEALTH_FAMILY = MetricFamily(
    "readiness_docker_containers_health",
    "Containers of the Compose project by health-check status (healthy, unhealthy, "
    "starting, none = no health check).",
    ("health",),
)
SERVICE_RUNNING = MetricFamily(
    "readiness_docker_service_running_containers",
    "Running containers per Compose service (services from the check's `services`, else "
    "those found).",
    ("service",),
)
METRICS = (CONTAINERS, HEALTH_FAMILY, SERVICE_RUNNING)


@dataclass(frozen=True, slots=True)
class Container:
    """What the Engine says of one container (no environment, no command line)."""

    name: str
    service: str
    state: str
    exit_code: int
    health: str  # healthy, unhealthy, starting, none


_sessions: dict[tuple[str, int], aiohttp.ClientSession] = {}


def _session(socket: Path) -> aiohttp.ClientSession:
    key = (str(socket), id(asyncio.get_running_loop()))
    session = _sessions.get(key)
    if session is None or session.closed:
        session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket)),
                                        trust_env=False)
        _sessions[key] = session
    return session


async def shutdown() -> None:
    """Close the Engine clients of the running loop (others belong to ended loops)."""
    loop_id = id(asyncio.get_running_loop())
    for key in [k for k in _sessions if k[1] == loop_id]:
        await _sessions.pop(key).close()


async def _get(spec: DockerCheck, path: str) -> Any:
    prefix = f"/v{spec.api_version}" if spec.api_version else ""
    url = f"http://docker{prefix}{path}"
    try:
        async with _session(spec.socket).get(url) as response:
            if response.status != 200:
                raise ProbeError(Reason.PROTOCOL, f"Docker Engine answered HTTP "
                                 f"{response.status} to GET {prefix}{path.split('?')[0]}")
            return await response.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, PermissionError):
            raise ProbeError(Reason.AUTH, f"no permission on {spec.socket}: run the "
                             "exporter in the socket's group (docker)") from None
        raise ProbeError(Reason.CONNECT, f"cannot connect to the Docker Engine at "
                         f"{spec.socket}: check `socket` and that dockerd runs") from None
    except (json.JSONDecodeError, aiohttp.ContentTypeError):
        raise ProbeError(Reason.PROTOCOL, "Docker Engine answered non-JSON") from None
    except aiohttp.ClientError as exc:
        raise ProbeError(Reason.PROTOCOL, f"Docker Engine: {type(exc).__name__}") from None


def _container(summary: dict[str, Any], detail: dict[str, Any]) -> Container:
    labels = summary.get("Labels") or {}
    state = detail.get("State") or {}
    health = state.get("Health") or {}
    names = summary.get("Names") or [detail.get("Name") or str(summary.get("Id", ""))[:12]]
    return Container(
        name=str(names[0]).lstrip("/"),
        service=str(labels.get(SERVICE_LABEL, "")),
        state=str(state.get("Status") or summary.get("State") or "unknown"),
        exit_code=int(state.get("ExitCode") or 0),
        health=str(health.get("Status") or "none"),
    )


async def _containers(spec: DockerCheck) -> list[Container]:
    filters = json.dumps({"label": [f"{PROJECT_LABEL}={spec.project}"]})
    listed = await _get(spec, f"/containers/json?all=1&filters={quote(filters)}")
    if not isinstance(listed, list):
        raise ProbeError(Reason.PROTOCOL, "GET /containers/json did not answer a list")
    found = []
    for summary in listed:
        if not isinstance(summary, dict):
            continue
        labels = summary.get("Labels") or {}
        if labels.get(PROJECT_LABEL) != spec.project or labels.get(ONEOFF_LABEL) == "True":
            continue
        detail = await _get(spec, f"/containers/{quote(str(summary.get('Id', '')))}/json")
        found.append(_container(summary, detail if isinstance(detail, dict) else {}))
    return found


def _problem(spec: DockerCheck, container: Container) -> str | None:
    if container.state == "exited" and container.exit_code == 0 \
            and container.service in spec.allow_exited:
        return None
    if container.state != "running":
        code = f" (code {container.exit_code})" if container.state == "exited" else ""
        return f"{container.name} {container.state}{code}"
    if spec.require_healthy and container.health in ("unhealthy", "starting"):
        return f"{container.name} {container.health}"
    return None


def _short(items: list[str]) -> str:
    return shortened(items, _LIST_IN_MESSAGE)


def judge(spec: DockerCheck, containers: list[Container]) -> Outcome:
    """The verdict over the project's containers."""
    states = Counter(c.state if c.state in STATES else "other" for c in containers)
    health = Counter(c.health if c.health in HEALTH else "none" for c in containers)
    running = Counter(c.service for c in containers if c.state == "running")
    services = spec.services or sorted({c.service for c in containers})
    measurements = [Measurement(CONTAINERS.name, float(states[s]), {"state": s})
                    for s in (*STATES, "other")]
    measurements += [Measurement(HEALTH_FAMILY.name, float(health[h]), {"health": h})
                     for h in HEALTH]
    measurements += [Measurement(SERVICE_RUNNING.name, float(running[s]), {"service": s})
                     for s in services]
    if not containers:
        return Outcome.errored(Reason.CONFIG, f"no container has label {PROJECT_LABEL}="
                               f"{spec.project}: check `project` (`docker compose ls`) "
                               "and `socket`", tuple(measurements))
    problems = [p for p in (_problem(spec, c) for c in containers) if p]
    missing = [s for s in spec.services if not running[s] and s not in spec.allow_exited]
    if missing:
        problems.append(f"no running container for service {_short(missing)}")
    if problems:
        return Outcome.failed(f"{spec.project}: {_short(problems)}", tuple(measurements))
    checked = [f"{states['running']} running"]
    with_health = health["healthy"]
    if spec.require_healthy:
        checked.append(f"{with_health} healthy by health check, {health['none']} without one")
    return Outcome.passed(f"{spec.project}: {len(containers)} containers of {len(services)} "
                          f"services; {', '.join(checked)}", tuple(measurements))


async def run(spec: DockerCheck, ctx: ProbeContext) -> Outcome:
    """List the project's containers through the Engine API and judge them."""
    try:
        containers = await _containers(spec)
    except ProbeError as exc:
        return exc.outcome()
    return judge(spec, containers)


KIND = ProbeKind(
    name="docker",
    spec=DockerCheck,
    run=run,
    summary="The containers of a Docker Compose project are running and healthy (Docker "
    "Engine API over its unix socket).",
    metrics=METRICS,
    shutdown=shutdown,
)
