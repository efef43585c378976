"""The readiness board: summary and causes, filtered check list, a page per check,
and the evidence report of the current state."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web
from markupsafe import Markup, escape
from multidict import MultiMapping

from exporter import __version__, registry
from exporter.checklist import in_section, section_key, section_title
from exporter.history import History
from exporter.model import Severity
from exporter.report.document import public_options
from exporter.results import record
from exporter.store import CheckState
from exporter.web.causes import group_causes
from exporter.web.docs import docs_url, runbook_url

if TYPE_CHECKING:
    from exporter.daemon import Runtime

BOARD_RUNTIME: web.AppKey[Runtime] = web.AppKey("board_runtime")
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STATIC_FILES = {"board.css": "text/css"}
STATUSES = ("fail", "error", "pending", "skipped", "pass", "disabled")
STATUS_ORDER = {s: i for i, s in enumerate(STATUSES)}
REFRESH_SECONDS = 30
PLACEHOLDER = re.compile(r"&lt;(url|path|host|connection|var|n|value|option)&gt;")


def template_environment() -> jinja2.Environment:
    """Jinja2 over exporter/web/templates, autoescaping HTML."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("exporter.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["placeholders"] = placeholders
    return env


def placeholders(template: str) -> Markup:
    """A cause template as HTML: the text escaped, `<path>` marked up as `<var>path</var>`."""
    marked = PLACEHOLDER.sub(r"<var>\1</var>", str(escape(template)))
    return Markup(marked)  # noqa: S704 - built from escaped text and fixed tags


def age(seconds: float | None) -> str:
    """`5m ago`, `3h ago`, or `never`."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def span(seconds: float) -> str:
    """`90` -> `1m30s`, `21600` -> `6h`, `0.5` -> `0.5s`."""
    if seconds < 60:
        return f"{seconds:g}s"
    parts = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def utc(epoch: float | None) -> str:
    """`2026-11-30 07:00:00 UTC`, or an empty string."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class Filters:
    """What the board shows, from the query string (`?status=fail&severity=critical`)."""

    status: frozenset[str] = frozenset()
    severity: frozenset[str] = frozenset()
    section: str = ""
    text: str = ""

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> Filters:
        """Unknown values are ignored, so a bad link shows everything rather than nothing."""
        status = {v for v in query.getall("status", []) if v in STATUSES or v == "problem"}
        if "problem" in status:
            status = (status - {"problem"}) | {"fail", "error"}
        severity = {v for v in query.getall("severity", []) if v in set(Severity)}
        section = query.get("section", "").strip()
        if section and not all(p.isdigit() or p == "x" for p in section.split(".")):
            section = ""
        return cls(frozenset(status), frozenset(severity), section,
                   query.get("q", "").strip()[:200])

    @property
    def status_value(self) -> str:
        """The status select's value: `problem`, one status, or empty."""
        if self.status == {"fail", "error"}:
            return "problem"
        return next(iter(self.status)) if len(self.status) == 1 else ""

    @property
    def active(self) -> bool:
        return bool(self.status or self.severity or self.section or self.text)

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """True when the row passes every filter."""
        if self.status and row["status"] not in self.status:
            return False
        if self.severity and row["severity"] not in self.severity:
            return False
        if self.section and not in_section(row["section"], self.section):
            return False
        if self.text:
            haystack = " ".join(str(row[k]) for k in ("id", "title", "message", "kind"))
            if self.text.casefold() not in haystack.casefold():
                return False
        return True


# --------------------------------------------------------------------------- view models


def _row(state: CheckState, now: float, stale_after: float,
         history: History | None) -> dict[str, Any]:
    rec = record(state, now, stale_after)
    since = state.status_since
    if history is not None:
        since = history.status_since(state.spec.id) or since
    rec.update(age=age(now - state.last_run if state.last_run else None),
               since=age(now - since if since else None), since_utc=utc(since),
               href=f"check/{state.spec.id}")
    return rec


def board_view(runtime: Runtime, filters: Filters, now: float) -> dict[str, Any]:
    """Everything board.html renders."""
    store = runtime.store
    history: History | None = getattr(runtime, "history", None)
    states = list(store.states.values())
    rows = [_row(s, now, store.stale_after_intervals, history) for s in states]
    counts = Counter(r["status"] for r in rows)
    blockers = [s.spec.id for s in store.blockers(now)]
    causes = group_causes(states, now, store.stale_after_intervals)
    shown = [r for r in rows if filters.keeps(r)]
    sections: dict[str, dict[str, Any]] = {}
    for row in shown:
        group = sections.setdefault(row["section"], {
            "section": row["section"], "title": section_title(row["section"]),
            "rows": [], "problems": 0})
        group["rows"].append(row)
        group["problems"] += row["status"] in ("fail", "error", "pending") or row["stale"]
    for group in sections.values():
        group["rows"].sort(key=lambda r: (STATUS_ORDER[r["status"]], r["id"]))
        group["passed"] = sum(1 for r in group["rows"] if r["status"] == "pass")
        group["enabled"] = sum(1 for r in group["rows"] if r["enabled"])
        group["open"] = bool(group["problems"]) or filters.active
    ordered = sorted(sections.values(),
                     key=lambda g: (g["problems"] == 0, section_key(g["section"])))
    problems = [r for r in rows if r["status"] in ("fail", "error")]
    return {
        "go_live": not blockers, "blockers": blockers,
        "counts": [(s, counts[s]) for s in STATUSES if counts[s]],
        "problem_severity": sorted(Counter(r["severity"] for r in problems).items()),
        "total": len(rows), "shown": len(shown), "causes": causes,
        "problem_rows": len(problems), "groups": ordered, "filters": filters,
        "statuses": STATUSES, "severities": [s.value for s in Severity],
        "section_choices": sorted({r["section"].split(".")[0] for r in rows} |
                                  {r["section"] for r in rows}, key=section_key),
        "section_title": section_title,
        "version": __version__, "source": runtime.config.source,
        "refresh": REFRESH_SECONDS, "rendered": utc(now),
    }


