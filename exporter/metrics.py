"""Exposition of the stored outcomes.

Probes run on the exporter's own schedule and `/metrics` renders cached outcomes, so a
scrape costs the same whatever the probes cost.

Two renderers produce the same series:

- `ReadinessCollector`: a plain prometheus_client custom collector (the reference, and
  what the benchmark compares against);
- `Exposition`: the served path. It renders each check's sample lines once, when its
  outcome changes, and a scrape only concatenates the cached lines (plus a few global
  series computed at scrape time, and the `process_*`/`python_info` series of the
  served process). Gzip is incremental: the compressed check part is
  cached and each scrape only compresses the small global tail on a copy of the
  compressor.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _float_to_go

from exporter import build_info
from exporter.checklist import SECTION_TITLES
from exporter.model import CheckSpec, MetricFamily, Status
from exporter.process_series import ProcessSeries
from exporter.store import CheckState, Store

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_CACHED_HELP = " Results are cached: probes run on the exporter's own schedule, so a scrape " \
    "costs the same whatever the probes cost."

STATUS = MetricFamily(
    "readiness_check_status",
    "Status of the check's latest run: 1 for its current status, 0 for the others."
    + _CACHED_HELP,
    ("check", "section", "severity", "status"),
)
LAST_RUN = MetricFamily(
    "readiness_check_last_run_timestamp_seconds",
    "When the check last finished a run (seconds since the epoch).", ("check",),
)
DURATION = MetricFamily(
    "readiness_check_duration_seconds", "How long the check's last run took.", ("check",),
)
INTERVAL = MetricFamily(
    "readiness_check_interval_seconds",
    "The check's configured run interval (a result older than 3 intervals is stale).",
    ("check",),
)
RUNS = MetricFamily(
    "readiness_check_runs_total", "Runs of the check since the exporter started.", ("check",),
    "counter",
)
ERRORS = MetricFamily(
    "readiness_check_errors_total",
    "Runs of the check that ended in error, by bounded reason.", ("check", "reason"), "counter",
)
SKIPPED = MetricFamily(
    "readiness_check_skipped_runs_total",
    "Scheduled runs of the check that did not happen, by reason: overlap (the previous run "
    "was still running or waiting for a concurrency slot) or late (the scheduler woke up "
    "later than the misfire grace time).", ("check", "reason"), "counter",
)
GO_LIVE = MetricFamily(
    "readiness_go_live",
    "1 when every enabled critical check passes (or is skipped while an any_of "
    "alternative passes) and its result is fresh, else 0.",
)
BUILD_INFO = MetricFamily(
    "readiness_exporter_build_info",
    "Version, source revision and Python version of the running readiness-exporter "
    "(always 1).",
    ("version", "revision", "python_version"),
)
RELOAD_OK = MetricFamily(
    "readiness_config_last_reload_successful",
    "1 when the last configuration load or reload succeeded, 0 when it was rejected.",
)
RELOAD_TS = MetricFamily(
    "readiness_config_last_reload_success_timestamp_seconds",
    "When the configuration was last loaded successfully.",
)
CHECK_INFO = MetricFamily(
    "readiness_check_info",
    "Title, checklist section title and probe kind of each configured check (always 1); "
    "join it on `check` to label alerts and tables.",
    ("check", "section", "section_title", "title", "kind"),
)
CHECK_ENABLED = MetricFamily(
    "readiness_check_enabled", "1 when the check is enabled, 0 when it is disabled.", ("check",),
)
CHECK_STALE = MetricFamily(
    "readiness_check_stale",
    "1 when an enabled check's latest result is older than settings.stale_after_intervals "
    "intervals plus its timeout (or it has no result yet); disabled checks are never stale.",
    ("check",),
)
PHASE = MetricFamily(
    "readiness_phase",
    "Readiness phase of the deployment (settings.phase): 1 for the current phase "
    "(preparing, go-live, live), 0 for the others. Alerts page only in live.",
    ("phase",),
)
SHARD_INFO = MetricFamily(
    "readiness_shard_info",
    "The shard of the checks this exporter runs (always 1): checks are split by a hash of "
    "their id over total_shards exporters; rules join shards on these labels.",
    ("shard", "total_shards"),
)
PHASES = ("preparing", "go-live", "live")
CHECK_FAMILIES = (STATUS, LAST_RUN, DURATION, INTERVAL, RUNS, ERRORS, SKIPPED, CHECK_INFO,
                  CHECK_ENABLED, CHECK_STALE)
GLOBAL_FAMILIES = (GO_LIVE, BUILD_INFO, RELOAD_OK, RELOAD_TS, PHASE, SHARD_INFO)
CORE_FAMILIES = CHECK_FAMILIES + GLOBAL_FAMILIES


@dataclass(slots=True)
class ReloadState:
    """Outcome of the last configuration (re)load, for the reload metrics."""

    successful: bool = True
    last_success: float = 0.0
    phase: str = "preparing"  # settings.phase of the running configuration
    shard: int = 0  # --shard / --total-shards of this process (fixed for its lifetime)
    total_shards: int = 1


# --------------------------------------------------------------------------- helpers


def _fmt(value: float) -> str:
    text: str = _float_to_go(value)  # type: ignore[no-untyped-call]
    return text


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}" if inner else ""


def _line(name: str, labels: str, value: float) -> str:
    return f"{name}{labels} {_fmt(value)}\n"


def _family_label_names(family: MetricFamily, labels: Mapping[str, str]) -> list[str]:
    names = [n for n in family.labels if n != "check"]
    names.extend(sorted(k for k in labels if k not in names and k != "check"))
    return names


def _header(family: MetricFamily, openmetrics: bool) -> str:
    help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
    name = family.name
    kind = family.type
    if openmetrics:
        if kind == "counter":
            name = name.removesuffix("_total")
        elif name.endswith("_info") and kind == "gauge":
            name, kind = name.removesuffix("_info"), "info"
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


def section_title_of(section: str) -> str:
    """Title of the checklist section, or of its nearest titled parent ("" if none)."""
    parts = section.split(".")
    for end in range(len(parts), 0, -1):
        title = SECTION_TITLES.get(".".join(parts[:end]))
        if title:
            return title
    return ""


def static_check_lines(spec: CheckSpec) -> dict[str, str]:
    """`readiness_check_info` and `readiness_check_enabled` of one check."""
    values = [spec.id, spec.section, section_title_of(spec.section), spec.title, spec.kind]
    return {
        CHECK_INFO.name: _line(CHECK_INFO.name, _labels(CHECK_INFO.labels, values), 1.0),
        CHECK_ENABLED.name: _line(CHECK_ENABLED.name, _labels(("check",), [spec.id]),
                                  1.0 if spec.enabled else 0.0),
    }


def is_stale(state: CheckState, now: float, stale_after_intervals: float) -> bool:
    """The exporter's own staleness: enabled and not `CheckState.is_fresh`."""
    return state.spec.enabled and not state.is_fresh(now, stale_after_intervals)


