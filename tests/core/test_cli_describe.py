"""`list [KIND]` and `explain ID`: options with real types, and where each value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import registry
from exporter.explain import docs_page
from tests.core.conftest import REPO
from tests.core.test_cli import run


def test_list_shows_readable_types_allowed_values_and_defaults() -> None:
    result = run(["list"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Optional" not in out and "typing." not in out and "Literal" not in out
    assert "    sections: list[str] (default []):" in out
    assert "    verify: 'head' | 'downgrade' (default 'head'):" in out
    assert "    statement_timeout: duration (default 5)" in out
    assert "  severity: 'critical' | 'warning' | 'info' (default 'warning')" in out
    assert "    bearer_token: secret reference | null (default null)" in out


def test_list_of_one_kind_indents_its_nested_blocks() -> None:
    result = run(["list", "backup"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  backup: " in result.stdout and "  http: " not in result.stdout
    source = lines.index(next(line for line in lines if line.startswith("    source: ")))
    assert lines[source + 1].startswith("      DirectorySource: ")
    assert lines[source + 2] == "        type: 'directory' (required)"
    assert any(line.startswith("        bucket: str (required)") for line in lines)
    # a block used twice is expanded once
    assert "      DirectorySource: (fields above)" in lines


def test_list_of_a_connection_kind_and_of_an_unknown_kind() -> None:
    result = run(["list", "redis"])
    assert result.returncode == 0
    assert "Probe kinds:" in result.stdout and "Connection kinds" in result.stdout
    result = run(["list", "kafka"])
    assert result.returncode == 2
    assert "no probe or connection kind named 'kafka'" in result.stderr
    assert "tls_endpoint" in result.stderr


@pytest.mark.parametrize("kind", registry.probe_kind_names())
def test_every_kind_has_a_docs_page(kind: str) -> None:
    assert (REPO / docs_page(kind)).is_file()


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "include: [qbitel-production]\n"
        "defaults:\n  timeout: 7s\n"
        "checks:\n"
        '  - id: "2.2.2"\n'
        "    url: https://app.example/health\n"
        '  - id: "3.1.3"\n'
        "    enabled: true\n")
    return path


def _block(out: str, name: str) -> tuple[str, str]:
    lines = out.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"    {name}: "))
    return lines[index], lines[index + 1]


def test_explain_names_where_each_value_came_from(user_file: Path) -> None:
    result = run(["explain", "2.2.2", "--config.file", str(user_file)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("2.2.2: HSTS headers configured")
    assert "docs      docs/probes/http.md" in out
    assert f"defined   preset qbitel-production/21-http.yaml then {user_file}" in out
    value, origin = _block(out, "url")
    assert value == '    url: "https://app.example/health"'
    assert origin == (f"        from {user_file} (overrides preset "
                      "qbitel-production/21-http.yaml)")
    value, origin = _block(out, "hsts")
    assert '"min_max_age": 31536000' in value
    assert origin == "        from preset qbitel-production/21-http.yaml"
    value, origin = _block(out, "timeout")
    assert value == "    timeout: 7.0" and origin == f"        from defaults: in {user_file}"
    assert '    method: "GET"  (default of kind http)' in out
    assert "    enabled: true  (default for every check)" in out


def test_explain_by_item_id(tmp_path: Path) -> None:
    result = run(["explain", "6.1"])  # the embedded default: 6.1 and 6.1-encryption-key
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("6.1: Required environment variables")
    assert "from embedded default (preset default)" in result.stdout
    assert result.stdout.rstrip().endswith(
        "Also checking item 6.1: 6.1-encryption-key (explain each by its id)")
    path = tmp_path / "items.yaml"
    path.write_text("checks:\n"
                    "  - {id: a, item: '9.9', section: '9', title: A, kind: env}\n"
                    "  - {id: b, item: '9.9', section: '9', title: B, kind: env}\n")
    result = run(["explain", "9.9", "--config.file", str(path)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("a: A") and "\nb: B\n" in result.stdout


def test_explain_shows_secret_references_never_values(user_file: Path) -> None:
    secret = "Sup3r-Secret-Grafana-Token-Value"
    result = run(["explain", "5.1.3-overview", "--config.file", str(user_file)],
                 {"GRAFANA_TOKEN": secret})
    assert result.returncode == 0, result.stderr
    assert "GRAFANA_TOKEN" in result.stdout
    assert secret not in result.stdout + result.stderr


def test_explain_an_unknown_id_suggests_close_ones(user_file: Path) -> None:
    result = run(["explain", "2.2.22", "--config.file", str(user_file)])
    assert result.returncode == 2 and result.stdout == ""
    assert "explain: no check or item '2.2.22'" in result.stderr
    assert "did you mean" in result.stderr and "2.2.2" in result.stderr


def test_explain_follows_file_includes(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    base = tmp_path / "team" / "base.yaml"
    base.write_text('include: [qbitel-production]\nchecks:\n  - id: "2.2.2"\n'
                    "    interval: 10m\n")
    top = tmp_path / "service.yaml"
    top.write_text('include: [team/base.yaml]\nchecks:\n  - id: "2.2.2"\n'
                   "    url: https://svc.example/health\n")
    result = run(["explain", "2.2.2", "--config.file", str(top)])
    assert result.returncode == 0, result.stderr
    assert (f"defined   preset qbitel-production/21-http.yaml then {base} then {top}"
            in result.stdout)
    value, origin = _block(result.stdout, "interval")
    assert value == "    interval: 600.0"
    assert origin == f"        from {base} (overrides preset qbitel-production/21-http.yaml)"
