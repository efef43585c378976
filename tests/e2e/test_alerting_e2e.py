"""End to end: who gets paged. Exporters -> Prometheus -> Alertmanager -> PagerDuty.

A real Prometheus scrapes two real `readiness-exporter serve` processes every second and
loads the rules `readiness-exporter mixin` renders (with a board URL; `for:` shortened
to 1 s in this test copy, the `for:` boundaries are the promtool unit tests' job). A
real Alertmanager routes exactly as docs/alerting.md says, PagerDuty being a capture
server for the Events API v2.

- job `preset`: the bundled preset with nothing configured, phase `preparing`: dozens
  of critical checks fail or error; tickets, and no page.
- job `live`: phase `live`, critical TLS and HTTP checks against loopback servers and
  a disabled check. After every check has passed, the certificate the endpoint serves
  and the file holds is swapped for one expiring in 3 days: exactly one page (the
  certificate, seen by three checks), naming the check title, section and board row;
  restoring a good certificate resolves it. Then the health endpoint goes away: the
  critical check stuck in `error` pages once. The disabled check is never stale.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from exporter.mixin import MixinOptions, render_rules
from tests.e2e.stack import (
    Exporter,
    HttpsServer,
    LoopThread,
    PagerDutyCapture,
    alertmanager_config,
    short_for_rules,
    start_exporter,
)
from tests.probes.promstack import (
    AlertmanagerServer,
    PrometheusServer,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
    wait_until,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(180)

ROUTING_KEY = "e2e0routing0key0000000000000001b"  # 32 characters, like a real one
BOARD = "https://readiness.e2e.test"
RUNBOOKS = "https://docs.e2e.test/runbooks.md"
LIVE_CHECKS = ("1.2.4-endpoint", "1.2.4-files", "2.2.1", "6.2")


class HealthServer:
    """Plain HTTP `/health` on loopback that the test can stop (connection refused)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class Stack:
    """Everything the test talks to."""

    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    capture: PagerDutyCapture
    loop: LoopThread
    ca: trustme.CA
    context: ssl.SSLContext
    cert_file: Path
    health: HealthServer
    exporters: dict[str, Exporter]


def _install(ca: trustme.CA, context: ssl.SSLContext, cert_file: Path,
             not_after: datetime) -> None:
    """Serve and store a new localhost leaf (the file replaced atomically)."""
    leaf = ca.issue_cert("localhost", "127.0.0.1", not_after=not_after)
    leaf.configure_cert(context)
    partial = cert_file.with_suffix(".tmp")
    leaf.cert_chain_pems[0].write_to_path(str(partial))
    os.replace(partial, cert_file)


