"""Every `readiness-exporter ...` command in README.md's code blocks runs as written.

Each runs through bash with the README's `[.venv/bin/]readiness-exporter` replaced by this
environment's script, in a scratch directory that sees the repository's `examples/`
(so `> readiness.xml` writes there). `check` may exit 0 or 1 (go or no-go), never 2
(a configuration or usage error). A `serve` command must start listening and stop
cleanly on SIGTERM; it is given a free port instead of 9847, which may be taken.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.core.conftest import EXE, REPO
from tests.support.servers import free_port, wait_for_port

COMMAND = re.compile(r"^(?:\.venv/bin/)?readiness-exporter ")
FENCE = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_commands() -> list[str]:
    """Commands of the README's shell blocks, continuation lines joined, comments cut."""
    commands = []
    for block in FENCE.findall((REPO / "README.md").read_text()):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if COMMAND.match(command):
                commands.append(command)
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands() -> None:
    verbs = {c.split()[1] for c in COMMANDS}
    assert {"check", "serve", "validate", "list", "explain", "schema"} <= verbs, COMMANDS


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


def _bash(command: str) -> list[str]:
    return ["bash", "-c", COMMAND.sub(f"{EXE} ", command, count=1)]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[1] != "serve"],
                         ids=lambda c: " ".join(c.split()[1:4]))
def test_readme_command_runs_as_written(command: str, scratch: Path) -> None:
    result = subprocess.run(_bash(command), cwd=scratch, capture_output=True,
                            text=True, timeout=240, env={"PATH": os.environ["PATH"]})
    allowed = (0, 1) if command.split()[1] == "check" else (0,)
    assert result.returncode in allowed, f"{command}\n{result.stderr[-2000:]}"
    if ">" not in command:
        assert result.stdout.strip(), command


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[1] == "serve"],
                         ids=lambda c: " ".join(c.split()[1:4]))
def test_readme_serve_command_starts(command: str, scratch: Path) -> None:
    port = free_port()
    command = re.sub(r"--web\.listen-address \S+", f"--web.listen-address 127.0.0.1:{port}",
                     command)
    proc = subprocess.Popen(_bash(command), cwd=scratch, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={"PATH": os.environ["PATH"]})
    try:
        wait_for_port(port, timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
