"""The served exposition equals the reference collector, parses, passes promtool, and every
metric is documented."""

from __future__ import annotations

import gzip
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import registry
from exporter.daemon import families_of
from exporter.metrics import CORE_FAMILIES, Exposition, ReadinessCollector, ReloadState
from exporter.model import CheckSpec, Measurement, Outcome, Reason
from exporter.store import Store
from tests.support.kinds import BEHAVIOUR

REPO = Path(__file__).resolve().parents[2]


def make_spec(check_id: str, severity: str = "critical", **extra: Any) -> CheckSpec:
    return BEHAVIOUR.spec.model_validate({
        "id": check_id, "section": "2.2", "title": f"check {check_id}", "kind": "test_behaviour",
        "severity": severity, "interval": 30, **extra})


def populated_store() -> Store:
    specs = [make_spec("a"), make_spec("b", "warning"), make_spec("c"), make_spec("never-run")]
    store = Store(specs)
    now = time.time()
    store.record("a", Outcome.passed("ok", (
        Measurement("readiness_test_sample_value", 2.0, {"shape": 'quote " back \\ nl \n'}),)),
        now, 0.25)
    store.record("b", Outcome.failed("no", (
        Measurement("readiness_test_sample_value", float("inf"), {"shape": "square"}),)), now, 1.0)
    store.record("c", Outcome.errored(Reason.TIMEOUT, "slow"), now, 10.0)
    store.record("c", Outcome.errored(Reason.CONNECT, "refused"), now, 0.1)
    return store


def samples(families: Any) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for f in families for s in f.samples if not s.name.endswith("_created")}


@pytest.fixture
def setup(behaviour_kind: None) -> tuple[Store, Exposition, CollectorRegistry]:
    store = populated_store()
    reload = ReloadState(successful=False, last_success=1700000000.0)
    families = families_of(s.spec for s in store.states.values())
    exposition = Exposition(store, families, reload)
    reference = CollectorRegistry()
    reference.register(ReadinessCollector(store, families, reload))
    return store, exposition, reference


def test_served_text_equals_reference_collector(setup: Any) -> None:
    store, exposition, reference = setup
    served = samples(parse_text(exposition.render(False).decode()))
    expected = samples(parse_text(generate_latest(reference).decode()))
    assert served == expected
    assert ("readiness_check_status", (("check", "c"), ("section", "2.2"),
            ("severity", "critical"), ("status", "error")), 1.0) in served
    assert ("readiness_check_errors_total", (("check", "c"), ("reason", "timeout")), 1.0) in served
    assert ("readiness_test_sample_value", (("check", "a"), ("shape", 'quote " back \\ nl \n')),
            2.0) in served
    assert ("readiness_config_last_reload_successful", (), 0.0) in served
    assert ("readiness_go_live", (), 0.0) in served
    # A check that has not run yet has no status series but reports its interval.
    assert not any(n == "readiness_check_status" and ("check", "never-run") in labels
                   for n, labels, _ in served)


def test_exactly_one_status_per_check(setup: Any) -> None:
    store, exposition, _ = setup
    per_check: dict[str, float] = {}
    for name, labels, value in samples(parse_text(exposition.render(False).decode())):
        if name == "readiness_check_status":
            check = dict(labels)["check"]
            per_check[check] = per_check.get(check, 0) + value
    assert per_check == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_openmetrics_parses_and_matches(setup: Any) -> None:
    store, exposition, reference = setup
    body = exposition.render(True).decode()
    assert body.endswith("# EOF\n")
    families = list(parse_openmetrics(body))
    types = {f.name: f.type for f in families}
    assert types["readiness_check_runs"] == "counter"
    assert types["readiness_exporter_build"] == "info"
    assert samples(families) == samples(parse_text(exposition.render(False).decode()))


def test_cached_body_follows_updates_and_gzip_round_trips(setup: Any) -> None:
    store, exposition, _ = setup
    first = exposition.render(False)
    assert exposition.render(False) == first
    store.record("never-run", Outcome.passed("ok"), time.time(), 0.5)
    second = exposition.render(False).decode()
    assert 'readiness_check_status{check="never-run",section="2.2",severity="critical",' \
        'status="pass"} 1.0' in second
    for openmetrics in (False, True):
        part = exposition.checks_part(openmetrics)
        tail = exposition.tail(openmetrics)
        compressed = exposition.gzip_body(openmetrics, part, tail)
        again = exposition.gzip_body(openmetrics, part, tail)
        assert gzip.decompress(compressed) == part.body + tail
        assert gzip.decompress(again) == part.body + tail