def check_view(runtime: Runtime, state: CheckState, now: float) -> dict[str, Any]:
    """Everything check.html renders."""
    store = runtime.store
    history: History | None = getattr(runtime, "history", None)
    spec = state.spec
    row = _row(state, now, store.stale_after_intervals, history)
    try:
        summary = registry.probe_kind(spec.kind).summary
    except (KeyError, ImportError):
        summary = ""
    options = public_options(spec)
    entries = list(reversed(history.entries(spec.id))) if history is not None else []
    measurements = state.outcome.measurements if state.outcome is not None else ()
    return {
        "row": row, "spec": spec, "summary": summary,
        "options": json.dumps(options, indent=2, sort_keys=True) if options else "",
        "history": [{"when": utc(e.finished), "status": e.status, "reason": e.reason,
                     "message": e.message,
                     "duration": f"{e.duration:.3f} s" if e.duration is not None else ""}
                    for e in entries],
        "history_length": history.length if history is not None else 0,
        "measurements": [{"family": m.family, "value": m.value,
                          "labels": ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items()))}
                         for m in measurements],
        "docs_url": docs_url(spec.kind),
        "runbook_url": runbook_url(state.status.value if state.status else None,
                                   spec.severity.value),
        "section_title": section_title(spec.section),
        "last_run_utc": utc(state.last_run),
        "interval": span(spec.interval), "timeout": span(spec.timeout),
        "duration": f"{state.duration:.3f} s" if state.duration is not None else "",
        "version": __version__, "refresh": REFRESH_SECONDS, "rendered": utc(now),
    }


# --------------------------------------------------------------------------- handlers


async def board(request: web.Request) -> web.Response:
    """The readiness board: verdict, causes, filtered checks."""
    runtime = request.app[BOARD_RUNTIME]
    view = board_view(runtime, Filters.from_query(request.query), time.time())
    html = request.app[TEMPLATES].get_template("board.html").render(**view, prefix="")
    return web.Response(text=html, content_type="text/html")


async def check_page(request: web.Request) -> web.Response:
    """One check: what it observes, its recent outcomes, its measurements, links."""
    runtime = request.app[BOARD_RUNTIME]
    state = runtime.store.states.get(request.match_info["id"])
    if state is None:
        raise web.HTTPNotFound(text="no such check\n")
    view = check_view(runtime, state, time.time())
    html = request.app[TEMPLATES].get_template("check.html").render(**view, prefix="../")
    return web.Response(text=html, content_type="text/html")


async def report_download(request: web.Request) -> web.Response:
    """The evidence report of the current state as JSON or HTML."""
    from exporter.report.live import KEY_VARIABLE, current_report
    from exporter.report.render import render_html
    from exporter.report.signing import SigningError

    runtime = request.app[BOARD_RUNTIME]
    try:
        document = await asyncio.to_thread(current_report, runtime)
    except SigningError as exc:
        raise web.HTTPInternalServerError(
            text=f"report signing key ({KEY_VARIABLE}) unusable: {exc}\n") from None
    if request.match_info["ext"] == "html":
        return web.Response(text=render_html(document), content_type="text/html")
    return web.Response(text=json.dumps(document, indent=2, sort_keys=True) + "\n",
                        content_type="application/json")


async def static(request: web.Request) -> web.Response:
    """The board's stylesheet."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    text = (resources.files("exporter.web") / "static" / name).read_text(encoding="utf-8")
    return web.Response(text=text, content_type=STATIC_FILES[name],
                        headers={"Cache-Control": "max-age=300"})


def setup(app: web.Application, runtime: Runtime) -> None:
    """Register the board's routes on `app`."""
    app[BOARD_RUNTIME] = runtime
    app[TEMPLATES] = template_environment()
    app.router.add_get("/", board)
    app.router.add_get("/check/{id}", check_page)
    app.router.add_get(r"/report.{ext:json|html}", report_download)
    app.router.add_get("/static/{name}", static)
    app.on_cleanup.append(_save_history)


async def _save_history(app: web.Application) -> None:
    """At shutdown: write the history a last time (it is otherwise saved every 10 s)."""
    history: History | None = getattr(app[BOARD_RUNTIME], "history", None)
    if history is not None:
        await asyncio.to_thread(history.save)
