"""The first run of the preset with nothing configured: every error says what to change."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from exporter import config
from exporter.cli import run_once
from exporter.model import Reason, Status

EXPLAINED = {Reason.CONFIG, Reason.DNS, Reason.CONNECT}
NAMES_AN_OPTION = re.compile(
    r"inputs\.[a-z_]+|connections\.[a-z-]+|settings\.[a-z_]+|checks \(id [^)]+\)\.[a-z_]+"
    r"|set [A-Z_]+ or")
CHECKLIST_VARIABLES = ("DATABASE_", "REDIS_", "QBITEL_", "TLS_", "KUBERNETES_", "PROMETHEUS_",
                       "ALERTMANAGER_", "GRAFANA_", "LOKI_", "JAEGER_", "SIEM_", "KUBECONFIG")


MISSING_EVIDENCE: dict[str, str] = {"1.1.1": "", "3.1.5-drill": "", "5.2.1": ""}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Reason, str]]:
    import os

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(CHECKLIST_VARIABLES)}
    try:
        folder = tmp_path_factory.mktemp("first-run")
        path = folder / "readiness.yaml"
        path.write_text("include: [qbitel-production]\n", encoding="utf-8")
        cfg = config.load(path, {})
        store = asyncio.run(run_once(cfg, cfg.checks))
    finally:
        os.environ.update(saved)
    found = []
    for check_id, state in store.states.items():
        outcome = state.outcome
        assert outcome is not None
        if outcome.status is Status.ERROR and outcome.reason in EXPLAINED:
            found.append((check_id, outcome.reason, outcome.message))
        elif outcome.status is Status.FAIL and check_id in MISSING_EVIDENCE:
            MISSING_EVIDENCE[check_id] = outcome.message
    return found


def test_the_first_run_has_errors_to_explain(first_run: list[tuple[str, Reason, str]]) -> None:
    assert len(first_run) >= 40
    assert {reason for _, reason, _ in first_run} >= {Reason.CONFIG, Reason.DNS}


def test_every_config_dns_connect_error_names_its_input_or_option(
        first_run: list[tuple[str, Reason, str]]) -> None:
    unexplained = [(i, m) for i, _, m in first_run if not NAMES_AN_OPTION.search(m)]
    assert unexplained == []


def test_placeholder_targets_say_they_are_placeholders_and_what_to_set(
        first_run: list[tuple[str, Reason, str]]) -> None:
    messages = dict((i, m) for i, _, m in first_run)
    assert "qbitel.example.internal" in messages["2.2.2"]
    assert ("inputs.app_url; placeholder from the preset: set QBITEL_URL or inputs.app_url"
            in messages["2.2.2"])
    assert "target postgres:5432 (connections.app-db.host: inputs.database_host" in messages["3.1.1"]
    assert "set DATABASE_HOST or inputs.database_host" in messages["3.1.1"]


def test_a_missing_keyring_says_how_to_create_it_and_which_roles(
        first_run: list[tuple[str, Reason, str]]) -> None:
    keyring = [m for _, _, m in first_run if "keyring" in m and "does not exist" in m]
    assert keyring
    for message in keyring:
        assert "readiness-exporter attest keygen" in message
        assert "role(s)" in message


def test_missing_evidence_says_who_produces_it(
        first_run: list[tuple[str, Reason, str]]) -> None:
    messages = dict((i, m) for i, _, m in first_run)
    assert "written by the database backup job" in messages["3.1.4"]


def test_relative_defaults_resolve_next_to_the_config_file(
        first_run: list[tuple[str, Reason, str]]) -> None:
    messages = dict((i, m) for i, _, m in first_run)
    match = re.search(r"(/\S+)/config/qbitel\.production\.yaml does not exist", messages["2.1.5"])
    assert match is not None
    assert Path(match.group(1)).name.startswith("first-run")


def test_missing_evidence_files_say_who_produces_them(
        first_run: list[tuple[str, Reason, str]]) -> None:
    assert "written by CI (JUnit) and the vulnerability scanners" in MISSING_EVIDENCE["1.1.1"]
    assert "appended by whoever runs a DR drill" in MISSING_EVIDENCE["3.1.5-drill"]
    assert "inputs.app_log" in MISSING_EVIDENCE["5.2.1"]
