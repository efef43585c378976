"""The Grafana dashboards: generated from one panel list, and the conventions they keep."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dashboards import generate
from exporter import mixin_dashboards
from tests.e2e.monitoring import PROMTOOL, ROOT, unknown_names

DASHBOARD_DIR = ROOT / "dashboards"
UIDS = ("readiness-overview", "readiness-tls", "readiness-dr", "readiness-platform")


def _committed() -> dict[str, dict[str, Any]]:
    documents = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        documents[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return documents


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, panel) for uid, doc in _committed().items() for panel in doc["panels"]]


def test_committed_json_equals_generator_output() -> None:
    built = generate.build()
    assert sorted(built) == sorted(UIDS)
    for uid, dashboard in built.items():
        path = generate.path_of(uid)
        assert path.read_text(encoding="utf-8") == generate.render(dashboard), (
            f"{path.name} is out of date: run .venv/bin/python dashboards/generate.py")
    assert sorted(p.stem for p in DASHBOARD_DIR.glob("*.json")) == sorted(UIDS)


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "readiness-tls.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--out", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("uid", UIDS)
def test_dashboard_header_and_variables(uid: str) -> None:
    doc = _committed()[uid]
    assert doc["uid"] == uid
    assert doc["schemaVersion"] >= 39
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    assert doc["panels"], uid


@pytest.mark.parametrize(("uid", "panel"), _panels(),
                         ids=[f"{u}:{p['title']}" for u, p in _panels()])
def test_panel_conventions(uid: str, panel: dict[str, Any]) -> None:
    assert panel["description"].strip()
    assert panel["fieldConfig"]["defaults"]["unit"]
    assert panel["datasource"]["uid"] == "${datasource}"
    assert panel["targets"]
    for target in panel["targets"]:
        expr = target["expr"]
        assert 'job=~"$job"' in expr, expr
        if re.search(r"\breadiness_[a-z_]+\{", expr):  # raw series: per instance too
            assert 'instance=~"$instance"' in expr, expr
        for match in re.finditer(r"\b(?:rate|increase|irate)\s*\(", expr):
            window = expr[match.end():].split("]", 1)[0]
            assert window.endswith("[$__rate_interval"), expr
        assert not unknown_names(expr), unknown_names(expr)


def test_panel_ids_and_grid_are_unique() -> None:
    for doc in _committed().values():
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        cells = set()
        for panel in doc["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, panel["title"]
                    cells.add((x, y))


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (variables replaced the way Grafana would)."""
    rules = []
    for number, (_, panel) in enumerate(_panels()):
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", "1m")
                    .replace("$job", ".+").replace("$instance", ".+"))
            rules.append({"record": f"dashboard:query{number}:{target['refId']}",
                          "expr": expr})
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "q", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_panel_is_in_a_known_dashboard() -> None:
    known = {d.uid for d in generate.DASHBOARDS}
    assert {p.dashboard for p in generate.PANELS} == known


def test_unknown_dashboard_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    stray = generate.Panel("nope", "t", "d", "none", (generate.Query("up"),))
    monkeypatch.setattr(mixin_dashboards, "PANELS", (*generate.PANELS, stray))
    with pytest.raises(ValueError, match="nope"):
        generate.build()


def test_docs_list_every_dashboard_and_panel() -> None:
    text = (ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    for meta in generate.DASHBOARDS:
        assert f"`{meta.uid}`" in text and meta.title in text, meta.uid
    for panel in generate.PANELS:
        assert f"| {panel.title} |" in text, panel.title


def _panel(uid: str, title: str) -> dict[str, Any]:
    return next(p for u, p in _panels() if u == uid and p["title"] == title)


@pytest.mark.parametrize(("uid", "title"), [
    ("readiness-platform", "Redis persistence"),
    ("readiness-dr", "Backups found, encrypted, checksum"),
    ("readiness-dr", "Last drill result"),
])
def test_zero_one_stats_show_zero_in_red(uid: str, title: str) -> None:
    defaults = _panel(uid, title)["fieldConfig"]["defaults"]
    steps = defaults["thresholds"]["steps"]
    assert steps[0] == {"color": "red", "value": None}
    assert {"color": "green", "value": 1.0} in steps
    for mapping in defaults.get("mappings", []):
        if "0" in mapping["options"]:
            assert mapping["options"]["0"]["color"] == "red"


@pytest.mark.parametrize(("uid", "title"), [
    ("readiness-overview", "Check runs per second"),
    ("readiness-overview", "Check duration"),
    ("readiness-overview", "Check errors by reason"),
    ("readiness-tls", "TLS handshake duration"),
    ("readiness-tls", "Days to certificate expiry"),
    ("readiness-platform", "Kubernetes workload coverage per check"),
    ("readiness-platform", "PDB allowed disruptions"),
    ("readiness-platform", "HPA minimum replicas"),
])
def test_per_check_series_are_limited(uid: str, title: str) -> None:
    """Panels with one series per check keep the top N (1,000 checks stay readable)."""
    for target in _panel(uid, title)["targets"]:
        assert re.match(r"(topk|bottomk)\(\d+, ", target["expr"]), target["expr"]


def test_check_tables_link_the_board_row_and_runbook() -> None:
    linked = 0
    for _, panel in _panels():
        for override in panel["fieldConfig"].get("overrides", []):
            if override["matcher"] == {"id": "byName", "options": "check"}:
                urls = [link["url"] for link in override["properties"][0]["value"]]
                assert urls[0] == "${board_url}/check/${__value.raw}"
                assert re.fullmatch(r"\$\{runbook_base\}#readiness[a-z]+", urls[1]), urls
                linked += 1
    assert linked >= 3


def test_failing_table_shows_title_and_deduplicates_replicas() -> None:
    expr = _panel("readiness-overview", "Failing and erroring critical checks")["targets"][0]["expr"]
    assert expr.startswith("(max by (check, section, status) (readiness_check_status")
    assert "group_left (title, section_title)" in expr


def test_build_applies_selector_and_urls() -> None:
    built = mixin_dashboards.build(selector='cluster="eu1"', board_url="https://board.test",
                                   runbook_url="https://docs.test/runbooks/%s.md")
    doc = built["readiness-overview"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["job"]["query"]["query"] == \
        'label_values(readiness_exporter_build_info{cluster="eu1"}, job)'
    assert variables["board_url"]["query"] == "https://board.test"
    for panel in doc["panels"]:
        for target in panel["targets"]:
            assert 'cluster="eu1", job=~"$job"' in target["expr"], target["expr"]
    links = [link["url"] for p in doc["panels"] for o in p["fieldConfig"]["overrides"]
             for link in o["properties"][0]["value"]]
    assert "https://docs.test/runbooks/readinesscriticalcheckfailing.md" in links
