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
WEAK = "wk-Zq7-secret"
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

# An erroring critical check and an erroring warning (the application file is missing).
ERRORING = """
  - id: framework
    section: "2.4"
    title: compliance framework selected
    severity: critical
    kind: config_value
    file: {missing}
    assertions:
      - {{path: compliance.framework, op: "==", value: SOC2}}
  - id: timeout
    section: "2.1"
    title: session timeout
    severity: warning
    kind: config_value
    file: {missing}
    assertions:
      - {{path: session.timeout, op: "<=", value: 3600}}
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
    out = result.stdout
    assert "FAIL" in out and "database.pool_size is 20, expected == 50" in out
    assert "DISABLED" in out and "disabled: no message queue" in out
    assert out.index("Needs attention (1)") < out.index("Passing (1)") < out.index("Disabled (1)")
    assert out.rstrip().splitlines()[-1] == (
        "GO: every enabled critical check passes; 1 non-critical failing or erroring; 1 pass; "
        "1 disabled")
    assert STRONG not in out + result.stderr


def test_exit_1_when_a_critical_check_fails(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--output", "json"],
                 {"JWT_SECRET": "changeme"})
    assert result.returncode == 1
    document = json.loads(result.stdout)
    records = {r["id"]: r for r in document["checks"]}
    assert records["jwt"]["status"] == "fail"
    assert set(records["jwt"]) >= {"id", "section", "title", "severity", "status", "message"}
    assert "changeme" not in result.stdout.replace('"changeme"', "")  # never echoed
    assert "changeme" not in records["jwt"]["message"]
    assert document["go_live"] is False and document["blocking"] == ["jwt"]


def test_json_envelope_follows_its_schema(config_file: Path) -> None:
    import jsonschema

    from exporter.render.json_output import OUTPUT_SCHEMA

    config_file.write_text(config_file.read_text().replace("settings:", "")
                           + ERRORING.format(missing=config_file.parent / "absent.yaml")
                           + 'settings:\n  release: "2.1.0"\n')
    result = run(["check", "--config.file", str(config_file), "--output", "json"],
                 {"JWT_SECRET": "short"})
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, OUTPUT_SCHEMA,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert document["schema_version"] == 1 and document["release"] == "2.1.0"
    assert document["config"] == str(config_file)
    counts = document["counts"]
    assert counts["total"] == 5 and counts["disabled"] == 1
    assert counts["by_status"] == {"pass": 0, "fail": 2, "error": 2, "skipped": 0,
                                   "disabled": 1, "pending": 0}
    assert counts["by_severity"]["critical"] == {"pass": 0, "fail": 1, "error": 1,
                                                 "skipped": 0, "disabled": 1, "pending": 0}
    assert counts["by_severity"]["warning"]["error"] == 1
    assert sorted(document["blocking"]) == ["framework", "jwt"]
    assert document["verdict"] == ("NO-GO: 1 critical failing, 1 erroring; 2 non-critical "
                                   "failing or erroring; 0 pass; 1 disabled")
    assert [c["section"] for c in document["checks"]] == ["2.1", "2.1", "2.4", "3.3", "9.3"]


def test_json_v0_keeps_the_old_list_with_a_deprecation(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--output", "json-v0"],
                 {"JWT_SECRET": STRONG})
    assert result.returncode == 0
    records = json.loads(result.stdout)
    assert isinstance(records, list) and [r["id"] for r in records] == ["jwt", "na", "pool"]
    assert "json-v0 is deprecated" in result.stderr and "--output json" in result.stderr


def test_junit_gates_like_the_exit_code(config_file: Path) -> None:
    config_file.write_text(config_file.read_text()
                           + ERRORING.format(missing=config_file.parent / "absent.yaml"))
    result = run(["check", "--config.file", str(config_file), "--output", "junit"],
                 {"JWT_SECRET": WEAK})
    assert result.returncode == 1
    root = ET.fromstring(result.stdout)
    cases = {c.get("name").split()[0]: c for c in root.iter("testcase")}
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    # critical failure -> <failure>, critical error -> <error>
    failure = cases["jwt"].find("failure")
    assert failure is not None and failure.get("type") == "critical"
    error = cases["framework"].find("error")
    assert error is not None and error.get("type") == "config"
    # a failing or erroring warning is not a failure: properties and system-out
    for warning in ("pool", "timeout"):
        case = cases[warning]
        assert case.find("failure") is None and case.find("error") is None
        assert case.find("skipped") is None
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["severity"] == "warning" and props["status"] in ("fail", "error")
        assert "does not gate" in (case.findtext("system-out") or "")
    assert "database.pool_size is 20" in cases["pool"].findtext("system-out")
    # disabled -> <skipped/>
    assert cases["na"].find("skipped") is not None
    assert suites["3.3 Message Queue"].get("skipped") == "1"
    assert suites["9.3 Connection Pool Settings"].get("failures") == "0"
    assert (root.get("tests"), root.get("failures"), root.get("errors"),
            root.get("skipped")) == ("5", "1", "1", "1")
    assert WEAK not in result.stdout + result.stderr


def test_junit_of_a_go_has_no_failure(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--output", "junit"],
                 {"JWT_SECRET": STRONG})
    assert result.returncode == 0
    root = ET.fromstring(result.stdout)
    assert root.get("failures") == "0" and root.get("errors") == "0"


def test_failures_only(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--failures-only"],
                 {"JWT_SECRET": "short"})
    assert result.returncode == 1
    out = result.stdout
    assert "jwt" in out and "pool" in out
    assert "Passing" not in out and "no message queue" not in out
    assert "0 passing and 1 disabled checks not shown (--failures-only)" in out
    assert out.rstrip().splitlines()[-1].startswith("NO-GO: 1 critical failing, 0 erroring")
    # critical rows before warnings whatever their sections
    assert out.index("jwt") < out.index("pool")


def test_plain_output_is_stable_and_has_no_escape_codes(config_file: Path) -> None:
    env = {"JWT_SECRET": "short", "COLUMNS": "40", "FORCE_COLOR": "1"}
    first = run(["check", "--config.file", str(config_file)], env)
    second = run(["check", "--config.file", str(config_file)], env)
    assert first.stdout == second.stdout
    assert "\x1b" not in first.stdout + first.stderr
    assert max(len(line) for line in first.stdout.splitlines()) <= 100
    assert not any(line != line.rstrip() for line in first.stdout.splitlines())


def test_section_and_only_filters(config_file: Path) -> None:
    result = run(["check", "--config.file", str(config_file), "--section", "9",
                  "--output", "json"], {"JWT_SECRET": "short"})
    assert result.returncode == 0  # the failing critical check is not selected
    assert [r["id"] for r in json.loads(result.stdout)["checks"]] == ["pool"]
    result = run(["check", "--config.file", str(config_file), "--only", "jwt", "--output",
                  "json"], {"JWT_SECRET": STRONG})
    assert [r["id"] for r in json.loads(result.stdout)["checks"]] == ["jwt"]
    result = run(["check", "--config.file", str(config_file), "--only", "nope"])
    assert result.returncode == 2 and "--only nope: no such check id" in result.stderr


def test_a_section_without_checks_names_the_sections_there_are(tmp_path: Path) -> None:
    result = run(["check", "--section", "2.2", "--output", "json"], cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "--section 2.2: no check matches in embedded default" in result.stderr
    assert "its sections: 1.2, 2.1, 6.1" in result.stderr
    assert "--config.file" in result.stderr


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
    records = {r["id"]: r for r in json.loads(result.stdout)["checks"]}
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


def _spec(check_id: str, severity: str, enabled: bool = True):  # type: ignore[no-untyped-def]
    from exporter import registry

    return registry.probe_kind("env").spec.model_validate(
        {"id": check_id, "section": "6.1", "title": check_id, "kind": "env",
         "severity": severity, "enabled": enabled})


@pytest.mark.parametrize("status,code", [("pass", 0), ("fail", 1), ("error", 1),
                                         ("skipped", 1), ("pending", 1)])
def test_gate_follows_the_go_live_rule(status: str, code: int) -> None:
    from exporter.cli import gate
    from exporter.model import Outcome, Reason, Status
    from exporter.store import Store

    store = Store([_spec("crit", "critical"), _spec("warn", "warning"),
                   _spec("off", "critical", enabled=False)])
    store.record("warn", Outcome.failed("no"), 1.0, 0.0)
    store.record("off", Outcome.skipped("disabled"), 1.0, 0.0)
    if status != "pending":
        reason = Reason.TIMEOUT if status == "error" else None
        store.record("crit", Outcome(Status(status), "m", (), reason), 1.0, 0.0)
    # an enabled critical check that the probe skipped (or that never ran) is not a pass:
    # the same rule as readiness_go_live, so the gate and the board agree
    assert gate(store) == code


def test_first_log_line_of_serve_says_where_the_board_is(tmp_path: Path) -> None:
    from tests.support.servers import free_port

    port = free_port()
    proc = subprocess.Popen([str(EXE), "serve", "--web.listen-address", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert first["msg"] == f"readiness board at http://127.0.0.1:{port}/ (metrics at /metrics)"
