"""`qradar_events` against a local HTTPS server (aiohttp, trustme certificate) that
implements the Ariel search endpoints as the QRadar REST API documents them: a search
is created by POST with `query_expression` (201), runs through WAIT/EXECUTE/SORTING to
COMPLETED over several polls, its results are `{"events": [{...}]}`, a wrong SEC token
is 401 and an AQL error 422 with a message. No real QRadar runs here.

The old preset check (GET /api/system/about answers) passed against a QRadar holding no
event of the application; the Ariel count fails it."""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import Reason, Status
from exporter.probes import qradar
from exporter.probes.http.probe import run as http_run
from exporter.probes.http.spec import HttpCheck
from tests.support.servers import free_port

TOKEN = "qradar-sec-token-never-shown-51d2"
AQL_RE = re.compile(r"^SELECT COUNT\(\*\) AS event_count FROM events WHERE (.+) "
                    r"LAST (\d+) MINUTES$")


@dataclass
class Ariel:
    """The state of the fake console: events per log source and the searches made."""

    events: dict[str, int] = field(default_factory=dict)
    polls_before_done: int = 2
    searches: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    end_status: str = "COMPLETED"

    def count(self, condition: str) -> int | None:
        found = re.fullmatch(r"LOGSOURCENAME\(logsourceid\) ILIKE '%(\w+)%'", condition)
        if found is None:
            return None
        return sum(n for name, n in self.events.items() if found.group(1) in name)


def build_app(ariel: Ariel) -> web.Application:
    def authorize(request: web.Request) -> None:
        ariel.seen_headers.append(dict(request.headers))
        if request.headers.get("SEC") != TOKEN:
            raise web.HTTPUnauthorized(
                text='{"http_response": {"code": 401, "message": "You are unauthorized to '
                     'access the requested resource."}, "code": 10, "message": "No SEC header '
                     'present in request."}', content_type="application/json")

    async def create(request: web.Request) -> web.Response:
        authorize(request)
        query = request.query.get("query_expression", "")
        match = AQL_RE.match(query)
        count = ariel.count(match.group(1)) if match else None
        if match is None or count is None:
            return web.json_response({"http_response": {"code": 422, "message": "The request "
                                      "was well-formed but was unable to be followed due to "
                                      "semantic errors"}, "code": 1005,
                                      "message": "Ariel query parse error"}, status=422)
        search_id = f"s-{len(ariel.searches) + 1}-5e0c"
        ariel.searches[search_id] = {"count": count, "polls": 0, "minutes": int(match.group(2))}
        return web.json_response({"search_id": search_id, "status": "WAIT", "progress": 0,
                                  "record_count": 0}, status=201)

    async def status(request: web.Request) -> web.Response:
        authorize(request)
        search = ariel.searches.get(request.match_info["search_id"])
        if search is None:
            return web.json_response({"message": "search not found"}, status=404)
        search["polls"] += 1
        steps = ["EXECUTE", "SORTING"]
        state = (steps[min(search["polls"] - 1, 1)] if search["polls"] <= ariel.polls_before_done
                 else ariel.end_status)
        return web.json_response({"search_id": request.match_info["search_id"],
                                  "status": state, "progress": 100 if state == "COMPLETED"
                                  else 50})

    async def results(request: web.Request) -> web.Response:
        authorize(request)
        search = ariel.searches.get(request.match_info["search_id"])
        if search is None or search["polls"] <= ariel.polls_before_done:
            return web.json_response({"message": "search not completed"}, status=404)
        return web.json_response({"events": [{"event_count": float(search["count"])}]})

    async def delete(request: web.Request) -> web.Response:
        authorize(request)
        ariel.deleted.append(request.match_info["search_id"])
        return web.json_response({"status": "CANCELED"}, status=202)

    async def about(request: web.Request) -> web.Response:
        authorize(request)
        return web.json_response({"external_version": "7.5.0"})

    app = web.Application()
    app.router.add_post("/api/ariel/searches", create)
    app.router.add_get("/api/ariel/searches/{search_id}", status)
    app.router.add_get("/api/ariel/searches/{search_id}/results", results)
    app.router.add_delete("/api/ariel/searches/{search_id}", delete)
    app.router.add_get("/api/system/about", about)
    return app


