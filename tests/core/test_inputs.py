"""Preset inputs, `${...}` expansion and relative paths (issue 12)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from exporter import config
from exporter.cli import run_once
from exporter.config import ConfigError
from exporter.inputs import BY_NAME, INPUTS
from exporter.model import SecretRef

BACKUP_CHECKS = ["2.3.3", "3.1.4", "10.1.1"]
RPO_CHECKS = ["10.2-database-failure"]  # the cluster scenario reads backup_offsite


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(path, environ or {})
    return info.value.errors


def field(cfg: config.Config, check_id: str, name: str) -> Any:
    return getattr(cfg.check(check_id), name)


def test_app_url_input_moves_every_http_check_and_a_check_override_still_wins(
        tmp_path: Path) -> None:
    path = write(tmp_path, """
include: [qbitel-production]
inputs:
  app_url: https://app.test:8443
checks:
  - {id: "6.2-healthz", url: "https://other.test/healthz"}
""")
    cfg = config.load(path, {})
    app_checks = [c for c in cfg.checks if c.kind == "http"
                  and str(getattr(c, "url", "")).startswith("https://app.test:8443")]
    assert len(app_checks) == 11  # 12 use app_url, one is overridden
    assert field(cfg, "2.2.2", "url") == "https://app.test:8443/health"
    assert field(cfg, "6.2-healthz", "url") == "https://other.test/healthz"
    assert not [c.id for c in cfg.checks
                if "qbitel.example.internal" in str(getattr(c, "url", ""))
                and "staging" not in c.id and c.id != "7.4-metrics"]


def test_one_backup_input_moves_every_backup_check_including_rpo_sources(
        tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    path = write(tmp_path, f"""
include: [qbitel-production]
inputs:
  backup_db: {backups}
""")
    cfg = config.load(path, {})
    for check_id in BACKUP_CHECKS:
        assert field(cfg, check_id, "source").path == backups, check_id
    for check_id in RPO_CHECKS:
        assert field(cfg, check_id, "sources")[0].source.path == backups, check_id


def test_database_connection_follows_the_checklist_variables_and_the_file_wins() -> None:
    env = {"DATABASE_HOST": "db.test", "DATABASE_PORT": "6543", "DATABASE_NAME": "app",
           "DATABASE_USER": "reader", "REDIS_HOST": "cache.test", "REDIS_PORT": "6380"}
    cfg = config.build(_preset("qbitel-production"), "t", env)
    db = cfg.connections["app-db"]
    assert (db.host, db.port, db.database, db.user) == (  # type: ignore[attr-defined]
        "db.test", 6543, "app", "reader")
    redis = cfg.connections["redis"]
    assert (redis.host, redis.port) == ("cache.test", 6380)  # type: ignore[attr-defined]
    assert cfg.inputs["database_host"].origin == "environment"
    cfg = config.build({**_preset("qbitel-production"), "inputs": {"database_host": "file.test"}},
                       "t", env)
    assert cfg.connections["app-db"].host == "file.test"  # type: ignore[attr-defined]
    assert cfg.inputs["database_host"].origin == "file"
    assert cfg.inputs["database_port"].origin == "environment"


def _preset(name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    includes = config._Includes()
    for origin, text in config._preset_documents(name):
        merged = config._merge(merged, config._resolve_document(
            config._parse_yaml(text, origin), origin, None, (name,), includes))
    return merged


CHECK = """
  - id: web
    section: "6.2"
    title: web
    kind: http
    url: {url}
"""


def test_env_references_expand_with_and_without_default(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:" + CHECK.format(url='"https://${APP_HOST}:${APP_PORT:-8443}/x"'))
    cfg = config.load(path, {"APP_HOST": "app.test"})
    assert field(cfg, "web", "url") == "https://app.test:8443/x"
    cfg = config.load(path, {"APP_HOST": "app.test", "APP_PORT": "9"})
    assert field(cfg, "web", "url") == "https://app.test:9/x"
    assert any(u.option == "checks (id web).url" and "${APP_HOST}" in u.source for u in cfg.uses)


def test_unset_variable_without_default_names_the_option_unless_disabled(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:" + CHECK.format(url='"https://${APP_HOST}/x"'))
    (error,) = errors_of(path)
    assert error.startswith("checks (id web).url: environment variable APP_HOST is not set")
    path = write(tmp_path, "checks:" + CHECK.format(url='"https://${APP_HOST}/x"')
                 + "    enabled: false\n")
    assert field(config.load(path, {}), "web", "url") == "https://${APP_HOST}/x"


def test_secret_options_keep_their_reference_form(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:" + CHECK.format(url="https://a.test")
                 + '    bearer_token: "${API_TOKEN}"\n'
                   '    secret_headers: {X-Key: "${API_KEY}"}\n')
    env = {"API_TOKEN": "tok-value-123456", "API_KEY": "key-value-123456"}
    spec = config.load(path, env).check("web")
    assert spec.bearer_token == SecretRef(env="API_TOKEN")  # type: ignore[attr-defined]
    assert spec.secret_headers["X-Key"] == SecretRef(env="API_KEY")  # type: ignore[attr-defined]
    assert "tok-value" not in repr(config.load(path, env).uses)


def test_unknown_input_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "include: [qbitel-production]\ninputs:\n  app_ulr: https://x.test\n")
    errors = errors_of(path)
    assert any("inputs.app_ulr: unknown input (did you mean app_url?)" in e for e in errors)


def test_every_input_is_documented_with_its_default() -> None:
    text = (Path(__file__).parents[2] / "docs" / "inputs.md").read_text(encoding="utf-8")
    for definition in INPUTS:
        assert f"`{definition.name}`" in text, definition.name
        if definition.env:
            assert f"`{definition.env}`" in text, definition.env


def test_every_input_is_used_by_the_preset() -> None:
    preset = "".join(text for _, text in config._preset_documents("qbitel-production"))
    unused = [name for name in BY_NAME if f"${{inputs.{name}}}" not in preset]
    assert unused == []


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_file_directory(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "conf"
    cfg_dir.mkdir()
    path = write(cfg_dir, """
