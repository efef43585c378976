"""A small Docker Engine API stand-in on a unix socket (no engine runs on this machine).

It answers the real paths the `docker` probe uses, `GET /containers/json` (with `all`
and the `filters` JSON, label filters applied as the Engine applies them) and `GET
/containers/{id}/json`, optionally under a `/v1.NN` prefix, with bodies shaped like the
Engine's (ContainerSummary and ContainerInspectResponse of API 1.43)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

SECRET_ENV = "DATABASE_PASSWORD=compose-db-secret-5d1f"


@dataclass
class FakeContainer:
    """One container as a Compose project creates it."""

    project: str
    service: str
    number: int = 1
    state: str = "running"
    exit_code: int = 0
    health: str | None = None  # None: the image has no health check
    oneoff: bool = False
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.project}/{self.service}/{self.number}/{self.oneoff}"
                              .encode()).hexdigest()

    @property
    def name(self) -> str:
        return f"{self.project}-{self.service}-{self.number}"

    def labels(self) -> dict[str, str]:
        return {"com.docker.compose.project": self.project,
                "com.docker.compose.service": self.service,
                "com.docker.compose.container-number": str(self.number),
                "com.docker.compose.oneoff": "True" if self.oneoff else "False",
                "com.docker.compose.config-hash": "9c1a" * 16,
                "com.docker.compose.version": "2.29.7",
                **self.extra_labels}

    def status_text(self) -> str:
        if self.state == "exited":
            return f"Exited ({self.exit_code}) 3 minutes ago"
        if self.state == "restarting":
            return f"Restarting ({self.exit_code}) 5 seconds ago"
        suffix = {"healthy": " (healthy)", "unhealthy": " (unhealthy)",
                  "starting": " (health: starting)"}.get(self.health or "", "")
        return f"Up 2 hours{suffix}"

    def summary(self) -> dict[str, Any]:
        return {
            "Id": self.id, "Names": [f"/{self.name}"], "Image": f"qbitel/{self.service}:2.1.0",
            "ImageID": "sha256:" + "ab" * 32, "Command": "/entrypoint.sh serve",
            "Created": 1764480000, "Ports": [], "Labels": self.labels(), "State": self.state,
            "Status": self.status_text(), "HostConfig": {"NetworkMode": f"{self.project}_default"},
            "NetworkSettings": {"Networks": {f"{self.project}_default": {
                "NetworkID": "cd" * 32, "IPAddress": "172.18.0.3"}}},
            "Mounts": [],
        }

    def inspect(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Status": self.state, "Running": self.state == "running",
            "Paused": self.state == "paused", "Restarting": self.state == "restarting",
            "OOMKilled": False, "Dead": self.state == "dead",
            "Pid": 4242 if self.state == "running" else 0, "ExitCode": self.exit_code,
            "Error": "", "StartedAt": "2026-11-30T04:00:00.123456789Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        }
        if self.health is not None:
            state["Health"] = {"Status": self.health, "FailingStreak": 0 if self.health ==
                               "healthy" else 3, "Log": [{
                                   "Start": "2026-11-30T05:59:00Z", "End": "2026-11-30T05:59:01Z",
                                   "ExitCode": 0 if self.health == "healthy" else 1,
                                   "Output": "curl -f http://localhost:8000/health"}]}
        return {
            "Id": self.id, "Created": "2026-11-30T03:59:59.5Z", "Path": "/entrypoint.sh",
            "Args": ["serve"], "State": state, "Image": "sha256:" + "ab" * 32,
            "Name": f"/{self.name}", "RestartCount": 0, "Driver": "overlay2",
            "Config": {"Hostname": self.id[:12], "Env": [SECRET_ENV, "LOG_LEVEL=info"],
                       "Image": f"qbitel/{self.service}:2.1.0", "Labels": self.labels()},
        }


def _label_filter_matches(wanted: list[str], labels: dict[str, str]) -> bool:
    for item in wanted:
        key, has_value, value = item.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    return True


def engine_app(containers: list[FakeContainer], requests: list[str]) -> web.Application:
    """The Engine API paths the probe uses."""

    async def listing(request: web.Request) -> web.Response:
        requests.append(request.path_qs)
        filters = json.loads(request.query.get("filters", "{}"))
        show_all = request.query.get("all") in ("1", "true", "True")
        chosen = [c for c in containers
                  if (show_all or c.state == "running")
                  and _label_filter_matches(filters.get("label", []), c.labels())]
        return web.json_response([c.summary() for c in chosen])

    async def inspect(request: web.Request) -> web.Response:
        requests.append(request.path_qs)
        for container in containers:
            if container.id == request.match_info["id"]:
                return web.json_response(container.inspect())
        return web.json_response({"message": f"No such container: {request.match_info['id']}"},
                                 status=404)

    app = web.Application()
    for prefix in ("", "/{version:v1\\.[0-9]+}"):
        app.router.add_get(prefix + "/containers/json", listing)
        app.router.add_get(prefix + "/containers/{id}/json", inspect)
    return app


@asynccontextmanager
async def docker_engine(socket: Path, containers: list[FakeContainer]
                        ) -> AsyncIterator[list[str]]:
    """Serve the Engine paths on `socket`; yields the request paths seen."""
    requests: list[str] = []
    runner = web.AppRunner(engine_app(containers, requests))
    await runner.setup()
    await web.UnixSite(runner, str(socket)).start()
    try:
        yield requests
    finally:
        await runner.cleanup()
