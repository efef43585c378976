"""The 60-reports / 61-attestations preset fragments load and fail clearly when empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter import registry
from exporter.config import _parse_yaml, _preset_documents, build
from exporter.context import RuntimeContext
from exporter.model import Status

FRAGMENTS = ("60-reports.yaml", "61-attestations.yaml")
EXPECTED_ITEMS = {"1.1.1", "1.1.2", "1.1.3", "1.1.4", "1.1.5", "1.2.1", "1.2.2", "2.3.1",
                  "4.4.2", "5.2.1", "5.4.3", "5.4.4", "10.3.3", "11.1.x", "11.2.x", "11.3.4",
                  "12"}


def _fragments() -> dict[str, list[object]]:
    merged: dict[str, list[object]] = {"checks": []}
    for origin, text in _preset_documents("qbitel-production"):
        if origin.endswith(FRAGMENTS):
            merged["checks"] += _parse_yaml(text, origin)["checks"]
    return merged


async def test_fragments_load_in_an_empty_environment(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = build(_fragments(), "fragments", environ={})
    assert {c.item_id for c in config.checks} == EXPECTED_ITEMS
    sign_off = config.check("12")
    assert getattr(sign_off, "roles") == ["Engineering Lead", "Security Lead", "DevOps Lead",
                                         "Product Owner"]
    day_before = {c.id for c in config.checks if c.item_id == "11.1.x"}
    assert day_before == {"11.1.x-code-freeze", "11.1.x-staging", "11.1.x-staging-e2e",
                          "11.1.x-staging-attested", "11.1.x-load-test",
                          "11.1.x-security-scan", "11.1.x-runbooks", "11.1.x-on-call-briefed"}
    monkeypatch.chdir(tmp_path)
    context = RuntimeContext(state_dir=tmp_path / "state")
    try:
        for spec in config.checks:
            if spec.kind == "http":
                continue  # its placeholder URL would leave loopback
            outcome = await registry.probe_kind(spec.kind).run(spec, context)
            assert outcome.status in (Status.FAIL, Status.ERROR), (spec.id, outcome.message)
            assert outcome.message
    finally:
        await context.aclose()
    assert not os.path.exists(tmp_path / "config")
