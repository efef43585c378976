"""Soak with reloads (issue 17): many checks at a short interval, the configuration
reloaded every few seconds, for a bounded time.

Prints reload durations (p50/max), probe runs per second inside and outside the reload
windows, runs skipped (where the exporter counts them, `Store.record_skipped`; on the
code before issue 17, which had no counter, from APScheduler's skip events, which were
then every skip), the longest event-loop stall, log volume and the machine's load,
then the command to reproduce the figures.

Run:  .venv/bin/python bench/reload_soak.py [--checks 1000] [--seconds 90]

The exporter runs in this process, as `serve` runs it (`Runtime`, its scheduler, store
and exposition; `Runtime.reload` is what SIGHUP and `POST /-/reload` call). Each reload
rewrites the file: the titles of `--change` of the checks, the interval of 1 % of them,
and 1 % of the checks replaced by new ones. Probes are the test-only `test_behaviour`
kind sleeping `--probe-sleep` seconds (a probe waiting on a network answer), or the
`env` kind with `--probe-sleep 0`; `--slow` of them take 2.5 intervals, so they skip
runs whatever the reloads do (the skipped-run count and its log lines show up).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporter import config, jsonlog, registry  # noqa: E402
from exporter.daemon import Runtime, families_of  # noqa: E402
from exporter.model import Outcome  # noqa: E402


class CountingStream:
    """A log stream that keeps only the volume written to it."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0
        self.skip_lines = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8"))
        self.lines += text.count("\n")
        if "skipped" in text:
            self.skip_lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


@dataclass
class Soak:
    """What the soak observed."""

    reload_seconds: list[float] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # monotonic
    skips: list[tuple[float, str, str]] = field(default_factory=list)  # time, reason, check
    lags: list[tuple[float, float]] = field(default_factory=list)  # monotonic, seconds
    steps: dict[str, list[float]] = field(default_factory=dict)  # reload step -> seconds
    full_gc: list[float] = field(default_factory=list)  # seconds per generation-2 collection
    runs: list[tuple[float, int]] = field(default_factory=list)  # monotonic, total runs