def stale_line(check_id: str, stale: bool) -> str:
    """The `readiness_check_stale` sample of one check."""
    return _line(CHECK_STALE.name, _labels(("check",), [check_id]), 1.0 if stale else 0.0)


def phase_lines(phase: str, openmetrics: bool) -> str:
    """The `readiness_phase` state set."""
    return _header(PHASE, openmetrics) + "".join(
        _line(PHASE.name, _labels(("phase",), [p]), 1.0 if p == phase else 0.0)
        for p in PHASES)


class StaleTracker:
    """Staleness of every check, re-evaluated only once the earliest deadline passed.

    A check turns stale without any new outcome, so a scrape would otherwise test every
    check; here a scrape compares one number, and the flags are recomputed (O(checks))
    only when some fresh check may have crossed its deadline.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.flags: dict[str, bool] = {}
        self.changes = 0
        self._deadline = math.inf

    def _deadline_of(self, state: CheckState) -> float:
        spec = state.spec
        if not spec.enabled or state.last_run is None:
            return math.inf  # never stale, or stale until its next outcome
        return state.last_run + spec.interval * self._store.stale_after_intervals + spec.timeout

    def update(self, state: CheckState, now: float) -> bool:
        """Record a changed check; return whether it is stale now."""
        stale = is_stale(state, now, self._store.stale_after_intervals)
        self.flags[state.spec.id] = stale
        if not stale:
            self._deadline = min(self._deadline, self._deadline_of(state))
        return stale

    def expired(self, now: float) -> list[CheckState]:
        """The checks whose flag flipped since the last call (usually none)."""
        if now <= self._deadline:
            return []
        changed = []
        deadline = math.inf
        for cid, state in self._store.states.items():
            stale = is_stale(state, now, self._store.stale_after_intervals)
            if self.flags.get(cid) != stale:
                self.flags[cid] = stale
                changed.append(state)
            if not stale:
                deadline = min(deadline, self._deadline_of(state))
        self._deadline = deadline
        self.changes += len(changed)
        return changed


def check_lines(state: CheckState, families: Mapping[str, MetricFamily]) -> dict[str, str]:
    """Sample lines of one check, by family name (identical in both formats)."""
    spec = state.spec
    check = _escape(spec.id)
    out: dict[str, str] = {
        INTERVAL.name: f'{INTERVAL.name}{{check="{check}"}} {_fmt(spec.interval)}\n',
        RUNS.name: f'{RUNS.name}{{check="{check}"}} {_fmt(state.runs)}\n',
        **static_check_lines(spec),
    }
    if state.outcome is not None:
        current = state.outcome.status
        prefix = (f'{STATUS.name}{{check="{check}",section="{_escape(spec.section)}",'
                  f'severity="{spec.severity.value}",status="')
        out[STATUS.name] = "".join(
            f'{prefix}{s.value}"}} {"1.0" if s is current else "0.0"}\n' for s in Status
        )
    if state.last_run is not None:
        out[LAST_RUN.name] = _line(LAST_RUN.name, f'{{check="{check}"}}', state.last_run)
    if state.duration is not None:
        out[DURATION.name] = _line(DURATION.name, f'{{check="{check}"}}', state.duration)
    if state.errors:
        out[ERRORS.name] = "".join(
            _line(ERRORS.name, f'{{check="{check}",reason="{_escape(r)}"}}', float(n))
            for r, n in sorted(state.errors.items())
        )
    if state.skipped:
        out[SKIPPED.name] = "".join(
            _line(SKIPPED.name, f'{{check="{check}",reason="{_escape(r)}"}}', float(n))
            for r, n in sorted(state.skipped.items())
        )
    if state.outcome is not None:
        by_family: dict[str, list[str]] = {}
        for m in state.outcome.measurements:
            family = families.get(m.family)
            if family is None:
                continue
            names = _family_label_names(family, m.labels)
            labels = _labels(["check", *names], [spec.id, *(m.labels.get(n, "") for n in names)])
            by_family.setdefault(m.family, []).append(_line(m.family, labels, m.value))
        for name, lines in by_family.items():
            out[name] = "".join(lines)
    return out


def build_info_lines(openmetrics: bool) -> str:
    """The `readiness_exporter_build_info` family."""
    info = build_info.current()
    values = (info.version, info.revision, info.python_version)
    return _header(BUILD_INFO, openmetrics) + _line(
        BUILD_INFO.name, _labels(BUILD_INFO.labels, values), 1.0)


def global_lines(store: Store, reload: ReloadState, openmetrics: bool, now: float,
                 go_live: bool | None = None) -> str:
    """The few series computed at scrape time (`go_live`: already known, else asked of
    the store, which walks every check)."""
    live = store.go_live(now) if go_live is None else go_live
    return "".join((
        _header(GO_LIVE, openmetrics), _line(GO_LIVE.name, "", 1.0 if live else 0.0),
        build_info_lines(openmetrics),
        _header(RELOAD_OK, openmetrics),
        _line(RELOAD_OK.name, "", 1.0 if reload.successful else 0.0),
        _header(RELOAD_TS, openmetrics), _line(RELOAD_TS.name, "", reload.last_success),
        phase_lines(reload.phase, openmetrics),
        _header(SHARD_INFO, openmetrics),
        _line(SHARD_INFO.name, _labels(["shard", "total_shards"],
                                       [str(reload.shard), str(reload.total_shards)]), 1.0),
    ))


# --------------------------------------------------------------------------- served path


Block = tuple[bytes, ...]
"""One check's sample lines, one bytes chunk per family in exposition order (b"" where
the check has no sample of that family)."""

_BATCH = 8192  # checks joined at a time when streaming into the compressor
GZIP_LEVEL = 6
"""zlib level of the compressed body: built in a worker thread once per change, then
served as is to every gzip scrape."""


@dataclass(frozen=True, slots=True)
class Part:
    """A built body of every check's series."""

    build: int
    generation: int
    built_at: float  # monotonic
    body: bytes


