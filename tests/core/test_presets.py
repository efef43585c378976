"""The bundled presets and examples load, and the production preset covers the checklist."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from exporter import config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# One id per line of shared/coverage.md (the checklist coverage map).
COVERAGE_IDS = (HERE / "coverage_ids.txt").read_text().split()


def test_production_preset_has_a_check_for_every_checklist_item() -> None:
    cfg = config.load(REPO / "examples" / "qbitel-production.yaml", {})
    items = Counter(c.item_id for c in cfg.checks)
    missing = [i for i in COVERAGE_IDS if i not in items]
    assert len(COVERAGE_IDS) == 98
    assert not missing, f"checklist items without a check: {missing}"
    unknown = sorted(set(items) - set(COVERAGE_IDS))
    assert not unknown, f"checks whose item is not a checklist id: {unknown}"


def test_disabled_preset_checks_say_why() -> None:
    cfg = config.load(REPO / "examples" / "qbitel-production.yaml", {})
    silent = [c.id for c in cfg.checks if not c.enabled and not c.disabled_reason]
    assert not silent


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_examples_load_in_an_empty_environment(path: Path) -> None:
    cfg = config.load(path, {})
    assert cfg.checks


def test_preset_sections_match_item_ids() -> None:
    cfg = config.load(REPO / "examples" / "qbitel-production.yaml", {})
    for check in cfg.checks:
        item = check.item_id
        assert item == check.section or item.startswith(check.section + ".") \
            or check.section.startswith(item.split(".")[0]), (check.id, check.section)