def config_text(args: argparse.Namespace, generation: int) -> str:
    """The soak configuration of reload number `generation`."""
    changed = max(1, int(args.checks * args.change))
    one_percent = max(1, args.checks // 100)
    kind: dict[str, Any] = ({"kind": "env", "required": ["PATH"]} if args.probe_sleep == 0
                            else {"kind": "test_behaviour", "behaviour": "sleep",
                                  "sleep": args.probe_sleep})
    checks = []
    for i in range(args.checks):
        check_id = f"check-{i:05d}"
        if i < one_percent and generation % 2:  # replaced by a new check every other reload
            check_id = f"swapped-{i:05d}-{generation}"
        slower = one_percent <= i < 2 * one_percent and generation % 2
        title = f"soak check {i}" + (f" (generation {generation})" if i % (
            args.checks // changed) == 0 else "")
        probe = kind
        if i >= args.checks - args.slow:  # slower than its interval: skips runs
            probe = {"kind": "test_behaviour", "behaviour": "sleep",
                     "sleep": args.interval * 2.5}
        checks.append({"id": check_id, "section": f"{1 + i % 12}.{1 + i % 4}", "title": title,
                       "severity": "critical" if i % 5 == 0 else "warning",
                       "interval": args.interval * (2 if slower else 1),
                       "timeout": args.interval * 5, **probe})
    return yaml.safe_dump({
        "settings": {"max_concurrency": args.max_concurrency, "first_round_spread": 1.0},
        "checks": checks})


async def monitor(soak: Soak, runtime: Runtime, stop: asyncio.Event) -> None:
    """Event-loop lag every 10 ms, total runs every 100 ms."""
    loop = asyncio.get_running_loop()
    ticks = 0
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(0.01)
        now = loop.time()
        soak.lags.append((time.monotonic(), now - started - 0.01))
        ticks += 1
        if ticks % 10 == 0:
            soak.runs.append((time.monotonic(), sum(s.runs for s in runtime.store.states.values())))


def in_windows(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(start <= t <= end for start, end in windows)


def run_rate(runs: list[tuple[float, int]], windows: list[tuple[float, float]],
             inside: bool) -> float:
    """Probe runs per second inside (or outside) the reload windows."""
    count, seconds = 0.0, 0.0
    for (t0, n0), (t1, n1) in itertools.pairwise(runs):
        if in_windows((t0 + t1) / 2, windows) == inside:
            count += n1 - n0
            seconds += t1 - t0
    return count / seconds if seconds else 0.0


def time_steps(runtime: Runtime, steps: dict[str, list[float]]) -> None:
    """Time each step of `Runtime.reload` (the load in its thread, the rest on the loop)."""

    def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                steps.setdefault(name, []).append(time.perf_counter() - started)
        return wrapper

    config.load = timed("config.load (worker thread)", config.load)  # type: ignore[assignment]
    for owner, name in ((runtime.exposition, "set_families"), (runtime.store, "replace_specs"),
                        (runtime.scheduler, "apply")):
        setattr(owner, name, timed(f"{type(owner).__name__}.{name}", getattr(owner, name)))


def time_full_collections(pauses: list[float]) -> None:
    """Record how long each full (generation 2) garbage collection stops the process."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif info["generation"] == 2 and started:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)


async def soak(args: argparse.Namespace, workdir: Path, stream: CountingStream) -> Soak:
    path = workdir / "readiness.yaml"
    # Written beforehand: dumping YAML on the event loop would stall it (not the exporter).
    reloads = int(args.seconds // args.reload_every)
    texts = [config_text(args, generation) for generation in range(reloads + 1)]
    path.write_text(texts[0], encoding="utf-8")
    runtime = Runtime(config.load(path), path)
    result = Soak()

    record_skipped = getattr(runtime.store, "record_skipped", None)
    if record_skipped is not None:  # the exporter counts skipped runs itself
        def counting(check_id: str, reason: str) -> None:
            result.skips.append((time.monotonic(), reason, check_id))
            record_skipped(check_id, reason)

        runtime.store.record_skipped = counting  # type: ignore[method-assign]
    else:  # the code before issue 17: APScheduler's own events are every skip
        def on_skip(event: JobEvent) -> None:
            reason = "overlap" if event.code == EVENT_JOB_MAX_INSTANCES else "late"
            result.skips.append((time.monotonic(), reason, event.job_id))

        runtime.scheduler._scheduler.add_listener(
            on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    await runtime.start()
    time_steps(runtime, result.steps)
    stop = asyncio.Event()
    watcher = asyncio.create_task(monitor(result, runtime, stop))
    await asyncio.sleep(args.warmup)
    result.skips.clear()
    result.lags.clear()
    time_full_collections(result.full_gc)
    deadline = time.monotonic() + args.seconds
    generation = 0
    while generation < reloads and time.monotonic() + args.reload_every < deadline:
        await asyncio.sleep(args.reload_every)
        generation += 1
        path.write_text(texts[generation], encoding="utf-8")
        started = time.monotonic()
        errors = await runtime.reload()
        ended = time.monotonic()
        if errors:
            raise SystemExit(f"reload rejected: {errors}")
        result.reload_seconds.append(ended - started)
        if args.stall:  # as a long garbage collection or a CPU-bound call would
            time.sleep(args.stall)
            ended = time.monotonic()
        # A reload's effect on the schedule shows up to one interval after it ends.
        result.windows.append((started, ended + args.interval))
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    stop.set()
    await watcher
    await runtime.stop()
    return result


def median_seconds(func: Callable[[], object], repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def steps_alone(args: argparse.Namespace, workdir: Path) -> list[str]:
    """Each reload step timed on its own, before the soak (no probes running)."""
    path = workdir / "alone.yaml"
    path.write_text(config_text(args, 0), encoding="utf-8")
    lines = [f"config.load alone ({args.checks} checks, median of 5): "
             f"{median_seconds(lambda: config.load(path)):.3f} s"]
    if yaml.__with_libyaml__:  # the same loader on libyaml, for comparison
        plain = config._UniqueKeyLoader

        class LibyamlLoader(yaml.CSafeLoader):
            """`_UniqueKeyLoader`'s duplicate-key check on libyaml's parser."""

        for tag, constructor in plain.yaml_constructors.items():
            LibyamlLoader.add_constructor(tag, constructor)
        config._UniqueKeyLoader = LibyamlLoader  # type: ignore[misc]
        try:
            seconds = median_seconds(lambda: config.load(path))
        finally:
            config._UniqueKeyLoader = plain  # type: ignore[misc]
        lines[0] += f"; with a libyaml (CSafeLoader) based loader {seconds:.3f} s"
    runtime = Runtime(config.load(path), path)
    store, exposition = runtime.store, runtime.exposition
    baseline = [s.spec for s in store.states.values()]
    for spec in baseline:  # as in a running exporter: every check has a result
        store.record(spec.id, Outcome.passed("ok"), time.time(), 0.1)

    def copies(specs: list[Any]) -> list[Any]:  # equal specs, new objects (as a reload)
        return [type(s).model_validate(s.model_dump()) for s in specs]

    def apply(specs: list[Any]) -> None:
        exposition.set_families(families_of(specs))
        store.replace_specs(specs)

    for label, change in (("nothing", 0.0), (f"{args.change:.0%}", args.change),
                          ("every check", 1.0)):
        if change:  # an even generation: the same ids and intervals as the baseline
            variant = argparse.Namespace(**{**vars(args), "change": change})
            new = config.build(yaml.safe_load(config_text(variant, 2)), "bench", {}).checks
        else:
            new = copies(baseline)
        timings = []
        for _ in range(5):
            fresh = copies(new)
            started = time.perf_counter()
            apply(fresh)
            timings.append(time.perf_counter() - started)
            apply(copies(baseline))  # back to the start, untimed
        lines.append(f"Exposition.set_families + Store.replace_specs alone, {label} changed: "
                     f"{statistics.median(timings) * 1000:.1f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--seconds", type=float, default=90.0, help="measured soak length")
    parser.add_argument("--reload-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--change", type=float, default=0.1,
                        help="fraction of checks whose title changes at each reload")
    parser.add_argument("--probe-sleep", type=float, default=0.1,
                        help="seconds each probe waits (0: the env kind)")
    parser.add_argument("--slow", type=int, default=10,
                        help="checks whose probe takes 2.5 intervals (they skip runs)")
    parser.add_argument("--max-concurrency", type=int, default=256)
    parser.add_argument("--stall", type=float, default=0.0,
                        help="seconds the event loop is blocked right after each reload")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    args = parser.parse_args()

    registry.PROBE_KINDS.setdefault("test_behaviour", "tests.support.kinds:BEHAVIOUR")
    stream = CountingStream()
    jsonlog.setup("info")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)  # type: ignore[arg-type]
    load_before = os.getloadavg()
    cpu_before = time.process_time()
    with tempfile.TemporaryDirectory(prefix="reload-soak-") as tmp:
        alone = steps_alone(args, Path(tmp))
        result = asyncio.run(soak(args, Path(tmp), stream))
    cpu = time.process_time() - cpu_before
    load_after = os.getloadavg()

    durations = result.reload_seconds
    during = [s for s in result.skips if in_windows(s[0], result.windows)]
    by_reason = {r: sum(1 for _, reason, _ in result.skips if reason == r)
                 for r in ("overlap", "late")}
    slow_ids = {f"check-{i:05d}" for i in range(args.checks - args.slow, args.checks)}
    by_slow = sum(1 for _, _, check in result.skips if check in slow_ids)
    lag_in = [lag for t, lag in result.lags if in_windows(t, result.windows)] or [0.0]
    lag_out = [lag for t, lag in result.lags if not in_windows(t, result.windows)] or [0.0]
    expected_runs = args.checks / args.interval
    print(f"command: .venv/bin/python bench/reload_soak.py --checks {args.checks} "
          f"--interval {args.interval:g} --seconds {args.seconds:g} --reload-every "
          f"{args.reload_every:g} --change {args.change:g} --probe-sleep {args.probe_sleep:g} "
          f"--slow {args.slow} --max-concurrency {args.max_concurrency} --stall {args.stall:g}")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load average "
          f"{load_before[0]:.2f} at start, {load_after[0]:.2f} at the end; this process used "
          f"{cpu:.1f} CPU s")
    print(f"reloads: {len(durations)}, duration p50 {statistics.median(durations):.3f} s, "
          f"max {max(durations):.3f} s")
    for line in alone:
        print(line)
    print("reload steps within the soak (p50 / max): " + "; ".join(
        f"{name} {statistics.median(times) * 1000:.1f} / {max(times) * 1000:.1f} ms"
        for name, times in result.steps.items()))
    print(f"probe runs/s: {run_rate(result.runs, result.windows, True):.0f} within a reload "
          f"(and one interval after it), {run_rate(result.runs, result.windows, False):.0f} "
          f"otherwise (schedule: {expected_runs:.0f}/s)")
    print(f"runs skipped: {len(result.skips)} ({by_reason['overlap']} overlap, "
          f"{by_reason['late']} late), {len(during)} of them within a reload window; "
          f"{by_slow} by the {args.slow} slow checks, {len(result.skips) - by_slow} by the "
          f"others")
    print(f"event-loop lag: max {max(lag_in) * 1000:.0f} ms within reload windows, "
          f"max {max(lag_out) * 1000:.0f} ms otherwise")
    print(f"full garbage collections: {len(result.full_gc)}, longest "
          f"{max(result.full_gc, default=0.0) * 1000:.0f} ms")
    print(f"log: {stream.bytes} bytes in {stream.lines} lines "
          f"({stream.skip_lines} about skipped runs) over {args.warmup + args.seconds:g} s "
          f"(warm-up included)")


if __name__ == "__main__":
    main()