@dataclass(slots=True)
class Compressed:
    """The gzip stream of every check's series, left open for the scrape-time tail."""

    build: int
    generation: int
    built_at: float  # monotonic
    head: bytes
    compressor: zlib._Compress
    tail: tuple[bytes, bytes] | None = None  # (tail, its compressed end) last served


def _chunks(blocks: Sequence[Block], headers: Sequence[bytes]) -> Iterator[bytes]:
    """The check series family by family, in batches of checks (pure: thread-safe)."""
    for slot, header in enumerate(headers):
        samples = [chunk for block in blocks if (chunk := block[slot])]
        if samples:
            yield header
            for start in range(0, len(samples), _BATCH):
                yield b"".join(samples[start:start + _BATCH])


def build_checks_body(blocks: Sequence[Block], headers: Sequence[bytes]) -> bytes:
    """Join cached sample lines family by family (pure: safe in a worker thread)."""
    return b"".join(_chunks(blocks, headers))


def compress_checks(blocks: Sequence[Block], headers: Sequence[bytes],
                    level: int = GZIP_LEVEL) -> tuple[bytes, zlib._Compress]:
    """Gzip of the check series, streamed batch by batch (the text body is never held
    whole), and the open compressor to finish with the tail (safe in a worker thread)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [compressor.compress(chunk) for chunk in _chunks(blocks, headers)]
    return b"".join(out), compressor


class Exposition:
    """Cached per-check sample lines; a scrape concatenates them.

    Each check's lines are rendered once, as bytes, on the event loop when its outcome
    changes (a few microseconds). A scrape reuses the built body while it is younger
    than `max_age` seconds (results are cached anyway: probes run on their own
    schedule), otherwise it is built in a worker thread from an immutable snapshot;
    concurrent scrapes share one build. The text and the gzip bodies are built and
    cached separately: a gzip build streams the lines into the compressor and never
    holds the text body, so an exporter scraped with gzip (Prometheus' default) keeps
    only the compressed body (a plain body not asked for within `max_age` is dropped).
    Each gzip scrape reuses the compressed body and only compresses the small global
    tail, once per tail.
    """

    def __init__(self, store: Store, families: Mapping[str, MetricFamily],
                 reload: ReloadState, max_age: float = 1.0, *,
                 process_series: bool = False) -> None:
        self._store = store
        self._process = ProcessSeries() if process_series else None
        self._reload = reload
        self.max_age = max_age
        self._lines: dict[str, Block] = {}
        self._lock = threading.Lock()
        self._parts: dict[bool, Part] = {}
        self._compressed: dict[bool, Compressed] = {}
        self._building: dict[tuple[bool, bool], asyncio.Future[Any]] = {}
        self._builds = 0
        self._gzip_cache: dict[bool, tuple[int, bytes, zlib._Compress]] = {}
        self._tails: dict[bool, tuple[tuple[bool, bool, float, str], float, bytes]] = {}
        self._stale = StaleTracker(store)
        # Enabled critical checks that hold go-live down, kept up to date as outcomes
        # and staleness change, so a scrape does not walk every check for go-live.
        self._not_passing: set[str] = set()
        self._adopt(families)
        store.subscribe(self._on_change)
        self._on_change(list(store.states.values()))

    def _adopt(self, families: Mapping[str, MetricFamily]) -> None:
        self._families = dict(families)
        order = [*CHECK_FAMILIES, *(self._families[n] for n in sorted(self._families))]
        self._order = tuple(family.name for family in order)
        self._stale_slot = self._order.index(CHECK_STALE.name)
        self._headers = {om: tuple(_header(f, om).encode() for f in order)
                         for om in (False, True)}

    def set_families(self, families: Mapping[str, MetricFamily]) -> None:
        """Adopt the family metadata of a reloaded configuration (re-renders only when
        it differs)."""
        families = dict(families)
        if families == self._families:
            return
        self._adopt(families)
        self._lines = {}
        self._on_change(list(self._store.states.values()))
        self._parts.clear()
        self._compressed.clear()

    def _block(self, state: CheckState, stale: bool) -> Block:
        rendered = check_lines(state, self._families)
        rendered[CHECK_STALE.name] = stale_line(state.spec.id, stale)
        return tuple(rendered[name].encode() if name in rendered else b""
                     for name in self._order)

    def _on_change(self, states: Sequence[CheckState]) -> None:
        lines = self._lines
        now = time.time()
        for state in states:
            stale = self._stale.update(state, now)
            lines[state.spec.id] = self._block(state, stale)
            self._track_go_live(state, stale)
        if len(lines) > len(self._store.states):  # checks removed by a reload
            current = self._store.states
            for check_id in [c for c in lines if c not in current]:
                del lines[check_id]
                self._stale.flags.pop(check_id, None)
                self._not_passing.discard(check_id)

    def _track_go_live(self, state: CheckState, stale: bool, *, follow: bool = True) -> None:
        """Whether the check holds go-live down (`Store.holds_down`, kept incrementally);
        the checks whose `any_of` names it are re-judged with it."""
        cid = state.spec.id
        if self._store.holds_down(state, stale, self._tracked_fresh):
            self._not_passing.add(cid)
        else:
            self._not_passing.discard(cid)
        if follow:
            for dependent in state.dependents:
                self._track_go_live(dependent, self._stale.flags.get(dependent.spec.id, False),
                                    follow=False)

    def _tracked_fresh(self, state: CheckState) -> bool:
        """The tracked staleness of a check (the one its own series shows)."""
        return not self._stale.flags.get(state.spec.id, True)

    def go_live(self, now: float | None = None) -> bool:
        """`Store.go_live`, from the tracked blockers (no walk over every check)."""
        self._refresh_stale(now)
        return not self._not_passing

    def _refresh_stale(self, now: float | None = None) -> None:
        """Re-render the stale line of checks whose staleness flipped."""
        slot = self._stale_slot
        for state in self._stale.expired(time.time() if now is None else now):
            cid = state.spec.id
            self._track_go_live(state, self._stale.flags[cid])
            block = self._lines.get(cid)
            if block is not None:
                line = stale_line(cid, self._stale.flags[cid]).encode()
                self._lines[cid] = (*block[:slot], line, *block[slot + 1:])

    def _generation(self) -> int:
        """Changes so far: outcomes and configuration (store) plus staleness flips."""
        return self._store.generation + self._stale.changes

    def _snapshot(self) -> list[Block]:
        lines = self._lines
        return [lines[cid] for cid in self._store.states if cid in lines]

    def _next_build(self) -> int:
        self._builds += 1
        return self._builds

    def _fresh(self, part: Part | Compressed | None, max_age: float) -> bool:
        return part is not None and (part.generation == self._generation()
                                     or time.monotonic() - part.built_at < max_age)

    def checks_part(self, openmetrics: bool, now: float | None = None) -> Part:
        """The check series, rebuilt now if anything changed (synchronous)."""
        self._refresh_stale(now)
        part = self._parts.get(openmetrics)
        if not self._fresh(part, 0.0):
            generation = self._generation()
            body = build_checks_body(self._snapshot(), self._headers[openmetrics])
            part = Part(self._next_build(), generation, time.monotonic(), body)
            self._parts[openmetrics] = part
        assert part is not None
        return part

    async def _shared_build(self, key: tuple[bool, bool], build: Callable[[], Any]) -> Any:
        """Run `build` in a worker thread; concurrent callers await the same build."""
        pending = self._building.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._building[key] = future
        try:
            result = await loop.run_in_executor(None, build)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._building[key]

    async def checks_part_async(self, openmetrics: bool) -> Part:
        """The check series as text, at most `max_age` old, joined in a worker thread."""
        self._refresh_stale()
        part = self._parts.get(openmetrics)
        if part is not None and self._fresh(part, self.max_age):
            return part
        generation, snapshot = self._generation(), self._snapshot()
        headers = self._headers[openmetrics]

        def build() -> Part:
            body = build_checks_body(snapshot, headers)
            return Part(self._next_build(), generation, time.monotonic(), body)
        part = cast(Part, await self._shared_build((openmetrics, False), build))
        self._parts[openmetrics] = part
        return part

    async def compressed_part(self, openmetrics: bool) -> Compressed:
        """The check series gzipped, at most `max_age` old, compressed in a worker thread
        straight from the cached lines."""
        self._refresh_stale()
        part = self._compressed.get(openmetrics)
        if part is not None and self._fresh(part, self.max_age):
            return part
        generation, snapshot = self._generation(), self._snapshot()
        headers = self._headers[openmetrics]

        def build() -> Compressed:
            head, compressor = compress_checks(snapshot, headers)
            return Compressed(self._next_build(), generation, time.monotonic(), head,
                              compressor)
        part = cast(Compressed, await self._shared_build((openmetrics, True), build))
        self._compressed[openmetrics] = part
        plain = self._parts.get(openmetrics)
        if plain is not None and time.monotonic() - plain.built_at >= self.max_age:
            del self._parts[openmetrics]  # not asked for lately: keep only the gzip body
        return part

    def tail(self, openmetrics: bool, now: float | None = None) -> bytes:
        """The global series computed at scrape time (and `# EOF` for OpenMetrics)."""
        now = time.time() if now is None else now
        text = global_lines(self._store, self._reload, openmetrics, now, self.go_live(now))
        if self._process is not None:
            text += self._process.render(openmetrics)
        if openmetrics:
            text += "# EOF\n"
        return text.encode("utf-8")

    def _cached_tail(self, openmetrics: bool) -> bytes:
        """`tail()`, reused for `max_age` seconds unless the reload state changed."""
        key = (openmetrics, self._reload.successful, self._reload.last_success,
               self._reload.phase)
        now = time.monotonic()
        cached = self._tails.get(openmetrics)
        if cached is not None and cached[0] == key and now - cached[1] < self.max_age:
            return cached[2]
        tail = self.tail(openmetrics)
        self._tails[openmetrics] = (key, now, tail)
        return tail

    def render(self, openmetrics: bool, now: float | None = None) -> bytes:
        """The full, current exposition body (synchronous)."""
        return self.checks_part(openmetrics, now).body + self.tail(openmetrics, now)

    def gzip_body(self, openmetrics: bool, part: Part, tail: bytes) -> bytes:
        """Gzip of `part` + `tail`, reusing the compressed part (safe in a worker thread)."""
        with self._lock:
            cached = self._gzip_cache.get(openmetrics)
            if cached is None or cached[0] != part.build:
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
                head = compressor.compress(part.body)
                cached = (part.build, head, compressor)
                self._gzip_cache[openmetrics] = cached
            _, head, compressor = cached
            finisher = compressor.copy()
        return head + finisher.compress(tail) + finisher.flush()

    @staticmethod
    def _finish(part: Compressed, tail: bytes) -> bytes:
        """The compressed end of the stream for `tail`, computed once per tail."""
        done = part.tail
        if done is None or done[0] is not tail:
            finisher = part.compressor.copy()
            done = (tail, finisher.compress(tail) + finisher.flush())
            part.tail = done
        return done[1]

    async def body(self, openmetrics: bool, gzip: bool) -> list[bytes | memoryview]:
        """What a scrape gets, as chunks: the cached check series plus the global tail.

        The chunks are the shared cached bodies (views for the text), so concurrent
        scrapes do not each copy them; gzip is the cached compressed series followed by
        the compressed tail.
        """
        tail = self._cached_tail(openmetrics)
        if gzip:
            compressed = await self.compressed_part(openmetrics)
            return [compressed.head, self._finish(compressed, tail)]
        part = await self.checks_part_async(openmetrics)
        view = memoryview(part.body)
        size = 1 << 18
        return [*(view[i:i + size] for i in range(0, len(view), size)), tail]


# --------------------------------------------------------------------------- reference


class ReadinessCollector(Collector):
    """prometheus_client custom collector over the store (plain, uncached rendering)."""

    def __init__(self, store: Store, families: Mapping[str, MetricFamily],
                 reload: ReloadState) -> None:
        self._store = store
        self._families = dict(families)
        self._reload = reload

    def collect(self) -> Iterator[Metric]:
        states = list(self._store.states.values())
        status = GaugeMetricFamily(STATUS.name, STATUS.help, labels=list(STATUS.labels))
        last_run = GaugeMetricFamily(LAST_RUN.name, LAST_RUN.help, labels=["check"])
        duration = GaugeMetricFamily(DURATION.name, DURATION.help, labels=["check"])
        interval = GaugeMetricFamily(INTERVAL.name, INTERVAL.help, labels=["check"])
        runs = CounterMetricFamily(RUNS.name, RUNS.help, labels=["check"])
        errors = CounterMetricFamily(ERRORS.name, ERRORS.help, labels=["check", "reason"])
        skipped = CounterMetricFamily(SKIPPED.name, SKIPPED.help, labels=["check", "reason"])
        family_metrics: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for state in states:
            spec = state.spec
            interval.add_metric([spec.id], spec.interval)
            runs.add_metric([spec.id], state.runs)
            if state.outcome is not None:
                for s in Status:
                    status.add_metric([spec.id, spec.section, spec.severity.value, s.value],
                                      1.0 if s is state.outcome.status else 0.0)
            if state.last_run is not None:
                last_run.add_metric([spec.id], state.last_run)
            if state.duration is not None:
                duration.add_metric([spec.id], state.duration)
            for reason, count in sorted(state.errors.items()):
                errors.add_metric([spec.id, reason], count)
            for reason, count in sorted(state.skipped.items()):
                skipped.add_metric([spec.id, reason], count)
            if state.outcome is None:
                continue
            for m in state.outcome.measurements:
                family = self._families.get(m.family)
                if family is None:
                    continue
                names = _family_label_names(family, m.labels)
                metric = family_metrics.get(m.family)
                if metric is None:
                    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                    metric = cls(m.family, family.help, labels=["check", *names])
                    family_metrics[m.family] = metric
                metric.add_metric([spec.id, *(m.labels.get(n, "") for n in names)], m.value)
        yield from (status, last_run, duration, interval, runs, errors, skipped)
        yield from self._static(states)
        yield from (family_metrics[name] for name in sorted(family_metrics))
        yield GaugeMetricFamily(GO_LIVE.name, GO_LIVE.help,
                                value=1.0 if self._store.go_live() else 0.0)
        info = GaugeMetricFamily(BUILD_INFO.name, BUILD_INFO.help, labels=list(BUILD_INFO.labels))
        build = build_info.current()
        info.add_metric([build.version, build.revision, build.python_version], 1.0)
        yield info
        yield GaugeMetricFamily(RELOAD_OK.name, RELOAD_OK.help,
                                value=1.0 if self._reload.successful else 0.0)
        yield GaugeMetricFamily(RELOAD_TS.name, RELOAD_TS.help, value=self._reload.last_success)
        yield from self._phase_and_stale(states)

    @staticmethod
    def _static(states: list[CheckState]) -> Iterator[Metric]:
        info = GaugeMetricFamily(CHECK_INFO.name, CHECK_INFO.help, labels=list(CHECK_INFO.labels))
        enabled = GaugeMetricFamily(CHECK_ENABLED.name, CHECK_ENABLED.help, labels=["check"])
        for state in states:
            spec = state.spec
            info.add_metric([spec.id, spec.section, section_title_of(spec.section), spec.title,
                             spec.kind], 1.0)
            enabled.add_metric([spec.id], 1.0 if spec.enabled else 0.0)
        if states:
            yield info
            yield enabled

    def _phase_and_stale(self, states: list[CheckState]) -> Iterator[Metric]:
        now = time.time()
        stale = GaugeMetricFamily(CHECK_STALE.name, CHECK_STALE.help, labels=["check"])
        for state in states:
            stale.add_metric([state.spec.id], 1.0 if is_stale(
                state, now, self._store.stale_after_intervals) else 0.0)
        if states:
            yield stale
        phase = GaugeMetricFamily(PHASE.name, PHASE.help, labels=["phase"])
        for name in PHASES:
            phase.add_metric([name], 1.0 if name == self._reload.phase else 0.0)
        yield phase
        shard = GaugeMetricFamily(SHARD_INFO.name, SHARD_INFO.help, labels=["shard",
                                                                            "total_shards"])
        shard.add_metric([str(self._reload.shard), str(self._reload.total_shards)], 1.0)
        yield shard
