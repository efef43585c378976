"""10.3.3: the recovery runbook has a section with content per 10.2 scenario and a signed,
release-bound review of its current sha256 (the preset's two checks, on real files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import _parse_yaml, _preset_documents
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes import file
from exporter.probes.attestation.probe import KIND as ATTESTATION
from exporter.probes.document_sections import sections
from tests.probes.test_attestation import Signers

STEPS = ("1. Page the on-call DBA and open the incident channel.\n"
         "2. Run `pgbackrest --stanza=qbitel restore --type=time` with the target time.\n"
         "3. Verify: `SELECT max(created_at) FROM audit_log` is within the RPO.\n"
         "4. Point the application at the restored primary and watch /readyz.\n")
RUNBOOK = f"""# QBITEL disaster recovery runbook

Owner: platform team. Objectives: see checklist 10.2.

## Database failure (RTO 30 min, RPO 6 h)

{STEPS}
## Application failure (RTO 5 min, RPO 0)

{STEPS.replace("DBA", "application owner")}
## Cluster failure (RTO 2 h, RPO 6 h)

{STEPS.replace("primary", "standby cluster")}
"""


def preset_check(check_id: str, fragment: str) -> dict[str, Any]:
    for origin, text in _preset_documents("qbitel-production"):
        if origin.endswith(fragment):
            for check in _parse_yaml(text, origin)["checks"]:
                if check["id"] == check_id:
                    return dict(check)
    raise AssertionError(f"{check_id} not in {fragment}")


def runbook_check(path: Path) -> file.FileCheck:
    """The preset's 10.3.3 with its numbers, pointed at `path`."""
    return file.FileCheck.model_validate({**preset_check("10.3.3", "00-core.yaml"),
                                          "path": str(path)})


def section_values(outcome: Outcome) -> dict[str, float]:
    return {m.labels["section"]: m.value for m in outcome.measurements
            if m.family == "readiness_file_section_present"}


async def test_one_byte_runbook_fails(ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "disaster-recovery.md"
    path.write_text("#")
    outcome = await file.run(runbook_check(path), ctx)
    # The old rule (exists, min_size 1) passed this.
    assert outcome.status is Status.FAIL, outcome.message
    assert "size 1 B below 1024 B" in outcome.message
    assert "no section /database" in outcome.message
    assert set(section_values(outcome).values()) == {0.0}


async def test_complete_runbook_passes(ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "disaster-recovery.md"
    path.write_text(RUNBOOK)
    outcome = await file.run(runbook_check(path), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert "3 required sections with content" in outcome.message
    assert set(section_values(outcome).values()) == {1.0}


async def test_a_scenario_without_steps_fails(ctx: RuntimeContext, tmp_path: Path) -> None:
    # Long enough overall, every heading there, but the cluster scenario is a stub.
    path = tmp_path / "disaster-recovery.md"
    stub = RUNBOOK.split("## Cluster failure")[0] + "## Cluster failure\n\nTODO\n\n"
    path.write_text(stub + "## Appendix\n\n" + STEPS * 3)
    outcome = await file.run(runbook_check(path), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "section 'Cluster failure' has 4 B (min_section_bytes 200)" in outcome.message
    missing = await file.run(runbook_check(path).model_copy(update={
        "required_sections": ["region failover"]}), ctx)
    assert "no section /region failover/" in missing.message


def test_sections_of_restructuredtext_and_fenced_code() -> None:
    text = ("Runbook\n=======\n\nDatabase failure\n----------------\nrestore it\n\n"
            "```\n# not a heading\n```\n")
    found = {s.title: s for s in sections(text)}
    assert set(found) == {"Runbook", "Database failure"}
    assert found["Database failure"].level == 2


def test_bad_section_pattern_names_the_option() -> None:
    with pytest.raises(ValueError, match=r"required_sections\[0\]"):
        file.FileCheck.model_validate({"id": "t", "section": "10.3", "title": "t",
                                       "kind": "file", "path": "x", "required_sections": ["("]})


async def test_review_is_bound_to_the_runbook_digest_and_release(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signers = Signers(tmp_path, capsys)
    runbook = tmp_path / "disaster-recovery.md"
    runbook.write_text(RUNBOOK)
    check = ATTESTATION.spec.model_validate({
        **preset_check("10.3.3-attested", "61-attestations.yaml"), "file": str(runbook),
        "directory": str(signers.records), "keyring": str(signers.keyring)})
    context = RuntimeContext(state_dir=tmp_path / "state", release="2.1.0")
    try:
        unsigned = await ATTESTATION.run(check, context)
        assert unsigned.status is Status.FAIL
        signers.sign("10.3.3", "DevOps Lead", "2.1.0", extra=["--file", str(runbook)])
        signed = await ATTESTATION.run(check, context)
        assert signed.status is Status.PASS, signed.message
        # Editing the runbook after the review voids it.
        runbook.write_text(RUNBOOK + "\n## Appendix\nchanged after review\n")
        changed = await ATTESTATION.run(check, context)
        assert changed.status is Status.FAIL, changed.message
        # A review signed for the previous release does not count for this one.
        runbook.write_text(RUNBOOK)
        later = RuntimeContext(state_dir=tmp_path / "state2", release="2.2.0")
        try:
            other_release = await ATTESTATION.run(check, later)
        finally:
            await later.aclose()
        assert other_release.status is Status.FAIL
    finally:
        await context.aclose()


async def test_unreadable_size_is_config_error(ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "huge.md"
    path.write_text(RUNBOOK)
    check = runbook_check(path).model_copy(update={"max_read_bytes": 100})
    outcome = await file.run(check, ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "max_read_bytes" in outcome.message