@dataclass
class Console:
    url: str
    ca_file: Path
    ariel: Ariel


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    ca = trustme.CA()
    leaf = ca.issue_cert("qradar.test", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ariel = Ariel()
    runner = web.AppRunner(build_app(ariel))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    yield Console(f"https://127.0.0.1:{port}", ca_file, ariel)
    await runner.cleanup()


@pytest.fixture
async def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RuntimeContext]:
    monkeypatch.setenv("QRADAR_TOKEN", TOKEN)
    context = RuntimeContext({}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def check(console: Console, **fields: Any) -> qradar.QradarEventsCheck:
    return qradar.QradarEventsCheck.model_validate({
        "id": "2.4.2-qradar", "item": "2.4.2", "section": "2.4", "title": "siem",
        "kind": "qradar_events", "url": console.url, "sec_token": "${QRADAR_TOKEN}",
        "where": "LOGSOURCENAME(logsourceid) ILIKE '%qbitel%'", "poll_interval": "0.05s",
        "tls": {"ca_file": str(console.ca_file)}, **fields})


def counted(outcome: Any) -> list[float]:
    return [m.value for m in outcome.measurements if m.family == "readiness_qradar_recent_events"]


async def test_recent_application_events_pass(console: Console, ctx: RuntimeContext,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    console.ariel.events = {"qbitel-api": 40, "qbitel-worker": 2, "other-app": 1000}
    outcome = await qradar.run(check(console), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == ("42 event(s) matching the AQL condition in the last 60 min "
                               "(Ariel search s-1-5e0c)")
    assert counted(outcome) == [42.0]
    search = console.ariel.searches["s-1-5e0c"]
    assert search["polls"] == 3 and search["minutes"] == 60  # EXECUTE, SORTING, COMPLETED
    assert console.ariel.deleted == ["s-1-5e0c"]
    assert all(h.get("Version") == "20.0" for h in console.ariel.seen_headers)
    assert TOKEN not in outcome.message and TOKEN not in caplog.text


async def test_api_answers_but_no_application_event_fails(console: Console,
                                                          ctx: RuntimeContext) -> None:
    """The old check only asked /api/system/about: it passed with no event at all."""
    console.ariel.events = {"other-app": 1000}
    old = HttpCheck.model_validate({
        "id": "2.4.2-qradar", "section": "2.4", "title": "siem", "kind": "http",
        "url": f"{console.url}/api/system/about", "headers": {"Version": "20.0"},
        "secret_headers": {"SEC": "${QRADAR_TOKEN}"},
        "json_assertions": [{"path": "external_version", "op": "exists"}],
        "tls": {"ca_file": str(console.ca_file)}})
    assert (await http_run(old, ctx)).status is Status.PASS
    outcome = await qradar.run(check(console), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert outcome.message.startswith("0 event(s) matching the AQL condition in the last 60 min")
    assert outcome.message.endswith("; need at least 1")
    assert counted(outcome) == [0.0]
    fewer = await qradar.run(check(console, window="2h", min_events=5), ctx)
    assert "in the last 120 min" in fewer.message


async def test_wrong_token_is_auth_error_without_the_token(
        console: Console, ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRADAR_TOKEN", "not-the-token")
    outcome = await qradar.run(check(console), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome.message
    assert "not-the-token" not in outcome.message and TOKEN not in outcome.message


async def test_rejected_aql_is_a_config_error(console: Console, ctx: RuntimeContext) -> None:
    outcome = await qradar.run(check(console, where="qbitel"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert outcome.message == ("starting the Ariel search: QRadar rejected the query: Ariel "
                               "query parse error")


async def test_search_that_ends_in_error_or_never_completes(console: Console,
                                                            ctx: RuntimeContext) -> None:
    console.ariel.events = {"qbitel-api": 3}
    console.ariel.end_status = "ERROR"
    failed = await qradar.run(check(console), ctx)
    assert (failed.status, failed.reason) == (Status.ERROR, Reason.PROTOCOL)
    assert failed.message == "Ariel search s-1-5e0c ended ERROR"
    console.ariel.polls_before_done = 10_000
    slow = await qradar.run(check(console, timeout="1s", poll_interval="0.2s"), ctx)
    assert (slow.status, slow.reason) == (Status.ERROR, Reason.TIMEOUT), slow.message


def test_token_only_by_reference_in_the_preset() -> None:
    text = (Path(__file__).parents[2] / "exporter/presets/qbitel-production/"
            "70-observability.yaml").read_text(encoding="utf-8")
    block = text[text.index('- id: "2.4.2-qradar"'):]
    block = block[:block.index("\n\n")]
    assert "kind: qradar_events" in block
    assert "sec_token: ${QRADAR_TOKEN}" in block


async def test_preset_entry_against_the_console(console: Console, ctx: RuntimeContext) -> None:
    """The preset's 2.4.2-qradar (url from inputs.siem_url) with only the deployment's
    own settings added: it searches the application's events and passes."""
    console.ariel.events = {"qbitel-api": 7}
    text = (Path(__file__).parents[2] / "exporter/presets/qbitel-production/"
            "70-observability.yaml").read_text(encoding="utf-8")
    fragment = config._parse_yaml(text, "70-observability.yaml")
    merged = config._merge(fragment, {
        "inputs": {"siem_url": console.url},
        "checks": [{"id": "2.4.2-qradar", "enabled": True,
                    "tls": {"ca_file": str(console.ca_file)}, "poll_interval": "0.05s"}]})
    spec = config.build(merged, "test", {"QRADAR_TOKEN": TOKEN}).check("2.4.2-qradar")
    assert isinstance(spec, qradar.QradarEventsCheck)
    outcome = await qradar.run(spec, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert counted(outcome) == [7.0]