checks:
  - id: runbook
    section: "10.3"
    title: runbook
    kind: file
    path: docs/runbook.md
  - id: certs
    section: "1.2"
    title: certs
    kind: tls_file
    paths: ["certs/*.crt"]
""")
    cfg = config.load(path, {})
    assert field(cfg, "runbook", "path") == cfg_dir / "docs" / "runbook.md"
    assert field(cfg, "certs", "paths") == [f"{cfg_dir}/certs/*.crt"]
    based = write(cfg_dir, path.read_text() + "settings: {base_dir: data/sub}\n", "b.yaml")
    loaded = config.load(based, {})
    assert field(loaded, "runbook", "path") == cfg_dir / "data/sub/docs/runbook.md"
    assert loaded.settings.base_dir == cfg_dir / "data/sub"


def test_the_same_config_gives_the_same_verdicts_from_two_working_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_dir = tmp_path / "conf"
    (cfg_dir / "docs").mkdir(parents=True)
    (cfg_dir / "docs" / "runbook.md").write_text("# runbook\n")
    path = write(cfg_dir, """
checks:
  - id: runbook
    section: "10.3"
    title: runbook
    kind: file
    path: docs/runbook.md
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    verdicts = []
    for cwd in (cfg_dir, elsewhere):
        monkeypatch.chdir(cwd)
        cfg = config.load(Path(os.path.relpath(path, cwd)), {})
        store = asyncio.run(run_once(cfg, cfg.checks))
        outcome = store.states["runbook"].outcome
        assert outcome is not None
        verdicts.append((outcome.status, outcome.message))
    assert verdicts[0] == verdicts[1]
    assert verdicts[0][0] == "pass"


def test_a_relative_backup_input_resolves_against_the_config_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "include: [qbitel-production]\ninputs:\n  backup_db: backups\n")
    cfg = config.load(path, {})
    assert field(cfg, "3.1.4", "source").path == tmp_path / "backups"
    assert field(cfg, "10.2-database-failure", "sources")[0].source.path == tmp_path / "backups"


def test_inputs_command_shows_values_origins_and_secrets_by_reference(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, "include: [qbitel-production]\ninputs:\n  app_url: https://a.test\n")
    env = {"PATH": os.environ["PATH"], "DATABASE_HOST": "db.test",
           "DATABASE_PASSWORD": "do-not-show-this-password"}
    run = subprocess.run([str(Path(sys.executable).parent / "readiness-exporter"), "inputs",
                          "--config.file", str(path), "--no-discovery"],
                         capture_output=True, text=True, env=env, timeout=60, check=True,
                         cwd="/")
    rows = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    assert rows["app_url"].split()[1:] == ["https://a.test", "file"]
    assert "environment ($DATABASE_HOST)" in rows["database_host"]
    assert "default, placeholder: set REDIS_HOST or inputs.redis_host" in rows["redis_host"]
    assert "secret ${DATABASE_PASSWORD}" in rows["connections.app-db.password_env"]
    assert rows["app_config_file"].split()[1:4] == [
        "config/qbitel.production.yaml", "->", f"{tmp_path}/config/qbitel.production.yaml"]
    assert "do-not-show-this-password" not in run.stdout + run.stderr


def test_state_dir_is_not_a_target_and_keeps_its_meaning(tmp_path: Path) -> None:
    path = write(tmp_path, "settings: {state_dir: state}\n")
    assert config.load(path, {}).settings.state_dir == Path("state")


def test_hints_never_repeat_a_url_credential(tmp_path: Path) -> None:
    from exporter import hints
    from exporter.model import Outcome, Reason

    path = write(tmp_path, "checks:" + CHECK.format(
        url='"https://${APP_HOST:-app.test}/x?api_key=k3y-in-query"'))
    cfg = config.load(path, {})
    outcome = hints.explain(cfg.check("web"), Outcome.errored(Reason.DNS, "cannot resolve"))
    assert outcome.message == ("cannot resolve; target https://app.test/x (checks (id web).url: "
                               "a ${...:-default})")
