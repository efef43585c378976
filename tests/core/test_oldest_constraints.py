"""scripts/oldest_constraints.py pins every dependency at its pyproject.toml lower bound."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "oldest_constraints.py"


def _pins(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                            text=True, check=True, cwd=ROOT, timeout=60)
    return result.stdout.splitlines()


def test_extras_markers_and_upper_bounds_keep_only_the_lower_bound(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["APScheduler>=3.10,<4", "moto[server]>=5.0",'
        ' "tomli>=2.0; python_version < \'3.11\'", "unbounded", "exact==1.2"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=8.0"]\n')
    assert _pins(str(tmp_path / "pyproject.toml")) == [
        "apscheduler==3.10", "moto==5.0", "tomli==2.0"]
    assert "pytest==8.0" in _pins(str(tmp_path / "pyproject.toml"), "--extra", "test")


def test_every_runtime_dependency_of_the_project_is_pinned() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _pins()
    assert len(pins) == len(dependencies)
    assert "redis==5.0.1" in pins  # redis.asyncio's aclose() arrived in 5.0.1
    assert "kubernetes-asyncio==32.3.2" in pins  # leaderelection.resourcelock: 32.3.2
    assert "detect-secrets==1.5" in pins  # plugins.gitlab_token arrived in 1.5
    assert "zxcvbn==4.5.0" in pins  # zxcvbn(..., max_length=) arrived in 4.5.0
    assert "pyyaml==6.0.4" in pins  # its libyaml names too-deep nesting (config_limits)
