"""The exposition keeps go-live up to date as outcomes and staleness change (a scrape of
100,000 checks must not walk them all); it always agrees with `Store.go_live`."""

from __future__ import annotations

import random
import time
from typing import Any

from exporter import config
from exporter.metrics import Exposition, ReloadState
from exporter.model import Outcome, Reason, Status
from exporter.store import Store

OUTCOMES = [Outcome.passed("ok"), Outcome.failed("no"), Outcome.skipped("n/a"),
            Outcome.errored(Reason.TIMEOUT, "slow")]


def specs(severities: list[str]) -> list[Any]:
    cfg = config.build({"checks": [
        {"id": f"c{i}", "section": "6.1", "title": f"c{i}", "kind": "env", "severity": sev,
         "required": ["PATH"], "interval": 10, "timeout": 1, "enabled": i != 3}
        for i, sev in enumerate(severities)]}, "test", {})
    return list(cfg.checks)


def test_tracked_go_live_agrees_with_the_store_through_outcomes_staleness_and_reloads(
) -> None:
    rng = random.Random(16)
    store = Store(specs(["critical", "critical", "warning", "critical", "critical"]))
    store.fleet_verdicts = frozenset({"c0"})  # as a sharded runtime sets it for 11.3.1
    exposition = Exposition(store, {}, ReloadState())
    offset = 0.0
    seen = set()
    for step in range(600):
        now = time.time() + offset
        action = rng.random()
        if action < 0.7:
            check_id = f"c{rng.randrange(5)}"
            age = rng.choice([0.0, 0.0, 5.0, 40.0])  # 40 s > 3 intervals + timeout: stale
            store.record(check_id, rng.choice(OUTCOMES[:2] * 3 + OUTCOMES[2:]), now - age, 0.1)
        elif action < 0.8:
            offset += rng.choice([1.0, 15.0, 35.0])  # time passes: results go stale
        elif action < 0.9:
            levels = [rng.choice(["critical", "warning"]) for _ in range(5)]
            store.replace_specs(specs(levels))  # a reload: changed checks are notified
        else:
            store.replace_specs(specs(["critical"] * rng.randrange(1, 6)))
        now = time.time() + offset
        expected = store.go_live(now)
        assert exposition.go_live(now) is expected, f"step {step}"
        assert f"readiness_go_live {1.0 if expected else 0.0}" in \
            exposition.tail(False, now).decode()
        seen.add(expected)
    assert seen == {True, False}  # both verdicts were exercised


def test_a_fleet_verdict_skipped_does_not_hold_go_live_but_a_failure_does() -> None:
    store = Store(specs(["critical", "critical"]))
    store.fleet_verdicts = frozenset({"c1"})
    exposition = Exposition(store, {}, ReloadState())
    now = time.time()
    store.record("c0", Outcome.passed("ok"), now, 0.1)
    store.record("c1", Outcome.skipped("cannot see other shards"), now, 0.1)
    assert exposition.go_live(now) and store.go_live(now)
    store.record("c1", Outcome.failed("a failure this shard sees"), now, 0.1)
    assert not exposition.go_live(now) and not store.go_live(now)
    assert store.get("c1").status is Status.FAIL
