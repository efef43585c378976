"""Disabled is its own status: JSON, metrics and the board tell it from a probe's skip."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import config
from exporter.cli import run_once
from exporter.daemon import families_of
from exporter.metrics import Exposition, ReloadState
from exporter.render.json_output import RunInfo, to_json
from exporter.render.summary import summarise

CONFIG = """
checks:
  - id: broker
    section: "3.3"
    title: broker (if applicable)
    kind: env
    required: [HOME_OF_NOTHING]
    enabled: false
    disabled_reason: if applicable
  - id: vars
    section: "6.1"
    title: required variables
    kind: env
    required: [PATH]
"""


def run(tmp_path: Path) -> tuple[config.Config, list]:  # type: ignore[type-arg]
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    cfg = config.load(path, {})
    store = asyncio.run(run_once(cfg, cfg.checks))
    return cfg, list(store.states.values())


def test_json_reports_disabled_not_skipped(tmp_path: Path) -> None:
    cfg, states = run(tmp_path)
    document = json.loads(to_json(states, RunInfo(source=cfg.source, release=None)))
    records = {c["id"]: c for c in document["checks"]}
    assert records["broker"]["status"] == "disabled"
    assert records["broker"]["message"] == "disabled: if applicable"
    assert document["counts"]["by_status"]["disabled"] == 1
    assert document["counts"]["by_status"]["skipped"] == 0
    assert summarise(states).verdict().endswith("1 pass; 1 disabled")


def test_state_set_has_a_disabled_state(tmp_path: Path) -> None:
    _, states = run(tmp_path)
    from exporter.store import Store

    store = Store([s.spec for s in states], 3.0)
    for state in states:
        assert state.outcome is not None
        store.record(state.spec.id, state.outcome, 1.0, 0.0)
    exposition = Exposition(store, families_of(s.spec for s in states), ReloadState())
    samples = {(s.labels["check"], s.labels["status"]): s.value
               for f in parse_text(exposition.render(False).decode())
               if f.name == "readiness_check_status" for s in f.samples}
    assert samples[("broker", "disabled")] == 1.0
    assert samples[("broker", "skipped")] == 0.0
    assert samples[("vars", "disabled")] == 0.0
    assert samples[("vars", "pass")] == 1.0
