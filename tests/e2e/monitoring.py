"""Shared helpers of the alert-rule and dashboard tests: the shipped files and the metric
names the exporter can emit."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from exporter import registry
from exporter.metrics import CORE_FAMILIES

ROOT = Path(__file__).resolve().parents[2]
ALERTS_DIR = ROOT / "alerts"
RULES_FILE = ALERTS_DIR / "readiness-exporter.rules.yml"
ALERTS_FILE = ALERTS_DIR / "readiness-exporter.alerts.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
PROMTOOL = "/usr/bin/promtool"

METRIC_RE = re.compile(r"\breadiness_[a-z0-9_]+\b")
RECORDED_RE = re.compile(r"\breadiness:[a-z0-9_:]+\b")


@cache
def exported_metric_names() -> frozenset[str]:
    """Every metric family the core and the registered probe kinds declare."""
    names = {family.name for family in CORE_FAMILIES}
    for kind in registry.PROBE_KINDS:
        names.update(family.name for family in registry.probe_kind(kind).metrics)
    return frozenset(names)


def load_rules(path: Path) -> list[dict[str, Any]]:
    """The groups of a rule file."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def recorded_names() -> set[str]:
    """Names of the shipped recording rules."""
    return {rule["record"] for group in load_rules(RULES_FILE) for rule in group["rules"]}


def alert_rules() -> list[dict[str, Any]]:
    """Every shipped alerting rule."""
    return [rule for group in load_rules(ALERTS_FILE) for rule in group["rules"]]


def unknown_names(expr: str) -> set[str]:
    """Metric and recording-rule names in `expr` that nothing produces."""
    unknown = set(METRIC_RE.findall(expr)) - exported_metric_names()
    unknown |= set(RECORDED_RE.findall(expr)) - recorded_names()
    return unknown
