"""README's quick start runs in order, in one directory: init, check, serve."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from tests.core.conftest import EXE, REPO
from tests.support.servers import free_port, wait_for_port

BLOCK = re.compile(r"## Quick start\n\n```console\n(.*?)^```", re.DOTALL | re.MULTILINE)


def quick_start() -> list[list[str]]:
    match = BLOCK.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert match is not None, "README.md has no Quick start console block"
    lines = [re.sub(r"\s+#.*$", "", line).split() for line in match.group(1).splitlines()]
    return [line for line in lines if line and line[0] == "readiness-exporter"]


def test_quick_start_is_init_check_serve() -> None:
    assert [line[1] for line in quick_start()] == ["init", "check", "serve"]


def test_quick_start_runs_in_order(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    for line in quick_start():
        argv = [str(EXE), *line[1:]]
        if line[1] == "serve":
            port = free_port()
            process = subprocess.Popen([*argv, "--web.listen-address", f"127.0.0.1:{port}"],
                                       cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                wait_for_port(port, timeout=60)
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=60) == 0
            continue
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600, check=False)
        assert result.returncode in (0, 1), (line, result.stderr[-2000:])
        if line[1] == "init":
            assert result.returncode == 0
            assert (tmp_path / "readiness.yaml").is_file()
