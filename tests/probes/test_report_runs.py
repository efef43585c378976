"""1.1.1-1.1.3, 11.1.x: every report of the newest run counts, the release is named,
unrated findings are critical by default, OSV CVSS vectors are scored, an image scan can
be required. Reports are real: JUnit from real pytest runs, scanner JSON in each tool's
documented shape."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config import _parse_yaml, _preset_documents
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.report import KIND, ReportCheck
from tests.probes.test_report import FIXTURES, SAMPLE_TESTS, _pytest_junit

GREEN = "def test_a():\n    pass\n\ndef test_b():\n    pass\n"
RELEASE_PROPERTY = '''
import pytest

@pytest.fixture(scope="session", autouse=True)
def release(record_testsuite_property):
    record_testsuite_property("release", "1.4.2")

def test_a():
    pass
'''


@pytest.fixture(scope="module")
def junit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("junit-runs")
    return {
        "failing": _pytest_junit(root / "failing", SAMPLE_TESTS, "unit.xml"),
        "green": _pytest_junit(root / "green", GREEN, "unit.xml"),
        "release": _pytest_junit(root / "release", RELEASE_PROPERTY, "unit.xml"),
    }


@pytest.fixture
async def release_ctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    context = RuntimeContext(state_dir=tmp_path / "state", release="1.4.2")
    yield context
    await context.aclose()


def spec(**fields: Any) -> ReportCheck:
    return ReportCheck.model_validate({"id": "1.1.1", "section": "1.1", "title": "t",
                                       "kind": "report", **fields})


def place(source: Path, target: Path, age: float) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    moment = time.time() - age
    os.utime(target, (moment, moment))
    return target


def value(outcome: Outcome, family: str, **labels: str) -> float:
    found = [m.value for m in outcome.measurements
             if m.family == family and all(m.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, outcome.measurements)
    return found[0]


# --------------------------------------------------------------------------- runs


async def test_failure_in_an_older_file_of_the_newest_run_fails(
        junit: dict[str, Path], ctx: RuntimeContext, tmp_path: Path) -> None:
    run = tmp_path / "unit" / "run-42"
    place(junit["failing"], run / "core.xml", age=60)   # same run, written first
    place(junit["green"], run / "api.xml", age=0)       # the newest file: green
    place(junit["failing"], tmp_path / "unit" / "run-41" / "api.xml", age=3600)
    outcome = await KIND.run(spec(format="junit", path=str(tmp_path / "unit/**/*.xml")), ctx)
    # The old rule read api.xml only and passed.
    assert outcome.status is Status.FAIL, outcome.message
    assert "failed or errored (max 0) in core.xml" in outcome.message
    assert value(outcome, "readiness_report_files") == 2
    assert value(outcome, "readiness_report_tests", result="failed") == 1
    assert value(outcome, "readiness_report_tests", result="passed") == 2 + 2


async def test_green_newest_run_passes_whatever_older_runs_said(
        junit: dict[str, Path], ctx: RuntimeContext, tmp_path: Path) -> None:
    place(junit["failing"], tmp_path / "unit" / "run-41" / "core.xml", age=7200)
    place(junit["green"], tmp_path / "unit" / "run-42" / "core.xml", age=30)
    place(junit["green"], tmp_path / "unit" / "run-42" / "api.xml", age=0)
    outcome = await KIND.run(spec(format="junit", path=str(tmp_path / "unit/**/*.xml")), ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message.startswith("2 reports: 4 tests, 0 failed")


async def test_run_by_run_id_in_a_flat_directory(
        junit: dict[str, Path], ctx: RuntimeContext, tmp_path: Path) -> None:
    flat = tmp_path / "reports"
    place(junit["failing"], flat / "unit-1041-core.xml", age=7200)   # previous run
    place(junit["green"], flat / "unit-1042-api.xml", age=0)
    check = spec(format="junit", path=str(flat / "*.xml"), run_by="run_id",
                 run_id_pattern=r"unit-(\d+)-")
    assert (await KIND.run(check, ctx)).status is Status.PASS
    place(junit["failing"], flat / "unit-1042-core.xml", age=60)     # same run, failing
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.FAIL and "unit-1042-core.xml" in outcome.message
    # Directory mode on the same flat directory takes every file as one run.
    by_dir = await KIND.run(spec(format="junit", path=str(flat / "*.xml")), ctx)
    assert by_dir.status is Status.FAIL and value(by_dir, "readiness_report_files") == 3
    unmatched = await KIND.run(spec(format="junit", path=str(flat / "*.xml"), run_by="run_id",
                                    run_id_pattern=r"build-(\d+)"), ctx)
    assert unmatched.status is Status.ERROR and unmatched.reason is Reason.CONFIG
    assert "run_id_pattern" in unmatched.message


async def test_run_by_mtime_window(junit: dict[str, Path], ctx: RuntimeContext,
                                   tmp_path: Path) -> None:
    flat = tmp_path / "reports"
    place(junit["failing"], flat / "old.xml", age=3 * 3600)
    place(junit["green"], flat / "api.xml", age=0)
    check = spec(format="junit", path=str(flat / "*.xml"), run_by="mtime_window",
                 run_window="30m")
    assert (await KIND.run(check, ctx)).status is Status.PASS
    place(junit["failing"], flat / "core.xml", age=20 * 60)  # within the window
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.FAIL and "core.xml" in outcome.message


def test_run_id_needs_a_pattern() -> None:
    with pytest.raises(ValueError, match="run_id_pattern"):
        spec(format="junit", path="/x/*.xml", run_by="run_id")
    with pytest.raises(ValueError, match="not a regular expression"):
        spec(format="junit", path="/x/*.xml", run_by="run_id", run_id_pattern="(")


# --------------------------------------------------------------------------- release


async def test_release_named_by_junit_property(junit: dict[str, Path],
                                               release_ctx: RuntimeContext,
                                               tmp_path: Path) -> None:
    place(junit["release"], tmp_path / "run" / "unit.xml", age=0)
    outcome = await KIND.run(spec(format="junit", path=str(tmp_path / "run/*.xml")),
                             release_ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message.endswith("release 1.4.2")
    assert value(outcome, "readiness_report_release_named") == 1


async def test_report_of_another_release_fails(junit: dict[str, Path],
                                               release_ctx: RuntimeContext,
                                               tmp_path: Path) -> None:
    # A green report that does not say which release it tested (the old rule passed it).
    place(junit["green"], tmp_path / "run" / "unit.xml", age=0)
    outcome = await KIND.run(spec(format="junit", path=str(tmp_path / "run/*.xml")),
                             release_ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "unit.xml not for release 1.4.2" in outcome.message
    assert value(outcome, "readiness_report_release_named") == 0
    # The property names 1.4.2, but the check is bound to another release.
    place(junit["release"], tmp_path / "other" / "unit.xml", age=0)
    other = await KIND.run(spec(format="junit", path=str(tmp_path / "other/*.xml"),
                                release="1.4.3"), release_ctx)
    assert other.status is Status.FAIL and "not for release 1.4.3" in other.message


@pytest.mark.parametrize(("relative", "named"), [
    ("1.4.2/unit.xml", True),
    ("v1.4.2/unit.xml", True),
    ("unit-1.4.2.xml", True),
    ("unit-1.4.20.xml", False),
    ("1.4.2-rc1/unit.xml", False),
    ("11.4.2/unit.xml", False),
], ids=["directory", "v-directory", "file-name", "longer-version", "pre-release",
        "other-major"])
async def test_release_named_by_path(relative: str, named: bool, junit: dict[str, Path],
                                     release_ctx: RuntimeContext, tmp_path: Path) -> None:
    place(junit["green"], tmp_path / "reports" / relative, age=0)
    outcome = await KIND.run(spec(format="junit", path=str(tmp_path / "reports/**/*.xml")),
                             release_ctx)
    assert (outcome.status is Status.PASS) is named, outcome.message


async def test_release_named_by_sidecar(junit: dict[str, Path], release_ctx: RuntimeContext,
                                        tmp_path: Path) -> None:
    report = place(junit["green"], tmp_path / "run" / "unit.xml", age=0)
    (tmp_path / "run" / "release").write_text("1.4.1\n")
    check = spec(format="junit", path=str(tmp_path / "run/*"))
    stale = await KIND.run(check, release_ctx)
    assert stale.status is Status.FAIL and "not for release 1.4.2" in stale.message
    Path(str(report) + ".release").write_text("1.4.2\n")  # the file's own sidecar wins
    outcome = await KIND.run(check, release_ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert value(outcome, "readiness_report_files") == 1  # sidecars are not reports


# --------------------------------------------------------------------------- vulnerabilities


async def test_unrated_pip_audit_findings_count_as_critical_by_default(
        ctx: RuntimeContext) -> None:
    path = str(FIXTURES / "pip-audit.json")
    outcome = await KIND.run(spec(format="vulnerabilities", path=path, max_age=None), ctx)
    # The old default counted them as `unknown` and passed "0 critical".
    assert outcome.status is Status.FAIL, outcome.message
    assert "2 critical (max 0)" in outcome.message
    relaxed = await KIND.run(spec(format="vulnerabilities", path=path, max_age=None,
                                  unknown_as="unknown"), ctx)
    assert relaxed.status is Status.PASS
    assert value(relaxed, "readiness_report_vulnerabilities", severity="unknown") == 2


def osv_report(vulnerability: dict[str, Any]) -> dict[str, Any]:
    """osv-scanner JSON without groups (as older versions and the OSV API answer)."""
    return {"results": [{"source": {"path": "/src/requirements.txt", "type": "lockfile"},
                         "packages": [{"package": {"name": "pyyaml", "version": "5.3",
                                                   "ecosystem": "PyPI"},
                                       "vulnerabilities": [vulnerability]}]}]}


@pytest.mark.parametrize(("vulnerability", "severity"), [
    ({"id": "GHSA-x", "severity": [{"type": "CVSS_V3", "score":
      "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
      "database_specific": {"severity": "MODERATE"}}, "critical"),
    ({"id": "PYSEC-y", "severity": [{"type": "CVSS_V3", "score":
      "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}, "critical"),
    ({"id": "GHSA-z", "severity": [{"type": "CVSS_V4", "score":
      "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}, "critical"),
    ({"id": "GHSA-w", "severity": [{"type": "CVSS_V3", "score":
      "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"}],
      "database_specific": {"severity": "CRITICAL"}}, "low"),
], ids=["vector-9.8-over-moderate", "vector-only", "cvss4-9.3", "vector-1.8-over-critical"])
async def test_osv_entries_use_their_cvss_vector(vulnerability: dict[str, Any], severity: str,
                                                 ctx: RuntimeContext, tmp_path: Path) -> None:
    path = tmp_path / "osv.json"
    path.write_text(json.dumps(osv_report(vulnerability)))
    outcome = await KIND.run(spec(format="vulnerabilities", path=str(path), max_age=None,
                                  unknown_as="unknown"), ctx)
    assert value(outcome, "readiness_report_vulnerabilities", severity=severity) == 1
    assert (outcome.status is Status.FAIL) is (severity == "critical"), outcome.message


async def test_every_scan_of_the_run_counts(ctx: RuntimeContext, tmp_path: Path) -> None:
    run = tmp_path / "scans" / "2026-11-29"
    clean_image = json.loads((FIXTURES / "trivy.json").read_text())
    for result in clean_image["Results"]:
        result["Vulnerabilities"] = [v for v in result.get("Vulnerabilities") or []
                                     if v["Severity"] in ("LOW", "MEDIUM")]
    image = run / "image.json"
    image.parent.mkdir(parents=True)
    image.write_text(json.dumps(clean_image))
    check = spec(format="vulnerabilities", path=str(tmp_path / "scans/**/*.json"),
                 max_age=None, require_image_scan=True)
    alone = await KIND.run(check, ctx)
    assert alone.status is Status.PASS, alone.message
    assert value(alone, "readiness_report_image_scans") == 1
    place(FIXTURES / "pip-audit.json", run / "deps.json", age=60)  # older file, same run
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.FAIL and "2 critical (max 0)" in outcome.message
    assert value(outcome, "readiness_report_files") == 2


async def test_security_scan_requires_an_image_scan(ctx: RuntimeContext,
                                                    tmp_path: Path) -> None:
    clean = {"dependencies": [{"name": "jinja2", "version": "3.1.4", "vulns": []}],
             "fixes": []}
    run = tmp_path / "scans" / "run-7"
    run.mkdir(parents=True)
    (run / "deps.json").write_text(json.dumps(clean))
    check = spec(format="vulnerabilities", path=str(tmp_path / "scans/**/*.json"),
                 max_age=None, require_image_scan=True)
    outcome = await KIND.run(check, ctx)
    assert outcome.status is Status.FAIL and "no container image scan" in outcome.message
    place(FIXTURES / "grype.json", run / "image-grype.json", age=0)
    with_image = await KIND.run(spec(format="vulnerabilities",
                                     path=str(tmp_path / "scans/**/*.json"), max_age=None,
                                     require_image_scan=True,
                                     max_findings={"critical": 2}), ctx)
    assert with_image.status is Status.PASS, with_image.message
    assert value(with_image, "readiness_report_image_scans") == 1


# --------------------------------------------------------------------------- the preset


def preset(check_id: str, path: Path) -> ReportCheck:
    """The preset's check with its numbers, reading `path`."""
    for origin, text in _preset_documents("qbitel-production"):
        if origin.endswith("60-reports.yaml"):
            for check in _parse_yaml(text, origin)["checks"]:
                if check["id"] == check_id:
                    return ReportCheck.model_validate({**check, "path": str(path)})
    raise AssertionError(check_id)


async def test_preset_security_scan_needs_images_and_counts_unrated(
        ctx: RuntimeContext, tmp_path: Path) -> None:
    run = tmp_path / "vulnerabilities" / "run-9"
    place(FIXTURES / "pip-audit.json", run / "deps.json", age=0)
    glob = tmp_path / "vulnerabilities/**/*.json"
    deps = await KIND.run(preset("1.1.3", glob), ctx)
    assert deps.status is Status.FAIL and "2 critical (max 0)" in deps.message
    day_before = await KIND.run(preset("11.1.x-security-scan", glob), ctx)
    assert day_before.status is Status.FAIL
    assert "no container image scan" in day_before.message
    clean = {"dependencies": [{"name": "jinja2", "version": "3.1.4", "vulns": []}]}
    (run / "deps.json").write_text(json.dumps(clean))
    image = json.loads((FIXTURES / "trivy.json").read_text())
    image["CreatedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for result in image["Results"]:
        result["Vulnerabilities"] = []
    (run / "image.json").write_text(json.dumps(image))
    passing = await KIND.run(preset("11.1.x-security-scan", glob), ctx)
    assert passing.status is Status.PASS, passing.message