def _live_config(directory: Path, https_port: int, ca_file: Path, cert_file: Path,
                 health_port: int) -> dict[str, Any]:
    tls = {"host": "127.0.0.1", "port": https_port, "server_name": "localhost",
           "ca_file": str(ca_file), "versions": ["1.2", "1.3"], "interval": "1s",
           "timeout": "3s"}
    return {
        "settings": {"phase": "live", "first_round_spread": 0,
                     "state_dir": str(directory / "state-live")},
        "checks": [
            {"id": "1.2.4-endpoint", "section": "1.2", "title": "TLS certificate served",
             "severity": "critical", "kind": "tls_endpoint", "require_tls13": False,
             "refuse_legacy": False, **tls},
            {"id": "2.2.1", "section": "2.2", "title": "TLS 1.3 enabled",
             "severity": "critical", "kind": "tls_endpoint", "check_expiry": False,
             "refuse_legacy": False, **tls},
            {"id": "1.2.4-files", "section": "1.2", "title": "TLS certificate files",
             "severity": "critical", "kind": "tls_file", "paths": [str(cert_file)],
             "interval": "1s", "timeout": "3s"},
            {"id": "6.2", "section": "6.2", "title": "Health endpoints answer",
             "severity": "critical", "kind": "http",
             "url": f"http://127.0.0.1:{health_port}/health", "interval": "1s",
             "timeout": "2s"},
            {"id": "7.2", "section": "7.2", "title": "Docker deployment",
             "severity": "critical", "kind": "file", "path": str(directory / "absent"),
             "enabled": False, "disabled_reason": "Kubernetes is used",
             "interval": "1s", "timeout": "1s"},
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("paging")
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file = directory / "tls.crt"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _install(ca, context, cert_file, datetime.now(UTC) + timedelta(days=365))
    loop = LoopThread()
    capture = PagerDutyCapture()
    https = HttpsServer(context)
    health = HealthServer()
    servers: list[Any] = []
    try:
        loop.run(capture.start())
        loop.run(https.start())
        loop.run(health.start())
        for name in ("preset", "live"):
            (directory / name).mkdir()
        preset = {"include": "qbitel-production", "settings": {
            "phase": "preparing", "first_round_spread": 0,
            "state_dir": str(directory / "state-preset")}}
        exporters = {
            "preset": start_exporter(preset, directory / "preset"),
            "live": start_exporter(_live_config(directory, https.port, ca_file, cert_file,
                                                health.port), directory / "live"),
        }
        servers.extend(exporters.values())
        am = start_alertmanager(alertmanager_config(capture.url, ROUTING_KEY))
        servers.append(am)
        rendered = render_rules(MixinOptions(runbook_base_url=RUNBOOKS, board_url=BOARD))
        # The certificate page lists every check that sees the certificate; its `for:`
        # covers a few check runs (1 s) and scrapes, so all three have reported it when
        # it fires, as the shipped `for:` (minutes) does. One second raced them.
        rules = {name: short_for_rules(text, "1s",
                                       {"ReadinessCertificateExpiringCritical": "5s"})
                 for name, text in rendered.items()}
        prom = start_prometheus(
            prometheus_config({job: [e.target] for job, e in exporters.items()},
                              rule_files=sorted(rules), alertmanagers=[f"127.0.0.1:{am.port}"]),
            rules=rules)
        servers.append(prom)
        yield Stack(prom, am, capture, loop, ca, context, cert_file, health, exporters)
    finally:
        for server in reversed(servers):
            server.stop()
        loop.run(health.stop())
        loop.run(https.stop())
        loop.run(capture.stop())
        loop.stop()


def _events(stack: Stack, job: str, action: str | None = None) -> list[dict[str, Any]]:
    return [e for e in stack.capture.snapshot()
            if e["payload"]["custom_details"].get("job") == job
            and (action is None or e["event_action"] == action)]


def _keys(events: list[dict[str, Any]]) -> set[str]:
    return {e["dedup_key"] for e in events}


def test_preparing_pages_nobody_and_live_pages_once_per_cause(stack: Stack) -> None:
    prom, am = stack.prometheus, stack.alertmanager

    # --- phase preparing: the preset with nothing configured
    am.wait_until(lambda: len({a["labels"].get("check") for a in am.alerts(
        filter='job="preset"')}) >= 20, 60, "tickets of the unconfigured preset")
    tickets = am.alerts(filter='job="preset"')
    assert {a["labels"]["severity"] for a in tickets} == {"warning"}

    # --- phase live: every check passed once (the latch), nothing paged
    prom.wait_until(lambda: len(prom.query('readiness:check_passed:latch{job="live"}'))
                    == len(LIVE_CHECKS), 30, "every live check passing")
    assert stack.capture.snapshot() == []

    # 1. One certificate, seen by three checks, expires in 3 days: exactly one page.
    stack.loop.run(_swap(stack, days=3))
    wait_until(lambda: bool(_events(stack, "live", "trigger")), 30, "the certificate page")
    time.sleep(4)  # several evaluation and group intervals: any second page would come
    triggers = _events(stack, "live", "trigger")
    assert len(triggers) == 1, [e["payload"]["summary"] for e in triggers]
    (page,) = triggers
    payload = page["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("TLS certificate served (1.2 Configuration): "
                                         "certificate "), payload["summary"]
    assert "(serial:" in payload["summary"] and "expires in 2d 23h" in payload["summary"]
    details = payload["custom_details"]
    assert details["board_url"] == f"{BOARD}/check/1.2.4-endpoint"
    for seen_by in ("TLS certificate served (1.2 Configuration), board row "
                    f"{BOARD}/check/1.2.4-endpoint",
                    f"TLS certificate files (1.2 Configuration), board row {BOARD}/check/1.2.4-files",
                    f"TLS 1.3 enabled (2.2 Network Security), board row {BOARD}/check/2.2.1"):
        assert seen_by in details["description"], details["description"]
    assert details["runbook_url"] == f"{RUNBOOKS}#readinesscertificateexpiringcritical"
    assert {link["href"] for link in page["links"]} >= {f"{BOARD}/check/1.2.4-endpoint"}
    # the checks it made fail raise no page of their own, only the certificate does
    assert prom.query('readiness_check_status{job="live",check="1.2.4-endpoint",'
                      'status="fail"} == 1')
    assert not prom.query('ALERTS{job="live",alertname="ReadinessCriticalCheckRegressed"}')

    # 2. A renewed certificate resolves the page (same dedup key), no new page.
    stack.loop.run(_swap(stack, days=365))
    wait_until(lambda: bool(_events(stack, "live", "resolve")), 30, "the resolve event")
    assert _keys(_events(stack, "live", "resolve")) == {page["dedup_key"]}
    assert len(_events(stack, "live", "trigger")) == 1

    # 3. A critical check stuck in error pages once.
    stack.loop.run(stack.health.stop())
    wait_until(lambda: len(_events(stack, "live", "trigger")) == 2, 30, "the error page")
    time.sleep(4)
    triggers = _events(stack, "live", "trigger")
    assert len(triggers) == 2, [e["payload"]["summary"] for e in triggers]
    error_page = triggers[1]
    assert error_page["payload"]["summary"] == (
        "Regression: Health endpoints answer (check 6.2, section 6.2 Health Check Endpoints) "
        "is failing")
    assert error_page["payload"]["custom_details"]["board_url"] == f"{BOARD}/check/6.2"
    assert prom.query('readiness_check_status{job="live",check="6.2",status="error"} == 1')

    # 4. The disabled check is never stale, though it ran once at start long ago.
    assert prom.query('readiness_check_stale{job="live",check="7.2"} == 0')
    assert prom.query('readiness_check_status{job="live",check="7.2",status="disabled"} == 1')
    assert not prom.query('ALERTS{alertname="ReadinessCheckStale"}')

    # --- and still no page from the preparing job
    assert _events(stack, "preset") == []


async def _swap(stack: Stack, days: float) -> None:
    _install(stack.ca, stack.context, stack.cert_file,
             datetime.now(UTC) + timedelta(days=days))
