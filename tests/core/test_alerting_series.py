"""The series alerts join on: check info, enabled, staleness and the readiness phase."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import config
from exporter.config import ConfigError
from exporter.daemon import Runtime, families_of
from exporter.metrics import Exposition, ReadinessCollector, ReloadState, section_title_of
from exporter.model import CheckSpec, Outcome
from exporter.store import Store
from tests.support.kinds import BEHAVIOUR


def spec(check_id: str, section: str = "1.2", **extra: Any) -> CheckSpec:
    return BEHAVIOUR.spec.model_validate({
        "id": check_id, "section": section, "title": f"Title of {check_id}",
        "kind": "test_behaviour", "severity": "critical", "interval": 30, "timeout": 10,
        **extra})


def values(exposition: Exposition, name: str, now: float) -> dict[tuple[tuple[str, str], ...],
                                                                   float]:
    text = exposition.render(False, now).decode()
    return {tuple(sorted(s.labels.items())): s.value
            for f in parse_text(text) for s in f.samples if s.name == name}


def test_info_carries_title_section_title_and_kind(behaviour_kind: None) -> None:
    store = Store([spec("a", "1.2"), spec("b", "11.1.x"), spec("c", "99")])
    info = values(Exposition(store, {}, ReloadState()), "readiness_check_info", time.time())
    assert info == {
        (("check", "a"), ("kind", "test_behaviour"), ("section", "1.2"),
         ("section_title", "Configuration"), ("title", "Title of a")): 1.0,
        (("check", "b"), ("kind", "test_behaviour"), ("section", "11.1.x"),
         ("section_title", "Day Before Go-Live"), ("title", "Title of b")): 1.0,
        (("check", "c"), ("kind", "test_behaviour"), ("section", "99"),
         ("section_title", ""), ("title", "Title of c")): 1.0,
    }
    assert section_title_of("2.2") == "Network Security"


def test_stale_follows_the_exporters_definition(behaviour_kind: None) -> None:
    # stale after 2 intervals (30 s) plus the 10 s timeout = 70 s, not 3 * 30 s
    store = Store([spec("ran"), spec("off", enabled=False), spec("never")],
                  stale_after_intervals=2.0)
    start = time.time()
    store.record("ran", Outcome.passed("ok"), start, 0.1)
    store.record("off", Outcome.skipped("disabled"), start, 0.0)
    exposition = Exposition(store, {}, ReloadState())

    def stale(now: float) -> dict[str, float]:
        return {dict(k)["check"]: v for k, v in
                values(exposition, "readiness_check_stale", now).items()}

    assert stale(start + 70) == {"ran": 0.0, "off": 0.0, "never": 1.0}
    assert stale(start + 71) == {"ran": 1.0, "off": 0.0, "never": 1.0}
    assert stale(start + 10_000)["off"] == 0.0  # disabled: never stale
    # the same verdict as the go-live computation
    assert store.get("ran").is_fresh(start + 70, 2.0)
    assert not store.get("ran").is_fresh(start + 71, 2.0)
    enabled = {dict(k)["check"]: v for k, v in
               values(exposition, "readiness_check_enabled", start).items()}
    assert enabled == {"ran": 1.0, "off": 0.0, "never": 1.0}


def test_reference_collector_has_the_same_new_series(behaviour_kind: None) -> None:
    store = Store([spec("a"), spec("off", enabled=False)])
    store.record("a", Outcome.passed("ok"), time.time(), 0.1)
    reload = ReloadState(phase="go-live")
    exposition = Exposition(store, families_of(s.spec for s in store.states.values()), reload)
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(store, {}, reload))
    names = ("readiness_check_info", "readiness_check_enabled", "readiness_check_stale",
             "readiness_phase")
    served = {(s.name, tuple(sorted(s.labels.items())), s.value)
              for f in parse_text(exposition.render(False).decode()) for s in f.samples
              if s.name in names}
    expected = {(s.name, tuple(sorted(s.labels.items())), s.value)
                for f in parse_text(generate_latest(registry).decode()) for s in f.samples
                if s.name in names}
    assert served == expected
    assert ("readiness_phase", (("phase", "go-live"),), 1.0) in served
    assert ("readiness_phase", (("phase", "live"),), 0.0) in served


def _write(path: Path, phase: str) -> None:
    path.write_text(
        f"settings:\n  phase: {phase}\n  first_round_spread: 0\n"
        "checks:\n  - {id: a, section: '1.2', title: A, kind: file, path: /nonexistent}\n",
        encoding="utf-8")


async def test_phase_comes_from_settings_and_follows_reloads(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yaml"
    _write(path, "live")
    runtime = Runtime(config.load(path), path)
    phase = values(runtime.exposition, "readiness_phase", time.time())
    assert phase == {(("phase", "preparing"),): 0.0, (("phase", "go-live"),): 0.0,
                     (("phase", "live"),): 1.0}
    _write(path, "go-live")
    assert await runtime.reload() == []
    runtime.exposition.max_age = 0.0
    phase = values(runtime.exposition, "readiness_phase", time.time())
    assert phase[(("phase", "go-live"),)] == 1.0
    assert phase[(("phase", "live"),)] == 0.0
    await runtime.ctx.aclose()


def test_phase_defaults_to_preparing_and_rejects_unknown_values(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yaml"
    path.write_text("checks: []\n", encoding="utf-8")
    assert config.load(path).settings.phase == "preparing"
    _write(path, "production")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert any("settings.phase" in error for error in caught.value.errors), caught.value.errors


async def test_served_staleness_flips_without_a_new_outcome(behaviour_kind: None) -> None:
    """The cached body follows the clock: a check turns stale with no new run."""
    store = Store([spec("a")], stale_after_intervals=2.0)
    store.record("a", Outcome.passed("ok"), time.time() - 69.0, 0.1)  # stale after 70 s
    exposition = Exposition(store, {}, ReloadState(), max_age=0.0)
    first = (await exposition.checks_part_async(False)).body
    assert b'readiness_check_stale{check="a"} 0.0' in first
    await asyncio.sleep(1.1)
    second = (await exposition.checks_part_async(False)).body
    assert b'readiness_check_stale{check="a"} 1.0' in second
    store.record("a", Outcome.passed("ok"), time.time(), 0.1)
    third = (await exposition.checks_part_async(False)).body
    assert b'readiness_check_stale{check="a"} 0.0' in third
