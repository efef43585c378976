"""Pieces of the end-to-end alerting test that tests/probes/promstack.py does not have.

- `LoopThread`: an asyncio loop in a daemon thread, for aiohttp servers a synchronous
  test talks to (the PagerDuty capture server, the fake Kubernetes API server).
- `PagerDutyCapture`: a small aiohttp server on loopback answering the PagerDuty Events
  API v2 (`POST /v2/enqueue`) and keeping every event it receives.
- `HttpsServer`: an aiohttp HTTPS server (certificate from trustme) that sends HSTS,
  the target of the `tls_endpoint` and `http` checks.
- `Exporter`: a real `readiness-exporter serve` subprocess (the console script next to
  the running interpreter) on a free loopback port.
- `short_for_rules`: a copy of a rule file with every alert's `for:` shortened.
- `alertmanager_config`: the routing documented in docs/alerting.md, pointed at the
  capture server, with the waits shortened.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from tests.support.servers import free_port, terminate

T = TypeVar("T")
EXPORTER_BIN = Path(sys.executable).parent / "readiness-exporter"


class LoopThread:
    """An event loop running in a daemon thread; `run` a coroutine on it and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="e2e-loop")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@dataclass
class PagerDutyCapture:
    """Records the Events API v2 bodies Alertmanager posts to `/v2/enqueue`."""

    events: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The Events API URL to put in `pagerduty_configs[].url`."""
        return f"http://127.0.0.1:{self.port}/v2/enqueue"

    async def _enqueue(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.events.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed",
             "dedup_key": body.get("dedup_key", "")}, status=202)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Close the server."""
        if self._runner is not None:
            await self._runner.cleanup()

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of the events received so far."""
        with self._lock:
            return list(self.events)


@dataclass
class HttpsServer:
    """HTTPS on loopback with a trustme certificate; answers `/` with HSTS."""

    context: ssl.SSLContext
    max_age: int = 63_072_000
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={
            "Strict-Transport-Security": f"max-age={self.max_age}; includeSubDomains"})

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_get("/", self._index)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port,
                          ssl_context=self.context).start()

    async def stop(self) -> None:
        """Close the server."""
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Exporter:
    """A running `readiness-exporter serve`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        """`host:port` for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        """The `/metrics` text."""
        with urllib.request.urlopen(f"http://{self.target}/metrics", timeout=5) as response:
            text: str = response.read().decode()
        return text

    def log_tail(self, lines: int = 30) -> str:
        """The end of the exporter's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s)."""
        terminate(self.process)


def start_exporter(config: Mapping[str, Any], directory: Path,
                   env: Mapping[str, str] | None = None, timeout: float = 30.0) -> Exporter:
    """Write `config` to `directory` and start the exporter on a free port."""
    config_path = directory / "exporter.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    port = free_port()
    log_path = directory / "exporter.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(EXPORTER_BIN), "serve", "--config.file", str(config_path),
             "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "info"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=directory,
        )
    exporter = Exporter(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exporter exited with {process.returncode}:\n"
                               f"{exporter.log_tail()}")
        try:
            exporter.metrics()
            return exporter
        except OSError:
            time.sleep(0.1)
    exporter.stop()
    raise RuntimeError(f"exporter did not serve /metrics in {timeout}s:\n{exporter.log_tail()}")


def short_for_rules(text: str, duration: str,
                    overrides: Mapping[str, str] | None = None) -> str:
    """The rule file `text` with every alert's `for:` set to `duration`, or to its entry
    in `overrides` (a test copy).

    Only `for:` changes: expressions, labels and annotations stay those of the shipped
    file, whose `for:` boundaries the promtool unit tests in alerts/tests/ cover.
    """
    data = yaml.safe_load(text)
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = (overrides or {}).get(rule["alert"], duration)
    return json.dumps(data, indent=2)


ALERTING_DOC = Path(__file__).resolve().parents[2] / "docs" / "alerting.md"


def documented_routing() -> dict[str, Any]:
    """The Alertmanager configuration block of docs/alerting.md ("Alertmanager routing")."""
    text = ALERTING_DOC.read_text(encoding="utf-8").split("## Alertmanager routing", 1)[1]
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config: dict[str, Any] = yaml.safe_load(block)
    return config


def alertmanager_config(capture_url: str, routing_key: str) -> str:
    """The documented routing with the PagerDuty receiver posting to `capture_url`.

    Test-only changes: the routing key inline instead of a file, the Events API URL, the
    job label in the event details, and waits of 1 s instead of minutes.
    """
    config = documented_routing()
    for route in (config["route"], *config["route"].get("routes", [])):
        route["group_wait"] = "1s"
        route["group_interval"] = "1s"
    for receiver in config["receivers"]:
        for pagerduty in receiver.get("pagerduty_configs", []):
            del pagerduty["routing_key_file"]
            pagerduty["routing_key"] = routing_key
            pagerduty["url"] = capture_url
            pagerduty["details"]["job"] = "{{ .CommonLabels.job }}"
    return json.dumps(config, indent=2)
