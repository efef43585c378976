"""A credential in a configured URL's query string is warned about at validation, naming
the option and the parameter, never the value (issue 17, "Secrets")."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from exporter import config, lint
from tests.core.conftest import EXE

KEY = "k3y-0f3c9a7e5d1b4a2c8e6f"
CONFIG = f"""
connections:
  cache:
    kind: redis
    url: redis://127.0.0.1:6379/0?password={KEY}
checks:
  - id: api
    section: "7.4"
    title: API smoke test
    kind: http
    url: http://127.0.0.1:9/v1/status?page=2&api_key={KEY}&Access-Token={KEY}
    cors: {{url: "http://127.0.0.1:9/preflight?sig={KEY}"}}
    enabled: false
  - id: clean
    section: "7.4"
    title: no credential
    kind: http
    url: http://127.0.0.1:9/health?verbose=1&monkey=1
    enabled: false
"""

EXPECTED = [
    "checks (id api).url: query parameter 'api_key' looks like a credential",
    "checks (id api).url: query parameter 'Access-Token' looks like a credential",
    "checks (id api).cors.url: query parameter 'sig' looks like a credential",
    "connections.cache.url: query parameter 'password' looks like a credential",
]


def write(tmp_path: Path) -> Path:
    path = tmp_path / "readiness.yaml"
    path.write_text(CONFIG)
    return path


def test_warnings_name_option_and_parameter_never_the_value(tmp_path: Path) -> None:
    warnings = lint.config_warnings(config.load(write(tmp_path)))
    assert len(warnings) == len(EXPECTED), warnings
    for expected, warning in zip(EXPECTED, warnings, strict=True):
        assert warning.startswith(expected)
        assert KEY not in warning and "secret_headers" in warning


def test_every_listed_parameter_name_and_spelling_is_caught() -> None:
    for name in ("api_key", "apikey", "key", "token", "access_token", "password", "secret",
                 "sig", "signature", "auth", "API-KEY", "X-Amz-Signature"):
        assert lint.url_warnings("o", f"https://h.example/p?{name}=v"), name
    for harmless in ("page", "monkey", "keyword", "author", "tokens_total"):
        assert lint.url_warnings("o", f"https://h.example/p?{harmless}=v") == [], harmless
    assert lint.url_warnings("o", "https://h.example/cb#access_token=v")  # implicit flow
    assert lint.url_warnings("o", "not a url ?token=v") == []


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={"PATH": os.environ["PATH"], "HOME": str(cwd)},
                          check=False)


def test_validate_and_check_print_the_warnings_to_stderr(tmp_path: Path) -> None:
    path = write(tmp_path)
    validate = run(["validate", "--config.file", str(path)], tmp_path)
    assert validate.returncode == 0, validate.stderr
    assert "OK: 2 checks" in validate.stdout
    check = run(["check", "--config.file", str(path)], tmp_path)
    assert check.returncode == 0, check.stderr
    for result in (validate, check):
        lines = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert [line.split(" looks")[0] for line in lines] == \
            [f"warning: {e.split(' looks')[0]}" for e in EXPECTED]
        assert KEY not in result.stdout + result.stderr


def test_serve_logs_each_warning_once(tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(["--config.file", str(write(tmp_path)), "--web.enable-lifecycle"])
    with urllib.request.urlopen(daemon.url + "/-/reload", data=b"", timeout=10):
        pass
    time.sleep(0.5)
    daemon.stop()
    entries = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    warned = [e["warning"] for e in entries if e["msg"] == "configuration warning"]
    assert [w.split(" looks")[0] for w in warned] == [e.split(" looks")[0] for e in EXPECTED]
    assert all(e["level"] == "warning" for e in entries if e["msg"] == "configuration warning")
    assert KEY not in daemon.logs()
