"""Bench: the board page, a check page and the evidence report for N checks.

Builds N synthetic checks (a fifth failing on one of 40 hosts, a tenth erroring on one
of 20 paths, the rest passing, 20 outcomes of history each) and times, in process:
the board's view model with its cause grouping, the rendered HTML, one check page and
the report document. These run on the event loop for every request (the report in a
worker thread), so they bound how long a board request can delay a scrape.

    cd /work/main && .venv/bin/python -m bench.board [--checks 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from exporter.config import Config
from exporter.history import History
from exporter.model import CheckSpec, Outcome, Reason, Severity
from exporter.report.document import build
from exporter.store import Store
from exporter.web.board import Filters, board_view, check_view, template_environment


def runtime(checks: int) -> Any:
    specs = [CheckSpec(id=f"c{i}", section=f"{i % 12 + 1}.{i % 4 + 1}",
                       title=f"synthetic check {i}", kind="env",
                       severity=Severity.CRITICAL if i % 3 == 0 else Severity.WARNING)
             for i in range(checks)]
    store = Store(specs)
    history = History.follow(store, None)
    now = time.time()
    for run in range(20):
        for i, spec in enumerate(specs):
            if i % 5 == 0:
                outcome = Outcome.errored(Reason.DNS,
                                          f"cannot resolve host{i % 40}.example.internal")
            elif i % 10 == 1:
                outcome = Outcome.failed(f"/var/lib/app/evidence-{i % 20}.json does not exist")
            else:
                outcome = Outcome.passed(f"{i} of {i} items comply")
            store.record(spec.id, outcome, now - (20 - run) * 60, 0.01)
    cfg = Config(checks=specs, source="bench")
    return SimpleNamespace(store=store, history=history, config=cfg)


def timed(func: Any, runs: int) -> tuple[float, Any]:
    samples = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rt = runtime(args.checks)
    env = template_environment()
    board = env.get_template("board.html")
    check = env.get_template("check.html")
    now = time.time()
    view_ms, view = timed(lambda: board_view(rt, Filters(), now), args.runs)
    html_ms, html = timed(lambda: board.render(**view, prefix=""), args.runs)
    state = rt.store.get("c0")
    page_ms, _ = timed(lambda: check.render(**check_view(rt, state, now), prefix="../"),
                       args.runs)
    report_ms, _ = timed(lambda: build(rt.config, rt.store.states.values(), release="1",
                                       now=now, blocking=[], attestations=lambda s: []),
                         args.runs)
    print(f"{args.checks} checks, {len(view['causes'])} causes, median of {args.runs} runs")
    print(f"  board view model (incl. causes) {view_ms:8.1f} ms")
    print(f"  board HTML render               {html_ms:8.1f} ms  ({len(html) / 1e6:.2f} MB)")
    print(f"  check page (view + render)      {page_ms:8.1f} ms")
    print(f"  report document                 {report_ms:8.1f} ms")
    print(f"reproduce: .venv/bin/python -m bench.board --checks {args.checks} "
          f"--runs {args.runs}  (from {Path.cwd()})")


if __name__ == "__main__":
    main()
