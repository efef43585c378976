"""`any_of` alternatives: a skipped critical check with a fresh passing alternative does
not block go-live; every output (store, `readiness_go_live`, `check`'s summary and JSON,
the board's causes) gives the same verdict and names the alternative."""

from __future__ import annotations

import random
import time
from typing import Any

import jsonschema
import pytest

from exporter import config, lint
from exporter.config import ConfigError
from exporter.metrics import Exposition, ReloadState
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.render.json_output import OUTPUT_SCHEMA, RunInfo, envelope
from exporter.render.summary import summarise
from exporter.render.table import to_table
from exporter.results import record
from exporter.sharding import placement, shard_of
from exporter.store import Store
from exporter.web.causes import group_causes

SKIP = Outcome.skipped("the kube-apiserver is not visible (managed control plane)")
PASS = Outcome.passed("signed by Dana Ops")
FAIL = Outcome.failed("no valid record")


def entry(check_id: str, severity: str = "critical", **extra: Any) -> dict[str, Any]:
    return {"id": check_id, "section": "4.4", "title": f"check {check_id}", "kind": "env",
            "severity": severity, "required": ["PATH"], "interval": 10, "timeout": 1, **extra}


def build(*entries: dict[str, Any]) -> list[CheckSpec]:
    return list(config.build({"checks": list(entries)}, "test", {}).checks)


