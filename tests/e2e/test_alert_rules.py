"""The shipped Prometheus rule files: promtool, conventions, runbook anchors."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.monitoring import (
    ALERTS_DIR,
    ALERTS_FILE,
    PROMTOOL,
    RULES_FILE,
    RUNBOOKS,
    alert_rules,
    load_rules,
    unknown_names,
)

# The alerts issue 7 asks for; each must exist (more may).
REQUIRED_ALERTS = {
    "ReadinessCriticalCheckFailing", "ReadinessCheckErroring", "ReadinessCheckStale",
    "ReadinessExporterDown", "ReadinessExporterAbsent", "ReadinessCertificateExpiringSoon",
    "ReadinessCertificateExpiringCritical", "ReadinessCertificateExpired",
    "ReadinessLegacyTlsAccepted", "ReadinessRecoveryPointTooOld",
    "ReadinessRestoreDrillSlowerThanRto", "ReadinessRestoreDrillOverdue",
    "ReadinessPdbMissing", "ReadinessPdbBlockingEvictions", "ReadinessReplicationLag",
    "ReadinessRedisPersistenceFailing", "ReadinessGoLiveBlocked",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ALERTS_DIR.parent)


def test_promtool_check_rules_is_clean() -> None:
    result = _promtool("check", "rules", str(RULES_FILE), str(ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    tests = sorted(str(p) for p in (ALERTS_DIR / "tests").glob("*.yml"))
    assert len(tests) >= 4
    result = _promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes `promtool test rules` fail (the runner is not a no-op)."""
    original = (ALERTS_DIR / "tests" / "checks.test.yml").read_text(encoding="utf-8")
    broken = original.replace("- eval_time: 5m\n", "- eval_time: 4m\n", 1)
    assert broken != original
    broken = broken.replace("../readiness-exporter.", f"{ALERTS_DIR}/readiness-exporter.")
    copy = tmp_path / "broken.test.yml"
    copy.write_text(broken, encoding="utf-8")
    assert _promtool("test", "rules", str(copy)).returncode != 0
    copy.write_text(original.replace("../readiness-exporter.",
                                     f"{ALERTS_DIR}/readiness-exporter."), encoding="utf-8")
    assert _promtool("test", "rules", str(copy)).returncode == 0


def test_group_names() -> None:
    assert [g["name"] for g in load_rules(RULES_FILE)] == ["readiness-exporter.rules"]
    assert [g["name"] for g in load_rules(ALERTS_FILE)] == ["readiness-exporter.alerts"]


def test_required_alerts_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= REQUIRED_ALERTS, REQUIRED_ALERTS - names


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_alert_conventions(rule: dict[str, object]) -> None:
    name = str(rule["alert"])
    assert re.fullmatch(r"Readiness(?:[A-Z][a-z0-9]*)+", name), name
    labels = rule["labels"]
    assert isinstance(labels, dict) and labels.get("severity") in ("critical", "warning")
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), "every alert has a for:"
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    assert annotations.get("summary")
    assert "{{" in str(annotations.get("description", "")), "description is templated"
    url = str(annotations.get("runbook_url", ""))
    assert url.endswith(f"docs/runbooks.md#{name.lower()}"), url


def _anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the headings of a Markdown text."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_runbook_anchor_exists() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    anchors = _anchors(text)
    for rule in alert_rules():
        anchor = str(rule["annotations"]["runbook_url"]).rsplit("#", 1)[1]
        assert anchor in anchors, f"docs/runbooks.md has no section #{anchor}"
        section = text.split(f"## {rule['alert']}", 1)[1].split("\n## ", 1)[0]
        for part in ("Meaning", "Impact", "Diagnosis", "Fix"):
            assert f"**{part}**" in section, f"{rule['alert']}: no {part}"


def test_anchor_helper_finds_only_headings() -> None:
    assert _anchors("## ReadinessFoo\ntext #bar\n### A b") == {"readinessfoo", "a-b"}


def test_rules_use_only_exported_metrics() -> None:
    for path in (RULES_FILE, ALERTS_FILE):
        for group in load_rules(path):
            for rule in group["rules"]:
                assert not unknown_names(rule["expr"]), (rule, unknown_names(rule["expr"]))


def test_unknown_names_are_caught() -> None:
    assert unknown_names("readiness_made_up_total + readiness:nope:ratio") == {
        "readiness_made_up_total", "readiness:nope:ratio"}
    assert not unknown_names("readiness_check_status + readiness:section_pass:ratio")
