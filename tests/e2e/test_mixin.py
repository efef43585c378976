"""`readiness-exporter mixin`: rules and dashboards rendered for one setup."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter import mixin
from exporter.mixin import MixinError, MixinOptions, render_rules
from tests.e2e.monitoring import PROMTOOL
from tests.e2e.stack import EXPORTER_BIN

RUNBOOK = "https://wiki.test/readiness/runbooks.md"
BOARD = "https://readiness.test"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXPORTER_BIN), "mixin", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _alerts(directory: Path) -> list[dict[str, object]]:
    text = (directory / mixin.ALERTS_FILE).read_text(encoding="utf-8")
    rules: list[dict[str, object]] = yaml.safe_load(text)["groups"][0]["rules"]
    return rules


def test_command_writes_rules_promtool_accepts_and_dashboards(tmp_path: Path) -> None:
    result = _run("--runbook-base-url", RUNBOOK, "--board-url", BOARD + "/",
                  "--selector", 'job="readiness"', "--disable", "ReadinessPdbMissing",
                  "--for", "ReadinessCriticalCheckRegressed=3m",
                  "--extra-label", "team=platform", "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = [tmp_path / mixin.RULES_FILE, tmp_path / mixin.ALERTS_FILE]
    check = subprocess.run([PROMTOOL, "check", "rules", *map(str, rule_files)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = _alerts(tmp_path)
    names = {str(r["alert"]) for r in alerts}
    assert "ReadinessPdbMissing" not in names and "ReadinessPdbBlockingEvictions" in names
    for rule in alerts:
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels["team"] == "platform"
        assert annotations["runbook_url"] == f"{RUNBOOK}#{str(rule['alert']).lower()}"
        assert "${" not in json.dumps(annotations)  # no placeholder left
        if rule["alert"] == "ReadinessCriticalCheckRegressed":
            assert rule["for"] == "3m"
            assert annotations["board_url"] == BOARD + "/check/{{ $labels.check }}"
        else:
            assert rule["for"] != "3m"
    # the selector reaches every raw series of every rule
    text = (tmp_path / mixin.RULES_FILE).read_text(encoding="utf-8") + \
        (tmp_path / mixin.ALERTS_FILE).read_text(encoding="utf-8")
    assert ", }" not in text
    exprs = [str(rule["expr"]) for path in rule_files
             for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
             for rule in group["rules"]]
    selectors = [m for e in exprs for m in re.finditer(r"\b(readiness_[a-z0-9_]+|up)\{", e)]
    assert len(selectors) > 40
    for match in selectors:
        assert match.string[match.end():].startswith('job="readiness"'), match.group(0)
    dashboards = sorted(p.name for p in (tmp_path / "dashboards").glob("*.json"))
    assert dashboards == ["readiness-dr.json", "readiness-overview.json",
                          "readiness-platform.json", "readiness-tls.json"]
    overview = json.loads((tmp_path / "dashboards" / "readiness-overview.json").read_text())
    variables = {v["name"]: v for v in overview["templating"]["list"]}
    assert variables["board_url"]["query"] == BOARD
    assert variables["runbook_base"]["query"] == RUNBOOK


def test_rendering_with_real_urls_leaves_no_placeholder() -> None:
    """Only the reference rendering carries the ${...} placeholders."""
    rendered = render_rules(MixinOptions(runbook_base_url=RUNBOOK, board_url=BOARD))
    assert all("${RUNBOOK_BASE_URL}" not in text for text in rendered.values())
    assert "readiness:phase_live:max == 1" in rendered[mixin.ALERTS_FILE]


@pytest.mark.parametrize(("args", "message"), [
    (["--disable", "ReadinessNoSuchAlert"], "--disable: unknown alert ReadinessNoSuchAlert"),
    (["--for", "ReadinessCheckStale=ten minutes"], "not a Prometheus duration"),
    (["--extra-label", "severity=high"], "--extra-label severity"),
])
def test_bad_options_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run("--runbook-base-url", RUNBOOK, "--board-url", BOARD, *args,
                  "--output", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stdout
    assert not (tmp_path / mixin.ALERTS_FILE).exists()


def test_pair_options_need_name_and_value(tmp_path: Path) -> None:
    result = _run("--runbook-base-url", RUNBOOK, "--board-url", BOARD, "--for", "nothing",
                  "--output", str(tmp_path))
    assert result.returncode == 2
    assert "--for expects NAME=VALUE" in result.stderr


def test_runbook_pattern_and_selector_braces() -> None:
    options = MixinOptions(runbook_base_url="https://r.test/%s.md", board_url=BOARD,
                           selector='{job="a", env="prod",}')
    assert options.runbook_url("ReadinessCheckStale") == "https://r.test/readinesscheckstale.md"
    text = render_rules(options)[mixin.RULES_FILE]
    assert 'readiness_check_stale{job="a", env="prod"}' in text
    assert 'readiness_phase{job="a", env="prod", phase="live"}' in text


def test_unknown_for_override_is_rejected() -> None:
    with pytest.raises(MixinError, match="--for: unknown alert"):
        render_rules(MixinOptions(runbook_base_url=RUNBOOK, board_url=BOARD,
                                  for_overrides={"Nope": "5m"}))
