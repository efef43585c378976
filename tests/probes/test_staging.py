"""11.1.x staging validated: the staging end-to-end report for this release passes, or a
signed attestation; a health endpoint that answers is not enough (the preset's checks,
on real JUnit files and real signed records)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exporter import registry
from exporter.config import _parse_yaml, _preset_documents
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.store import Store
from tests.probes.test_attestation import Signers
from tests.probes.test_report import SAMPLE_TESTS, _pytest_junit

RELEASE = "2.1.0"
WITH_RELEASE = f'''
import pytest

@pytest.fixture(scope="session", autouse=True)
def release(record_testsuite_property):
    record_testsuite_property("release", "{RELEASE}")

def test_checkout_flow():
    pass

def test_login_flow():
    pass
'''


def preset_checks(tmp_path: Path, signers: Signers) -> list[CheckSpec]:
    wanted = {"11.1.x-staging", "11.1.x-staging-e2e", "11.1.x-staging-attested"}
    found: list[dict[str, Any]] = []
    for origin, text in _preset_documents("qbitel-production"):
        found += [c for c in _parse_yaml(text, origin).get("checks", []) if c["id"] in wanted]
    overrides = {"11.1.x-staging-e2e": {"path": str(tmp_path / "staging-e2e/**/*.xml")},
                 "11.1.x-staging-attested": {"directory": str(signers.records),
                                             "keyring": str(signers.keyring)}}
    specs = []
    for check in found:
        kind = registry.probe_kind(check["kind"])
        specs.append(kind.spec.model_validate({**check, **overrides.get(check["id"], {})}))
    assert {s.id for s in specs} == wanted
    return specs


async def verdict(specs: list[CheckSpec], tmp_path: Path, release: str | None) -> Store:
    """Run the alternatives, then the aggregate, as `check` does."""
    store = Store(specs)
    context = RuntimeContext(state_dir=tmp_path / "state", checks=store.views,
                             release=release)
    try:
        for spec in sorted(specs, key=lambda s: s.kind == "aggregate"):
            outcome: Outcome = await registry.probe_kind(spec.kind).run(spec, context)
            store.record(spec.id, outcome, time.time(), 0.0)
    finally:
        await context.aclose()
    return store


@pytest.fixture
def signers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Signers:
    keys = tmp_path / "keys"
    keys.mkdir()
    return Signers(keys, capsys)


async def test_nothing_but_an_answering_staging_is_not_validated(
        tmp_path: Path, signers: Signers) -> None:
    store = await verdict(preset_checks(tmp_path, signers), tmp_path, RELEASE)
    staging = store.get("11.1.x-staging")
    assert staging.status is Status.FAIL, staging.outcome
    assert staging.spec.severity.value == "critical"
    assert store.get("11.1.x-staging-e2e").spec.severity.value == "info"


async def test_green_e2e_report_for_this_release_validates(
        tmp_path: Path, signers: Signers) -> None:
    _pytest_junit(tmp_path / "staging-e2e" / "run-7", WITH_RELEASE, "e2e.xml")
    store = await verdict(preset_checks(tmp_path, signers), tmp_path, RELEASE)
    assert store.get("11.1.x-staging-e2e").status is Status.PASS
    staging = store.get("11.1.x-staging")
    assert staging.status is Status.PASS, staging.outcome
    assert staging.outcome is not None
    assert staging.outcome.message.startswith("11.1.x-staging-e2e passes")


async def test_e2e_report_of_another_release_does_not_validate(
        tmp_path: Path, signers: Signers) -> None:
    _pytest_junit(tmp_path / "staging-e2e" / "run-7", WITH_RELEASE, "e2e.xml")
    store = await verdict(preset_checks(tmp_path, signers), tmp_path, "2.2.0")
    e2e = store.get("11.1.x-staging-e2e")
    assert e2e.status is Status.FAIL and e2e.outcome is not None
    assert "not for release 2.2.0" in e2e.outcome.message
    assert store.get("11.1.x-staging").status is Status.FAIL


async def test_failing_e2e_run_but_signed_attestation_validates(
        tmp_path: Path, signers: Signers) -> None:
    run = tmp_path / "staging-e2e" / RELEASE
    _pytest_junit(run, SAMPLE_TESTS, "e2e.xml")
    store = await verdict(preset_checks(tmp_path, signers), tmp_path, RELEASE)
    assert store.get("11.1.x-staging").status is Status.FAIL
    signers.sign("11.1.x-staging", "Engineering Lead", RELEASE)
    store = await verdict(preset_checks(tmp_path, signers), tmp_path, RELEASE)
    assert store.get("11.1.x-staging-e2e").status is Status.FAIL
    staging = store.get("11.1.x-staging")
    assert staging.status is Status.PASS, staging.outcome


async def test_e2e_report_without_a_known_release_is_a_config_error(
        tmp_path: Path, signers: Signers) -> None:
    _pytest_junit(tmp_path / "staging-e2e" / "run-7", WITH_RELEASE, "e2e.xml")
    store = await verdict(preset_checks(tmp_path, signers), tmp_path, None)
    e2e = store.get("11.1.x-staging-e2e")
    assert e2e.status is Status.ERROR and e2e.outcome is not None
    assert e2e.outcome.reason is Reason.CONFIG and "settings.release" in e2e.outcome.message
