"""The Grafana dashboards: generated from one panel list, and the conventions they keep."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dashboards import generate
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
        assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, expr
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
    monkeypatch.setattr(generate, "PANELS", (*generate.PANELS, stray))
    with pytest.raises(ValueError, match="nope"):
        generate.build()


def test_docs_list_every_dashboard_and_panel() -> None:
    text = (ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    for meta in generate.DASHBOARDS:
        assert f"`{meta.uid}`" in text and meta.title in text, meta.uid
    for panel in generate.PANELS:
        assert f"| {panel.title} |" in text, panel.title
