"""`qradar_events`: QRadar holds recent events of the application (2.4.2, SIEM_TYPE=qradar).

Runs an asynchronous Ariel search through the QRadar REST API, as QRadar documents it:
`POST /api/ariel/searches?query_expression=<AQL>` starts a search counting the events
that match `where` in the last `window`; `GET /api/ariel/searches/{search_id}` is polled
until its `status` is `COMPLETED`; `GET /api/ariel/searches/{search_id}/results` gives
the count; `DELETE /api/ariel/searches/{search_id}` frees it (best effort). The API
token goes in the `SEC` header, resolved from its reference when the check runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretReference,
)
from exporter.transport.base import Deadline, request_budget
from exporter.transport.http import HTTP, HttpClient, HttpOptions, reject_credentials, target_of
from exporter.transport.http_auth import HttpUrl, credential_headers
from exporter.transport.tls import TlsClientOptions

RUNNING = frozenset({"WAIT", "EXECUTE", "SORTING"})
_MAX_BODY = 1024 * 1024


class QradarEventsCheck(CheckSpec):
    """`kind: qradar_events` options."""

    kind: Literal["qradar_events"]
    url: HttpUrl = Field(description="QRadar console base URL, e.g. https://qradar.example")
    sec_token: SecretReference = Field(description="authorized service token, sent as the "
                                       "SEC header (by reference: ${QRADAR_TOKEN})")
    api_version: str = Field(default="20.0", pattern=r"^[0-9]+(\.[0-9]+)?$",
                             description="sent as the Version header")
    where: str = Field(min_length=1, description="AQL condition selecting the application's "
                       "events, e.g. LOGSOURCENAME(logsourceid) ILIKE '%qbitel%'")
    window: Duration = Field(default=3600.0, ge=60,
                             description="look back this far (whole minutes: LAST n MINUTES)")
    min_events: int = Field(default=1, ge=1, description="pass when at least this many")
    poll_interval: Duration = Field(default=1.0, gt=0, le=60,
                                    description="pause between two status polls")
    tls: TlsClientOptions = Field(default_factory=TlsClientOptions)

    def aql(self) -> str:
        """The Ariel query: a count of the matching events in the window."""
        minutes = math.ceil(self.window / 60)
        return (f"SELECT COUNT(*) AS event_count FROM events WHERE {self.where} "
                f"LAST {minutes} MINUTES")


EVENTS = MetricFamily(
    "readiness_qradar_recent_events",
    "Events matching the check's AQL condition in its window, counted by an Ariel search.")
WINDOW = MetricFamily(
    "readiness_qradar_window_seconds",
    "How far back the Ariel search counts events (from the configuration).")


class _Api:
    """The three Ariel endpoints over the shared HTTP client, within one deadline."""

    def __init__(self, spec: QradarEventsCheck, client: HttpClient, deadline: Deadline):
        self.spec = spec
        self.client = client
        self.deadline = deadline
        self.base = spec.url.rstrip("/") + "/api/ariel/searches"
        self.headers = {"Accept": "application/json", "Version": spec.api_version,
                        **credential_headers(secret_headers={"SEC": spec.sec_token})}

    async def call(self, method: str, path: str = "", *, what: str,
                   params: dict[str, str] | None = None) -> Any:
        response = await self.client.request(
            method, self.base + path, budget=self.deadline.remaining(), headers=self.headers,
            params=params, max_body_bytes=_MAX_BODY)
        if response.status in (401, 403):
            raise reject_credentials(self.spec.url, response.status)
        document = _json(response.body)
        if response.status == 404 and method == "POST":
            raise ProbeError(Reason.CONFIG, f"{what}: HTTP 404 at {target_of(self.base)} "
                             "(is url the QRadar console?)")
        if response.status == 422:  # AQL rejected: QRadar says why
            raise ProbeError(Reason.CONFIG, f"{what}: QRadar rejected the query: "
                             f"{_message(document)}")
        if not 200 <= response.status < 300:
            raise ProbeError(Reason.PROTOCOL, f"{what}: HTTP {response.status} "
                             f"{_message(document)}".rstrip())
        if not isinstance(document, dict):
            raise ProbeError(Reason.PROTOCOL, f"{what}: answer is not a JSON object")
        return document


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _message(document: Any) -> str:
    message = document.get("message") if isinstance(document, dict) else None
    return message[:200] if isinstance(message, str) else ""


def _count(results: dict[str, Any]) -> int:
    rows = results.get("events")
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        raise ProbeError(Reason.PROTOCOL, "Ariel results: no events row")
    value = rows[0].get("event_count")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProbeError(Reason.PROTOCOL, "Ariel results: event_count is not a number")
    return int(value)


async def _search(api: _Api, spec: QradarEventsCheck) -> tuple[str, int]:
    """Start the search, wait for it, read the count; (search id, count)."""
    started = await api.call("POST", what="starting the Ariel search",
                             params={"query_expression": spec.aql()})
    search_id = started.get("search_id")
    if not isinstance(search_id, str) or not search_id:
        raise ProbeError(Reason.PROTOCOL, "starting the Ariel search: no search_id")
    path = "/" + quote(search_id, safe="")
    status = started.get("status")
    while status != "COMPLETED":
        if status not in RUNNING:
            raise ProbeError(Reason.PROTOCOL, f"Ariel search {search_id} ended {status}")
        await asyncio.sleep(min(spec.poll_interval, api.deadline.remaining()))
        polled = await api.call("GET", path, what=f"polling Ariel search {search_id}")
        status = polled.get("status")
    results = await api.call("GET", path + "/results", what=f"Ariel search {search_id} results")
    return search_id, _count(results)


async def run(spec: QradarEventsCheck, ctx: ProbeContext) -> Outcome:
    """Count the application's recent events with an Ariel search."""
    measurements = [Measurement(WINDOW.name, spec.window)]
    client = await ctx.client(HTTP, HttpOptions(tls=spec.tls))
    minutes = math.ceil(spec.window / 60)
    try:
        api = _Api(spec, client, Deadline(request_budget(spec.timeout)))
        search_id, count = await _search(api, spec)
    except ProbeError as exc:
        return Outcome.errored(exc.reason, exc.message, tuple(measurements))
    with contextlib.suppress(ProbeError):  # results read: free the search (best effort)
        await api.call("DELETE", "/" + quote(search_id, safe=""), what="deleting the search")
    measurements.append(Measurement(EVENTS.name, count))
    found = (f"{count} event(s) matching the AQL condition in the last {minutes} min "
             f"(Ariel search {search_id})")
    if count < spec.min_events:
        return Outcome.failed(f"{found}; need at least {spec.min_events}", tuple(measurements))
    return Outcome.passed(found, tuple(measurements))


KIND: ProbeKind[Any] = ProbeKind(
    name="qradar_events",
    spec=QradarEventsCheck,
    run=run,
    summary="QRadar holds recent events of the application (asynchronous Ariel search).",
    metrics=(EVENTS, WINDOW),
)