def test_go_live_needs_every_enabled_critical_check_passing_and_fresh(behaviour_kind: None) -> None:
    store = Store([make_spec("x"), make_spec("y", "warning"),
                   make_spec("off", enabled=False)])
    now = time.time()
    assert not store.go_live(now)
    store.record("x", Outcome.passed("ok"), now, 0.1)
    store.record("y", Outcome.failed("warning only"), now, 0.1)
    assert store.go_live(now)
    assert not store.go_live(now + 3 * 30 + 10 + 1)  # stale after 3 intervals + timeout
    store.record("x", Outcome.errored(Reason.AUTH, "denied"), now, 0.1)
    assert not store.go_live(now)


def test_promtool_check_metrics_finds_no_problem(setup: Any) -> None:
    _, exposition, _ = setup
    result = subprocess.run(["promtool", "check", "metrics"], input=exposition.render(False),
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def documented_metric_names() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    for page in sorted((REPO / "docs" / "probes").glob("*.md")):
        text += page.read_text(encoding="utf-8")
    return set(re.findall(r"`(readiness_[a-z0-9_]+)`", text))


def test_every_metric_is_documented() -> None:
    documented = documented_metric_names()
    declared = {f.name for f in CORE_FAMILIES}
    for name in registry.probe_kind_names():
        declared |= {f.name for f in registry.probe_kind(name).metrics}
    missing = sorted(declared - documented)
    assert not missing, f"not in docs/metrics.md or docs/probes/*.md: {missing}"


def test_family_names_follow_the_contract() -> None:
    for name in registry.probe_kind_names():
        for family in registry.probe_kind(name).metrics:
            assert re.fullmatch(r"readiness_[a-z0-9_]+", family.name), family.name
            assert "check" not in family.labels, f"{family.name}: 'check' is added by the exporter"
            if family.type == "counter":
                assert family.name.endswith("_total"), family.name
            assert family.help.strip(), family.name


def test_a_reload_notifies_once_with_only_the_changed_checks(setup: Any) -> None:
    store, exposition, _ = setup
    calls: list[list[str]] = []

    def listener(changed: Any) -> None:
        states = changed if isinstance(changed, list | tuple) else [changed]  # any shape
        calls.append([s.spec.id for s in states])

    store.subscribe(listener)
    specs = [s.spec for s in store.states.values()]
    before, generation = exposition.render(False), store.generation

    # The same configuration again (new, equal objects): nothing to tell, nothing to redo.
    store.replace_specs([make_spec(s.id, s.severity.value) for s in specs])
    assert calls == [] and store.generation == generation
    assert exposition.render(False) == before

    # One check changed, one removed, one added: one notification naming two checks.
    changed = make_spec("b", "critical")
    store.replace_specs([specs[0], changed, specs[2], make_spec("new")])
    assert calls == [["b", "new"]] and store.generation == generation + 1
    body = exposition.render(False).decode()
    assert 'check="b",section="2.2",severity="critical"' in body
    assert 'check="never-run"' not in body and 'readiness_check_runs_total{check="new"} 0.0' in body
    assert set(exposition._lines) == {"a", "b", "c", "new"}  # the removed check's lines dropped


def test_skipped_runs_are_exposed_like_the_reference_collector(setup: Any) -> None:
    store, exposition, reference = setup
    for _ in range(3):
        store.record_skipped("a", "overlap")
    store.record_skipped("a", "late")
    store.record_skipped("gone", "overlap")  # removed by a reload meanwhile: ignored
    served = samples(parse_text(exposition.render(False).decode()))
    assert served == samples(parse_text(generate_latest(reference).decode()))
    skipped = {(dict(labels)["check"], dict(labels)["reason"]): value
               for name, labels, value in served
               if name == "readiness_check_skipped_runs_total"}
    assert skipped == {("a", "overlap"): 3.0, ("a", "late"): 1.0}
    families = {f.name: f.type for f in parse_openmetrics(exposition.render(True).decode())}
    assert families["readiness_check_skipped_runs"] == "counter"


def test_unchanged_families_keep_the_rendered_lines(setup: Any) -> None:
    store, exposition, _ = setup
    families = families_of(s.spec for s in store.states.values())
    lines = exposition._lines["a"]
    exposition.set_families(dict(families))
    assert exposition._lines["a"] is lines
    exposition.set_families({})
    assert "readiness_test_sample_value" not in exposition.render(False).decode()
