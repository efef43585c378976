"""The container image recipe, without a container engine.

The Dockerfile is parsed; its builder stage's COPY sources are copied into a temporary
build context, and its RUN steps (docker/install.sh) are run with the image paths mapped
to temporary directories: the wheels are built, a fresh virtual environment is made from
them offline, and `readiness-exporter serve` (the image's ENTRYPOINT and CMD) is started
from it on a loopback port.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL = "install-readiness-exporter"


@dataclass
class Stage:
    """One FROM ... section of the Dockerfile: its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            for key, value in args.items():
                base = base.replace("${" + key + "}", value)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


def _install_steps(stage: Stage) -> list[list[str]]:
    """The `install-readiness-exporter ...` commands of a stage's RUN lines."""
    steps = []
    for run in stage.all("RUN"):
        words = shlex.split(run)
        words = [w for w in words if not w.startswith("--mount=")]
        for command in " ".join(words).split("&&"):
            parts = command.split()
            if parts and parts[0] == INSTALL:
                steps.append(parts[1:])
    return steps


@dataclass
class Installed:
    context: Path
    wheels: Path
    venv: Path
    workdir: Path


@pytest.fixture(scope="module")
def installed(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Run the Dockerfile's build steps outside a container."""
    tmp = tmp_path_factory.mktemp("image")
    builder, final = stages[0], stages[-1]
    context = tmp / "src"
    # COPY SRC... DEST into the build context (only what the Dockerfile copies).
    for copy in builder.all("COPY"):
        *sources, dest = [w for w in copy.split() if not w.startswith("--")]
        for source in sources:
            if source == "docker/install.sh":
                continue
            src = ROOT / source
            target = context / (Path(dest).relative_to("/src") if dest.startswith("/src")
                                else dest)
            if src.is_dir():
                shutil.copytree(src, target if not dest.endswith("/") else target / src.name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
    paths = {"/src": context, "/wheels": tmp / "wheels",
             "/opt/readiness-exporter": tmp / "venv"}
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    for stage in (builder, final):
        for step in _install_steps(stage):
            args = [str(paths.get(a, a)) for a in step]
            result = subprocess.run(["sh", str(ROOT / "docker" / "install.sh"), *args],
                                    capture_output=True, text=True, env=env, timeout=240,
                                    check=False)
            assert result.returncode == 0, result.stderr[-3000:]
    workdir = tmp / "workdir"
    workdir.mkdir()
    return Installed(context, tmp / "wheels", tmp / "venv", workdir)


# --------------------------------------------------------------------------- the recipe


def test_dockerfile_is_multi_stage_slim_and_non_root(stages: list[Stage]) -> None:
    args, _ = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == final.base == "python:3.11-slim"
    assert _install_steps(builder) == [["wheels", "/src", "/wheels"]]
    assert _install_steps(final) == [["venv", "/wheels", "/opt/readiness-exporter"]]
    # The final stage takes only wheels from the builder, by a build-time bind mount.
    assert any("--mount=type=bind,from=builder,source=/wheels" in r for r in final.all("RUN"))
    assert not any("--from" in c for c in final.all("COPY"))
    assert [c.split()[-2] for c in final.all("COPY")] == ["docker/install.sh"]
    # No compilers or package installs in the final image.
    final_runs = " ".join(final.all("RUN"))
    for word in ("apt-get", "gcc", "build-essential", "apk "):
        assert word not in final_runs
    assert final.all("USER") == ["10001:10001"]
    assert "--uid 10001" in final_runs
    assert final.all("EXPOSE") == ["9847"]
    assert json.loads(final.all("ENTRYPOINT")[0]) == ["readiness-exporter"]
    assert json.loads(final.all("CMD")[0]) == ["serve", "--web.listen-address", ":9847"]
    assert not final.all("HEALTHCHECK")


def test_dockerignore_keeps_the_context_to_what_is_copied() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!exporter/", "!docker/install.sh"} <= set(lines)


def test_wheel_carries_presets_and_board_templates(installed: Installed) -> None:
    (wheel,) = installed.wheels.glob("readiness_exporter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "exporter").rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts]
    assert "exporter/presets/default.yaml" in data_files
    assert any(p.startswith("exporter/web/templates/") for p in data_files)
    missing = sorted(set(data_files) - names)
    assert not missing, f"package data missing from the wheel: {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "readiness-exporter = exporter.cli:main" in text


def test_venv_is_self_contained(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import exporter, importlib.resources as r; print(exporter.__file__);"
         "print(r.files('exporter.presets').joinpath('default.yaml').is_file())"],
        capture_output=True, text=True, cwd=installed.workdir, check=True,
        env={"PATH": "/usr/bin:/bin"})
    module_path, preset_found = result.stdout.split()
    assert Path(module_path).is_relative_to(installed.venv), module_path
    assert preset_found == "True"
    # pip was removed after the install: nothing in the image can install more.
    assert not (installed.venv / "bin" / "pip").exists()
    version = subprocess.run([str(installed.venv / "bin" / "readiness-exporter"), "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.strip().startswith("readiness-exporter ")


# --------------------------------------------------------------------------- the image runs


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return response.status, response.read().decode()


@pytest.fixture
def serving(installed: Installed, stages: list[Stage]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """ENTRYPOINT + CMD from the Dockerfile, listen address moved to a loopback port."""
    final = stages[-1]
    command = json.loads(final.all("ENTRYPOINT")[0]) + json.loads(final.all("CMD")[0])
    port = free_port()
    at = command.index("--web.listen-address") + 1
    command[at] = f"127.0.0.1:{port}"
    binary = installed.venv / "bin" / command[0]
    env = {"PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin", "HOME": str(installed.workdir),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([str(binary), *command[1:]], cwd=installed.workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout=30)
        yield port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_installed_exporter_serves_health_and_metrics(
        serving: tuple[int, subprocess.Popen[str]]) -> None:
    port, process = serving
    status, body = _get(f"http://127.0.0.1:{port}/health")
    assert (status, json.loads(body)) == (200, {"status": "healthy"})
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    deadline = time.monotonic() + 30
    metrics = ""
    while time.monotonic() < deadline:  # the embedded default's first round of checks
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        if 'readiness_check_status{check="6.1"' in metrics:
            break
        time.sleep(0.2)
    assert status == 200
    assert "readiness_exporter_build_info{" in metrics
    assert 'readiness_check_status{check="6.1"' in metrics
    assert "readiness_go_live " in metrics
    # The embedded default runs from the installed package, without a config file.
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output[-2000:]
