"""Drill records from other tooling count only when signed by the keyring (3.1.5, 10.2,
10.3.1, 10.3.2): unsigned, tampered, wrong-role and unknown-key records are ignored."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exporter.context import RuntimeContext
from exporter.model import Reason, Status
from exporter.probes.backup import drill, rpo
from exporter.probes.backup.signed_records import sign_record
from tests.probes.test_backup import backup_fragment

DEVOPS = Ed25519PrivateKey.generate()
PRODUCT = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()


def public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "keyring.yaml"
    path.write_text(yaml.safe_dump({"keys": [
        {"id": "ops", "name": "Ops Lead", "roles": ["DevOps Lead"], "public_key": public(DEVOPS)},
        {"id": "po", "name": "Product", "roles": ["Product Owner"],
         "public_key": public(PRODUCT)}]}))
    return path


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    context = RuntimeContext({}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def fields(scenario: str, days_ago: float, minutes: float) -> dict[str, Any]:
    finished = time.time() - days_ago * 86400
    return {"scenario": scenario, "started": finished - minutes * 60, "finished": finished,
            "success": True}


def restore_check(records: Path, keyring: Path | None, **extra: Any) -> drill.RestoreDrillCheck:
    return drill.RestoreDrillCheck.model_validate({
        "id": "10.3.1", "section": "10.3", "title": "t", "kind": "restore_drill",
        "scenario": "database-failure", "records_file": str(records), "max_age": "30d",
        "rto_target": "30m", **({"keyring": str(keyring)} if keyring else {}), **extra})


async def test_unsigned_record_no_longer_passes(tmp_path: Path, keyring: Path,
                                                ctx: RuntimeContext) -> None:
    records = tmp_path / "drills.jsonl"
    records.write_text(json.dumps(fields("database-failure", 2, 10)) + "\n")
    old_rule = await drill.run(restore_check(records, None), ctx)
    assert old_rule.status is Status.PASS  # a self-written line was enough
    outcome = await drill.run(restore_check(records, keyring), ctx)
    assert outcome.status is Status.FAIL
    assert "no successful database-failure drill recorded" in outcome.message
    assert "1 unsigned or unverified database-failure records ignored" in outcome.message


async def test_signed_record_passes_and_forgeries_are_ignored(tmp_path: Path, keyring: Path,
                                                             ctx: RuntimeContext) -> None:
    good = sign_record(fields("database-failure", 3, 12), "ops", DEVOPS)
    tampered = json.loads(sign_record(fields("database-failure", 1, 50), "ops", DEVOPS))
    tampered["finished"] = tampered["started"] + 60  # a 50-minute drill shown as 1 minute
    lines = [good, json.dumps(tampered) + "\n",
             sign_record(fields("database-failure", 1, 1), "po", PRODUCT),  # wrong role
             sign_record(fields("database-failure", 1, 1), "ops", STRANGER)]  # wrong key
    records = tmp_path / "drills.jsonl"
    records.write_text("".join(lines))
    outcome = await drill.run(restore_check(records, keyring), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert "in 12m00s" in outcome.message  # the signed drill, not a forged 1-minute one
    assert "3 unsigned or unverified" in outcome.message


async def test_unusable_keyring_is_a_config_error(tmp_path: Path, ctx: RuntimeContext) -> None:
    records = tmp_path / "drills.jsonl"
    records.write_text(sign_record(fields("database-failure", 1, 5), "ops", DEVOPS))
    outcome = await drill.run(restore_check(records, tmp_path / "missing.yaml"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "checks (id 10.3.1).keyring" in outcome.message


async def test_a_missing_records_file_is_named_before_the_keyring_is_read(
        tmp_path: Path, ctx: RuntimeContext) -> None:
    records = tmp_path / "drills.jsonl"  # not written yet
    outcome = await drill.run(restore_check(records, tmp_path / "missing.yaml"), ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert f"({records} does not exist)" in outcome.message
    plain = await drill.run(restore_check(records, None), ctx)
    assert plain.status is Status.FAIL and f"({records} does not exist)" in plain.message
    records.write_text("not json\n" + json.dumps(fields("database-failure", 2, 10)) + "\n")
    counted = await drill.run(restore_check(records, None), ctx)
    assert counted.status is Status.PASS, counted.message
    assert counted.message.endswith("(1 unreadable lines)")


async def test_rpo_measures_the_rto_from_signed_records_only(tmp_path: Path, keyring: Path,
                                                             ctx: RuntimeContext) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    (folder / "db.dump").write_bytes(b"PGDMP" + b"\0" * 64)
    records = tmp_path / "drills.jsonl"
    records.write_text(json.dumps(fields("database-failure", 1, 5)) + "\n")
    check = rpo.RpoCheck.model_validate({
        "id": "10.2-db", "item": "10.2", "section": "10.2", "title": "t", "kind": "rpo",
        "scenario": "database-failure", "rpo_target": "6h", "rto_target": "30m",
        "drill_records": str(records), "keyring": str(keyring),
        "sources": [{"type": "backup", "source": {"type": "directory", "path": str(folder)}}]})
    unsigned = await rpo.run(check, ctx)
    assert unsigned.status is Status.FAIL
    assert "no successful drill measured the RTO" in unsigned.message
    with records.open("a") as handle:
        handle.write(sign_record(fields("database-failure", 1, 7), "ops", DEVOPS))
    signed = await rpo.run(check, ctx)
    assert signed.status is Status.PASS, signed.message
    assert "measured RTO 7m00s" in signed.message


def test_preset_requires_signed_drill_records() -> None:
    checks = {c.id: c for c in backup_fragment().checks}
    for cid in ("3.1.5-drill", "10.3.1", "10.3.2", "10.2-database-failure",
                "10.2-application-failure", "10.2-complete-cluster-failure"):
        assert getattr(checks[cid], "keyring", None) is not None, cid