def errors(*entries: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.build({"checks": list(entries)}, "test", {})
    return info.value.errors


def verdicts(store: Store, now: float) -> dict[str, Any]:
    """go-live as every output computes it."""
    exposition = Exposition(store, {}, ReloadState())
    tail = exposition.tail(False, now).decode()
    summary = summarise(store.states.values())
    document = envelope(store.states.values(), RunInfo("test", finished=now))
    jsonschema.validate(document, OUTPUT_SCHEMA)
    return {"store": store.go_live(now), "exposition": exposition.go_live(now),
            "gauge": "readiness_go_live 1.0" in tail, "summary": summary.go_live,
            "json": document["go_live"], "document": document, "summary_obj": summary}


def agree(store: Store, now: float) -> tuple[bool, dict[str, Any]]:
    seen = verdicts(store, now)
    values = {seen[k] for k in ("store", "exposition", "gauge", "summary", "json")}
    assert len(values) == 1, {k: seen[k] for k in ("store", "exposition", "gauge", "summary",
                                                    "json")}
    return values.pop(), seen


# --------------------------------------------------------------------------- validation


def test_unknown_self_and_cyclic_alternatives_are_refused() -> None:
    assert errors(entry("a", any_of=["4.4.2-atested"]), entry("4.4.2-attested")) == [
        "checks (id a).any_of[0]: no check with id '4.4.2-atested' (did you mean "
        "'4.4.2-attested'?)"]
    assert errors(entry("a", any_of=["a"])) == [
        "checks (id a).any_of[0]: a check cannot be its own alternative"]
    assert errors(entry("a", any_of=["b"]), entry("b", any_of=["c"]),
                  entry("c", any_of=["a"])) == [
        "checks (id a).any_of: alternatives form a cycle (a -> b -> c -> a); an alternative "
        "must not lead back to the check it stands in for"]
    assert errors(entry("a", any_of=["bad id!"]))[0].startswith("checks[0] (id a).any_of[0]: string should match")
    # a chain without a cycle, and two checks sharing one alternative, are fine
    assert [s.any_of for s in build(entry("a", any_of=["b"]), entry("b", any_of=["c"]),
                                    entry("c"), entry("d", any_of=["c"]))] == \
        [("b",), ("c",), (), ("c",)]


def test_alternatives_that_can_never_stand_in_are_warnings() -> None:
    cfg = config.build({"checks": [entry("a", any_of=["b"]), entry("b", enabled=False),
                                   entry("w", "warning", any_of=["a"])]}, "test", {})
    assert lint.config_warnings(cfg, {}) == [
        "checks (id a).any_of[0]: alternative b is disabled and never stands in",
        "checks (id w).any_of: only a critical check gates go-live; its alternatives "
        "change nothing",
    ]


# --------------------------------------------------------------------------- the rule


def test_skipped_critical_with_passing_alternative_is_go_everywhere() -> None:
    now = time.time()
    old = Store(build(entry("4.4.2"), entry("4.4.2-attested", "info")))
    old.record("4.4.2", SKIP, now, 0.1)
    old.record("4.4.2-attested", PASS, now, 0.1)
    go, _ = agree(old, now)
    assert go is False  # the old rule: a critical skip is NO-GO forever

    store = Store(build(entry("4.4.2", any_of=["4.4.2-attested"]),
                        entry("4.4.2-attested", "info")))
    store.record("4.4.2", SKIP, now, 0.1)
    store.record("4.4.2-attested", PASS, now, 0.1)
    go, seen = agree(store, now)
    assert go is True
    document = seen["document"]
    assert document["blocking"] == [] and document["stood_in"] == {"4.4.2": "4.4.2-attested"}
    (row,) = [c for c in document["checks"] if c["id"] == "4.4.2"]
    assert row["status"] == "skipped" and row["satisfied_by"] == "4.4.2-attested"
    assert row["any_of"] == ["4.4.2-attested"] and row["alternatives_elsewhere"] == []
    assert "4.4.2 by 4.4.2-attested" in seen["summary_obj"].verdict()
    assert seen["summary_obj"].verdict().startswith("GO:")
    assert store.stood_in_for(now) == {"4.4.2": "4.4.2-attested"}
    assert group_causes(store.states.values(), now) == []
    table = " ".join(to_table(store.states.values()).split())
    assert "does not block go-live: alternative 4.4.2-attested passes" in table


def test_failing_alternative_keeps_no_go_and_the_cause_says_why() -> None:
    now = time.time()
    store = Store(build(entry("4.4.2", any_of=["4.4.2-attested"]),
                        entry("4.4.2-attested", "info")))
    store.record("4.4.2", SKIP, now, 0.1)
    store.record("4.4.2-attested", FAIL, now, 0.1)
    go, seen = agree(store, now)
    assert go is False and seen["document"]["blocking"] == ["4.4.2"]
    assert seen["document"]["stood_in"] == {}
    (cause,) = [c for c in group_causes(store.states.values(), now)
                if any(b.id == "4.4.2" for b in c.checks)]
    assert "no alternative passes: 4.4.2-attested is fail" in cause.example
    assert cause.reasons == ["skipped"] and cause.critical == 1
    assert "does not block" not in " ".join(to_table(store.states.values()).split())


@pytest.mark.parametrize("own", [FAIL, Outcome.errored(Reason.TIMEOUT, "slow")])
def test_fail_and_error_are_not_stood_in_for(own: Outcome) -> None:
    now = time.time()
    store = Store(build(entry("4.4.2", any_of=["4.4.2-attested"]),
                        entry("4.4.2-attested", "info")))
    store.record("4.4.2", own, now, 0.1)
    store.record("4.4.2-attested", PASS, now, 0.1)
    go, seen = agree(store, now)
    assert go is False and seen["document"]["blocking"] == ["4.4.2"]
    (row,) = [c for c in seen["document"]["checks"] if c["id"] == "4.4.2"]
    assert row["satisfied_by"] is None


def test_stale_disabled_or_missing_alternatives_do_not_stand_in() -> None:
    now = time.time()
    store = Store(build(entry("k", any_of=["a", "b"]), entry("a", "info"),
                        entry("b", "info", enabled=False)))
    store.record("k", SKIP, now, 0.1)
    store.record("a", PASS, now - 100, 0.1)  # 100 s > 3 intervals + timeout: stale
    store.record("b", PASS, now, 0.1)  # disabled: never stands in
    assert store.go_live(now) is False
    (cause,) = group_causes(store.states.values(), now)
    assert "a passed, but its result is stale; b is disabled" in cause.example
    store.record("a", PASS, now, 0.1)
    assert store.go_live(now) is True
    # the skipped check's own stale result blocks whatever its alternative says
    store.record("k", SKIP, now - 100, 0.1)
    assert store.go_live(now) is False and [s.spec.id for s in store.blockers(now)] == ["k"]
    # an alternative this store does not hold (another shard, not selected) is not assumed
    alone = Store([store.get("k").spec])
    alone.record("k", SKIP, now, 0.1)
    assert alone.go_live(now) is False
    rec = record(alone.get("k"), now)
    assert rec["alternatives_elsewhere"] == ["a", "b"] and rec["satisfied_by"] is None
    (cause,) = group_causes(alone.states.values(), now)
    assert "a runs elsewhere (another shard, or not selected): not assumed" in cause.example


def test_tracked_go_live_follows_the_alternative_without_a_new_result_of_the_check() -> None:
    store = Store(build(entry("k", any_of=["a"]), entry("a", "info")))
    exposition = Exposition(store, {}, ReloadState())
    now = time.time()
    store.record("k", SKIP, now, 0.1)
    assert exposition.go_live(now) is False
    store.record("a", PASS, now, 0.1)  # only the alternative changes
    assert exposition.go_live(now) is True
    store.record("a", FAIL, now, 0.1)
    assert exposition.go_live(now) is False
    store.record("a", PASS, now, 0.1)
    store.record("k", SKIP, now + 30, 0.1)
    # 35 s later the alternative's result is stale (3 x 10 s + 1 s), the check's is not
    assert exposition.go_live(now + 35) is False and store.go_live(now + 35) is False
    store.record("a", PASS, now + 35, 0.1)
    assert exposition.go_live(now + 35) is True and store.go_live(now + 35) is True
    # a reload that drops the any_of: the check blocks again
    store.replace_specs(build(entry("k"), entry("a", "info")))
    assert exposition.go_live(now + 35) is False and store.go_live(now + 35) is False


def test_tracked_go_live_agrees_with_the_store_with_alternatives() -> None:
    rng = random.Random(11)
    shapes = [
        [entry("c0", any_of=["c1"]), entry("c1", "info"), entry("c2", any_of=["c1", "c3"]),
         entry("c3"), entry("c4", "warning")],
        [entry("c0"), entry("c1", "info", any_of=["c3"]), entry("c2", any_of=["c3"]),
         entry("c3", "info")],
    ]
    store = Store(build(*shapes[0]))
    exposition = Exposition(store, {}, ReloadState())
    outcomes = [PASS, PASS, SKIP, SKIP, FAIL, Outcome.errored(Reason.AUTH, "denied")]
    offset = 0.0
    seen = set()
    stood_in = 0
    for step in range(800):
        now = time.time() + offset
        action = rng.random()
        if action < 0.75:
            ids = list(store.states)
            age = rng.choice([0.0, 0.0, 0.0, 5.0, 40.0])
            store.record(rng.choice(ids), rng.choice(outcomes), now - age, 0.1)
        elif action < 0.9:
            offset += rng.choice([1.0, 15.0, 35.0])
        else:
            store.replace_specs(build(*rng.choice(shapes)))
        now = time.time() + offset
        expected = store.go_live(now)
        assert exposition.go_live(now) is expected, f"step {step}"
        seen.add(expected)
        stood_in += bool(store.stood_in_for(now))
    assert seen == {True, False} and stood_in > 20


# --------------------------------------------------------------------------- shards


def test_alternatives_are_placed_on_the_shard_of_the_check_they_stand_in_for() -> None:
    specs = build(entry("4.4.2", any_of=["4.4.2-attested"]), entry("4.4.2-attested", "info"),
                  entry("x", any_of=["y"]), entry("y", any_of=["z"]), entry("z", "info"))
    keys = placement(specs)
    assert keys["4.4.2-attested"] == "4.4.2"
    assert keys["y"] == "x" and keys["z"] == "x"  # a chain follows its head
    for total in (2, 3, 5, 8):
        assert shard_of(keys["4.4.2-attested"], total) == shard_of(keys["4.4.2"], total)
    # without any_of each is placed by its own id, and some shard count splits them
    assert any(shard_of("4.4.2", t) != shard_of("4.4.2-attested", t) for t in range(2, 9))


# --------------------------------------------------------------------------- 11.3.1


async def test_the_every_critical_check_aggregate_agrees_with_go_live(tmp_path: Any) -> None:
    """11.3.1 (`aggregate`, severities: [critical]) counts a stood-in skip as passing;
    without that the aggregate would fail and hold go-live down itself."""
    from exporter.context import RuntimeContext
    from exporter.runner import run_check

    aggregate = {"id": "11.3.1", "section": "11.3", "title": "every critical check passes",
                 "kind": "aggregate", "severity": "critical", "severities": ["critical"],
                 "first_result_wait": 0}
    now = time.time()
    verdicts = {}
    for name, any_of, alternative in (("old rule", [], PASS), ("stood in", ["a"], PASS),
                                      ("failing alternative", ["a"], FAIL)):
        store = Store(build(entry("k", any_of=any_of), entry("a", "info"), aggregate))
        store.record("k", SKIP, now, 0.1)
        store.record("a", alternative, now, 0.1)
        ctx = RuntimeContext(state_dir=tmp_path / "state", checks=store.views)
        try:
            outcome, _ = await run_check(store.get("11.3.1").spec, ctx)
        finally:
            await ctx.aclose()
        store.record("11.3.1", outcome, time.time(), 0.1)
        verdicts[name] = (outcome.status, store.go_live())
    assert verdicts == {"old rule": (Status.FAIL, False), "stood in": (Status.PASS, True),
                        "failing alternative": (Status.FAIL, False)}
