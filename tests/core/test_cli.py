"""`readiness-exporter check`: the pipeline gate, its outputs and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.core.conftest import EXE

STRONG = "jwt-Kq8vXz3LmN5pR7tY9wB2cD4fG6hJ8kL0"
CONFIG = """
checks:
  - id: jwt
    section: "2.1"
    title: JWT secret strong
    severity: critical
    kind: secret_strength
    env: JWT_SECRET
  - id: pool
    section: "9.3"
    title: pool settings
    severity: warning
    kind: config_value
    file: {app}
    assertions:
      - {{path: database.pool_size, op: "==", value: 50}}
  - id: na
    section: "3.3"
    title: broker (if applicable)
    severity: critical
    kind: env
    enabled: false
    disabled_reason: no message queue in this deployment
"""


def run(args: list[str], env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=full_env,
                          timeout=60, cwd=cwd)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    app = tmp_path / "app.yaml"
    app.write_text("database:\n  pool_size: 20\n")
    path = tmp_path / "readiness.yaml"
    path.write_text(CONFIG.format(app=app))
    return path


def test_exit_0_when_only_warnings_fail(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file)], {"JWT_SECRET": STRONG})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2.1 Authentication & Authorization" in result.stdout
    assert "9.3 Connection Pool Settings" in result.stdout
    assert "FAIL" in result.stdout and "database.pool_size is 20, expected == 50" in result.stdout
    assert "SKIPPED" in result.stdout and "disabled: no message queue" in result.stdout
    assert STRONG not in result.stdout + result.stderr


def test_exit_1_when_a_critical_check_fails(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--output", "json"],
                 {"JWT_SECRET": "changeme"})
    assert result.returncode == 1
    records = {r["id"]: r for r in json.loads(result.stdout)}
    assert records["jwt"]["status"] == "fail"
    assert set(records["jwt"]) >= {"id", "section", "title", "severity", "status", "message"}
    assert "changeme" not in result.stdout.replace('"changeme"', "")  # never echoed
    assert "changeme" not in records["jwt"]["message"]


def test_junit_output(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--output", "junit"],
                 {"JWT_SECRET": "short"})
    assert result.returncode == 1
    root = ET.fromstring(result.stdout)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    auth = suites["2.1 Authentication & Authorization"]
    assert auth.get("failures") == "1" and auth.get("tests") == "1"
    failure = auth.find("testcase/failure")
    assert failure is not None and failure.get("type") == "critical"
    assert suites["3.3 Message Queue"].get("skipped") == "1"


def test_section_and_only_filters(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--section", "9",
                  "--output", "json"], {"JWT_SECRET": "short"})
    assert result.returncode == 0  # the failing critical check is not selected
    assert [r["id"] for r in json.loads(result.stdout)] == ["pool"]
    result = run(["check", "--config.file", str(config_file), "--only", "jwt", "--output",
                  "json"], {"JWT_SECRET": STRONG})
    assert [r["id"] for r in json.loads(result.stdout)] == ["jwt"]
    result = run(["check", "--config.file", str(config_file), "--only", "nope"])
    assert result.returncode == 2 and "--only nope: no such check id" in result.stderr


def test_exit_2_on_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - id: x\n    section: '1'\n    title: t\n    kind: env\n"
                   "    interval: soon\n")
    result = run(["check", "--config.file", str(bad)])
    assert result.returncode == 2
    assert "checks[0] (id x).interval: invalid duration 'soon'" in result.stderr
    assert result.stdout == ""


def test_embedded_default_without_a_file(tmp_path: Path) -> None:
    env = {"JWT_SECRET": STRONG, "ENCRYPTION_KEY": "9f1c3a7e5b2d8064c1e9a3f7b5d2086e"}
    result = run(["check", "--output", "json"], env, cwd=tmp_path)
    records = {r["id"]: r for r in json.loads(result.stdout)}
    assert records["2.1.1"]["status"] == "pass"
    assert records["6.1-encryption-key"]["status"] == "pass"
    assert records["6.1"]["status"] == "fail"  # DATABASE_* and friends are missing
    assert result.returncode == 1
    assert STRONG not in result.stdout + result.stderr


def test_list_shows_kinds_and_options() -> None:
    result = run(["list"])
    assert result.returncode == 0, result.stderr
    assert "secret_strength:" in result.stdout and "min_length: int (default 32)" in result.stdout
    assert "config_value:" in result.stdout and "qbitel-production" in result.stdout


def test_serve_with_a_bad_configuration_starts_nothing(tmp_path: Path) -> None:
    from tests.support.servers import free_port

    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - id: a\n    section: '1.2'\n    title: t\n    kind: env\n"
                   "  - id: a\n    section: '1.2'\n    title: t\n    kind: env\n")
    port = free_port()
    result = run(["serve", "--config.file", str(bad), "--web.listen-address",
                  f"127.0.0.1:{port}"])
    assert result.returncode == 2
    assert "checks[1] (id a).id: duplicate check id (also checks[0])" in result.stderr
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
