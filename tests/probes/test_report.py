"""report: JUnit from a real pytest run, scanner JSON in each tool's documented shape."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.report import KIND, ReportCheck
from tests.support.servers import free_port

FIXTURES = Path(__file__).parent / "report_fixtures"

SAMPLE_TESTS = '''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture fails")

def test_ok():
    assert 1 + 1 == 2

def test_ok_too():
    assert "a".upper() == "A"

def test_fails():
    assert 1 == 2

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

def test_errors(broken):
    pass
'''


def _pytest_junit(directory: Path, source: str, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_sample.py").write_text(source)
    report = directory / name
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "no:xdist", "-p", "no:randomly", str(directory / "test_sample.py"),
                    f"--junitxml={report}"], cwd=directory, capture_output=True, check=False,
                   timeout=120)
    assert report.is_file()
    return report


@pytest.fixture(scope="module")
def junit_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("junit")
    mixed = _pytest_junit(root / "mixed", SAMPLE_TESTS, "unit.xml")
    green = _pytest_junit(root / "green", "def test_a():\n    pass\n\ndef test_b():\n"
                          "    pass\n", "unit.xml")
    return mixed, green


def _spec(**fields: object) -> ReportCheck:
    return ReportCheck.model_validate({"id": "1.1.1", "section": "1.1", "title": "t",
                                       "kind": "report", **fields})


def _values(outcome: Outcome, family: str) -> dict[str, float]:
    return {next(iter(m.labels.values()), ""): m.value
            for m in outcome.measurements if m.family == family}


async def test_real_pytest_junit_counts(junit_reports: tuple[Path, Path],
                                        ctx: RuntimeContext) -> None:
    mixed, green = junit_reports
    outcome = await KIND.run(_spec(format="junit", path=str(mixed)), ctx)
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("unit.xml: 5 tests, 1 failed, 1 errors, 1 skipped")
    assert "2 failed or errored (max 0)" in outcome.message
    assert _values(outcome, "readiness_report_tests") == {
        "passed": 2, "failed": 1, "errored": 1, "skipped": 1}
    # pytest writes the suite's start time: exported, and younger than a minute.
    stamp = _values(outcome, "readiness_report_timestamp_seconds")[""]
    assert time.time() - 600 < stamp <= time.time()
    tolerant = await KIND.run(_spec(format="junit", path=str(mixed), max_failures=2), ctx)
    assert tolerant.status is Status.PASS
    ok = await KIND.run(_spec(format="junit", path=str(green)), ctx)
    assert ok.status is Status.PASS and "2 tests, 0 failed" in ok.message
    too_few = await KIND.run(_spec(format="junit", path=str(green), min_tests=10), ctx)
    assert too_few.status is Status.FAIL and "2 tests (min 10)" in too_few.message


async def test_newest_glob_match_and_max_age(junit_reports: tuple[Path, Path],
                                             ctx: RuntimeContext, tmp_path: Path) -> None:
    mixed, green = junit_reports
    reports = tmp_path / "ci" / "run-1"
    reports.mkdir(parents=True)
    old, new = reports / "a.xml", tmp_path / "ci" / "b.xml"
    shutil.copy(mixed, old)
    shutil.copy(green, new)
    os.utime(old, (time.time(), time.time()))
    os.utime(new, (time.time() - 60, time.time() - 60))
    outcome = await KIND.run(_spec(format="junit", path=str(tmp_path / "ci/**/*.xml")), ctx)
    assert outcome.message.startswith("a.xml")  # newest by file time
    os.utime(old, (time.time() - 120, time.time() - 120))
    outcome = await KIND.run(_spec(format="junit", path=str(tmp_path / "ci/**/*.xml")), ctx)
    assert outcome.status is Status.PASS and outcome.message.startswith("b.xml")
    # pytest's own timestamp is used, not the file time; a short max_age fails.
    time.sleep(1.1)
    stale = await KIND.run(_spec(format="junit", path=str(new), max_age="1s"), ctx)
    assert stale.status is Status.FAIL and "old (max 0.0 h)" in stale.message
    missing = await KIND.run(_spec(format="junit", path=str(tmp_path / "none/*.xml")), ctx)
    assert missing.status is Status.FAIL
    assert missing.message == f"no report matches {tmp_path / 'none/*.xml'}"


async def test_surefire_report_uses_file_time(ctx: RuntimeContext, tmp_path: Path) -> None:
    # Maven Surefire: one <testsuite> root with properties, no timestamp attribute.
    report = tmp_path / "TEST-com.qbitel.ApiTest.xml"
    report.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'name="com.qbitel.ApiTest" time="1.204" tests="4" errors="0" skipped="1" '
        'failures="0">\n  <properties><property name="java.version" value="21"/></properties>\n'
        '  <testcase name="creates" classname="com.qbitel.ApiTest" time="0.5"/>\n'
        '  <testcase name="reads" classname="com.qbitel.ApiTest" time="0.3"/>\n'
        '  <testcase name="updates" classname="com.qbitel.ApiTest" time="0.3"/>\n'
        '  <testcase name="deletes" classname="com.qbitel.ApiTest" time="0">'
        '<skipped message="disabled"/></testcase>\n</testsuite>\n')
    outcome = await KIND.run(_spec(format="junit", path=str(report), max_age="1h"), ctx)
    assert outcome.status is Status.PASS
    assert _values(outcome, "readiness_report_tests") == {
        "passed": 3, "failed": 0, "errored": 0, "skipped": 1}
    os.utime(report, (time.time() - 7200, time.time() - 7200))
    outcome = await KIND.run(_spec(format="junit", path=str(report), max_age="1h"), ctx)
    assert outcome.status is Status.FAIL and "2.0 h old (max 1.0 h)" in outcome.message


async def test_entity_expansion_bomb_rejected_without_memory_growth(
        ctx: RuntimeContext, tmp_path: Path) -> None:
    entities = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    entities += [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE testsuites [\n' + "\n".join(entities)
                    + '\n]>\n<testsuites><testsuite name="&lol9;" tests="1"/></testsuites>\n')
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    outcome = await KIND.run(_spec(format="junit", path=str(bomb)), ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.PROTOCOL
    assert "XML refused" in outcome.message
    # Expanded, &lol9; is 3 GB; refused, the process grows by (almost) nothing.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB
    assert time.monotonic() - started < 5
    external = tmp_path / "xxe.xml"
    external.write_text('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM '
                        '"file:///etc/passwd">]><testsuites>&x;</testsuites>')
    outcome = await KIND.run(_spec(format="junit", path=str(external)), ctx)
    assert outcome.status is Status.ERROR and "root:" not in outcome.message
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testsuite>")
    outcome = await KIND.run(_spec(format="junit", path=str(broken)), ctx)
    assert outcome.status is Status.ERROR and "not well-formed XML" in outcome.message


@pytest.mark.parametrize(("name", "fmt", "counts", "timestamp"), [
    # Trivy `--format json` (SchemaVersion 2): Results[].Vulnerabilities[].Severity.
    ("trivy.json", "trivy", {"critical": 1, "high": 1, "medium": 1, "low": 1, "unknown": 1},
     1795770902.123456),
    # Grype `-o json`: matches[].vulnerability.severity, descriptor.timestamp.
    ("grype.json", "grype", {"critical": 2, "high": 0, "medium": 1, "low": 1, "unknown": 0},
     1795770000.5),
    # OSV-Scanner `--format json`: results[].packages[].groups[].max_severity (CVSS score),
    # falling back to the advisories' database_specific.severity.
    ("osv.json", "osv", {"critical": 1, "high": 1, "medium": 1, "low": 0, "unknown": 0}, None),
    # pip-audit `-f json` (2.x): dependencies[].vulns[] without any severity.
    ("pip-audit.json", "pip_audit", {"critical": 0, "high": 0, "medium": 0, "low": 0,
                                      "unknown": 2}, None),
])
async def test_vulnerability_formats(ctx: RuntimeContext, name: str, fmt: str,
                                     counts: dict[str, int], timestamp: float | None) -> None:
    for given in (fmt, "vulnerabilities"):  # explicit, and detected from the shape
        outcome = await KIND.run(_spec(format=given, path=str(FIXTURES / name), max_age=None,
                                       unknown_as="unknown"), ctx)
        assert _values(outcome, "readiness_report_vulnerabilities") == counts
        assert outcome.message.startswith(f"{name}: {fmt}:")
        expected = Status.FAIL if counts["critical"] else Status.PASS
        assert outcome.status is expected, outcome.message
    if timestamp is not None:
        assert _values(outcome, "readiness_report_timestamp_seconds")[""] == pytest.approx(
            timestamp)
        aged = await KIND.run(_spec(format=fmt, path=str(FIXTURES / name), max_age="1d",
                                    max_findings={"critical": 5}, unknown_as="unknown"), ctx)
        assert aged.status is Status.FAIL and "h old" in aged.message


async def test_pip_audit_unknown_rule_and_thresholds(ctx: RuntimeContext) -> None:
    path = str(FIXTURES / "pip-audit.json")
    strict = await KIND.run(_spec(format="pip_audit", path=path, max_age=None,
                                  unknown_as="critical"), ctx)
    assert strict.status is Status.FAIL and "2 critical (max 0)" in strict.message
    capped = await KIND.run(_spec(format="pip_audit", path=path, max_age=None,
                                  max_findings={"critical": 0, "unknown": 1},
                                  unknown_as="unknown"), ctx)
    assert capped.status is Status.FAIL and "2 unknown (max 1)" in capped.message
    assert _values(capped, "readiness_report_vulnerabilities_allowed") == {
        "critical": 0, "unknown": 1}
    high = await KIND.run(_spec(format="trivy", path=str(FIXTURES / "trivy.json"),
                                max_age=None, max_findings={"critical": 1, "high": 0},
                                unknown_as="unknown"), ctx)
    assert high.status is Status.FAIL and "1 high (max 0)" in high.message
    assert "critical (max" not in high.message


@pytest.fixture
async def report_server(junit_reports: tuple[Path, Path]) -> AsyncIterator[str]:
    token = "ci-artifact-token-93f1c2"

    async def report(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401)
        response = web.FileResponse(junit_reports[1])
        return response

    big = ('<testsuites><testsuite name="big" tests="5000" failures="0" errors="0">'
           + "".join(f'<testcase classname="c{i}" name="test_{i:05d}_' + "n" * 60 + '"/>'
                     for i in range(5000)) + "</testsuite></testsuites>")

    async def large(_: web.Request) -> web.Response:
        return web.Response(body=big.encode(), content_type="application/xml")

    app = web.Application()
    app.router.add_get("/artifacts/unit.xml", report)
    app.router.add_get("/artifacts/big.xml", large)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_report_over_http(report_server: str, ctx: RuntimeContext,
                                monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "ci-artifact-token-93f1c2"
    monkeypatch.setenv("CI_TOKEN", secret)
    spec = _spec(format="junit", url=f"{report_server}/artifacts/unit.xml",
                 bearer_token="${CI_TOKEN}")
    outcome = await KIND.run(spec, ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message.startswith(f"{report_server}/artifacts/unit.xml: 2 tests")
    monkeypatch.setenv("CI_TOKEN", "wrong")
    denied = await KIND.run(spec, ctx)
    assert denied.status is Status.ERROR and denied.reason is Reason.AUTH
    missing = await KIND.run(_spec(format="junit", url=f"{report_server}/nothing.xml"), ctx)
    assert missing.status is Status.FAIL and "HTTP 404" in missing.message
    refused = await KIND.run(_spec(format="junit",
                                   url=f"http://127.0.0.1:{free_port()}/x.xml"), ctx)
    assert refused.status is Status.ERROR and refused.reason is Reason.CONNECT
    big = await KIND.run(_spec(format="junit", url=f"{report_server}/artifacts/big.xml",
                               max_age=None), ctx)
    assert big.status is Status.PASS and "5000 tests" in big.message  # read in full
    capped = await KIND.run(_spec(format="junit", url=f"{report_server}/artifacts/big.xml",
                                  max_bytes=100_000), ctx)
    assert capped.status is Status.ERROR and "exceeds max_bytes (100000 bytes)" in capped.message
    for result in (outcome, denied, missing, refused):
        assert secret not in result.message + repr(result.measurements)
    assert secret not in caplog.text


def test_spec_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one of path or url"):
        _spec(format="junit")
    with pytest.raises(ValueError, match="exactly one of path or url"):
        _spec(format="junit", path="a.xml", url="http://127.0.0.1/a.xml")
    with pytest.raises(ValueError, match="literal"):
        _spec(format="trivy", path="a", max_findings={"severe": 1})


def test_tls_and_credentials_only_with_a_url() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tls is only used with url"):
        _spec(format="junit", path="reports/*.xml", tls={"insecure_skip_verify": True})
    with pytest.raises(ValidationError, match="must not contain credentials"):
        _spec(format="junit", url="https://ci:hunter2@ci.example/junit.xml")
    spec = _spec(format="junit", url="https://ci.example/junit.xml",
                 tls={"ca_file": "/etc/ci-ca.pem", "server_name": "ci.internal"})
    assert spec.tls.server_name == "ci.internal"


async def test_an_unresolvable_report_host_is_a_dns_error(ctx: RuntimeContext) -> None:
    """Before the transport layer, `report` said error/connect where `http` said dns."""
    outcome = await KIND.run(_spec(format="junit",
                                   url="https://ci-artifacts.invalid/unit/junit.xml"), ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.DNS)
    assert "ci-artifacts.invalid" in outcome.message
