"""`check` on a terminal: colour, NO_COLOR, width, progress line; run on a real pty."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.core.pty_run import ANSI, COLOUR_SGR, run_on_terminal
from tests.core.test_cli import CONFIG

WEAK = "wk-Zq7-secret"
LONG_TITLE = ("Secrets stored in a secrets manager, not in code or config, with no secret-like "
              "values in any configured file or ConfigMap of the application")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    app = tmp_path / "app.yaml"
    app.write_text("database:\n  pool_size: 20\n")
    path = tmp_path / "readiness.yaml"
    path.write_text(CONFIG.format(app=app).replace("title: pool settings",
                                                   f"title: {LONG_TITLE}"))
    return path


def test_colour_and_verdict_on_a_terminal(config_file: Path) -> None:
    result = run_on_terminal(["check", "--config.file", str(config_file)],
                             {"JWT_SECRET": WEAK}, columns=80)
    assert result.returncode == 1
    assert COLOUR_SGR.search(result.raw), result.raw
    text = " ".join(line.strip() for line in result.visible_lines)
    assert "NO-GO: 1 critical failing, 0 erroring; 1 non-critical failing or erroring; 0 pass; " \
        "1 disabled" in text
    assert WEAK not in result.raw


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": "true"}, {"TERM": "dumb"}],
                         ids=["NO_COLOR=1", "NO_COLOR=true", "TERM=dumb"])
def test_no_color_is_respected(config_file: Path, env: dict[str, str]) -> None:
    result = run_on_terminal(["check", "--config.file", str(config_file)],
                             {"JWT_SECRET": WEAK, **env}, columns=80)
    assert result.returncode == 1
    assert not COLOUR_SGR.search(result.raw), result.raw
    assert any("NO-GO" in line for line in result.visible_lines)


def test_an_empty_no_color_keeps_colour(config_file: Path) -> None:
    # no-color.org: only a non-empty NO_COLOR turns colour off
    result = run_on_terminal(["check", "--config.file", str(config_file)],
                             {"JWT_SECRET": WEAK, "NO_COLOR": ""}, columns=80)
    assert COLOUR_SGR.search(result.raw)


def test_columns_fit_the_terminal_width(config_file: Path) -> None:
    heights = {}
    for columns in (60, 120):
        result = run_on_terminal(["check", "--config.file", str(config_file)],
                                 {"JWT_SECRET": WEAK}, columns=columns)
        assert max(len(line.rstrip()) for line in result.visible_lines) <= columns
        assert any("Secrets stored in a" in line for line in result.visible_lines)
        heights[columns] = len(result.visible_lines)
    # the same rows take more lines on the narrow terminal: wrapped, not cut off
    assert heights[60] > heights[120]


def test_failures_come_first_and_passing_rows_are_cut_to_one_line(config_file: Path) -> None:
    app_dir = config_file.parent
    (app_dir / "app.yaml").write_text("database:\n  pool_size: 50\n")
    result = run_on_terminal(["check", "--config.file", str(config_file)],
                             {"JWT_SECRET": WEAK}, columns=60)
    text = "\n".join(result.visible_lines)
    assert text.index("Needs attention (1)") < text.index("Passing (1)")
    passing = [line for line in result.visible_lines if line.lstrip().startswith("PASS")]
    assert len(passing) == 1 and passing[0].rstrip().endswith("…")


def test_progress_line_on_the_terminal_is_erased(config_file: Path) -> None:
    result = run_on_terminal(["check", "--config.file", str(config_file)],
                             {"JWT_SECRET": WEAK}, columns=80)
    assert re.search(r"checking [0-3]/3", ANSI.sub("", result.raw))  # drawn while running
    assert not any("checking" in line for line in result.visible_lines)  # then erased
    assert result.visible_lines[0] == "Needs attention (2)"


def test_no_progress_or_colour_when_piped(config_file: Path) -> None:
    import subprocess

    from tests.core.conftest import EXE

    result = subprocess.run([str(EXE), "check", "--config.file", str(config_file)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "JWT_SECRET": WEAK,
                                 "TERM": "xterm-256color"})
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr
    assert "checking" not in result.stderr
