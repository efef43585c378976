"""Sharding (issue 16): `--shard N` / `--shard auto` split the checks across processes so
each check runs exactly once; aggregates never assume inputs they cannot see; every
shard's `readiness_go_live` combines into the fleet's go-live."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import config
from exporter.daemon import Runtime
from exporter.model import CheckView, Severity, Status
from exporter.probes.aggregate import KIND, AggregateCheck
from exporter.sharding import (
    ShardError,
    auto_shard,
    ordinal_of,
    placement,
    resolve_shard,
    shard_of,
    total_shards_of,
)
from tests.core.conftest import Daemon

TOTAL = 3
CHECK_INFO = re.compile(r'^readiness_check_info\{check="([^"]+)"', re.M)
SHARD_INFO = re.compile(r'^readiness_shard_info\{shard="(\d+)",total_shards="(\d+)"\} 1', re.M)
GO_LIVE = re.compile(r"^readiness_go_live (\S+)$", re.M)


# ----------------------------------------------------------------------- the ordinal


@pytest.mark.parametrize(("name", "ordinal"), [
    ("readiness-0", 0), ("readiness-exporter-12", 12), ("a-b-3", 3),
    ("readiness", None), ("readiness-", None), ("readiness-x1", None), ("7", None),
])
def test_ordinal_is_the_numeric_suffix_of_the_pod_name(name: str, ordinal: int | None) -> None:
    assert ordinal_of(name) == ordinal


def test_auto_shard_prefers_pod_name_then_hostname() -> None:
    assert auto_shard({"POD_NAME": "readiness-2"}, hostname="other-0") == 2
    assert auto_shard({}, hostname="readiness-1") == 1
    with pytest.raises(ShardError, match="POD_NAME"):
        auto_shard({}, hostname="laptop")


def test_shard_and_total_are_checked_with_messages_naming_the_flag() -> None:
    assert resolve_shard("1", 3) == 1
    assert resolve_shard("auto", 3, env={"POD_NAME": "r-2"}) == 2
    with pytest.raises(ShardError, match=r"--total-shards.*replicas"):
        resolve_shard("auto", 3, env={"POD_NAME": "r-3"})
    with pytest.raises(ShardError, match="between 0 and 2"):
        resolve_shard("5", 3)
    with pytest.raises(ShardError, match="a number or 'auto'"):
        resolve_shard("first", 3)
    with pytest.raises(ShardError, match="at least 1"):
        resolve_shard("0", 0)
    assert total_shards_of(None, {"TOTAL_SHARDS": "4"}) == 4
    assert total_shards_of(2, {"TOTAL_SHARDS": "4"}) == 2
    assert total_shards_of(None, {}) == 1
    with pytest.raises(ShardError, match=r"\$TOTAL_SHARDS"):
        total_shards_of(None, {"TOTAL_SHARDS": "three"})


# ----------------------------------------------------------------------- placement


def env_check(check_id: str, variable: str = "HOME", severity: str = "critical") -> dict[str, Any]:
    return {"id": check_id, "section": "6.1", "title": check_id, "kind": "env",
            "severity": severity, "required": [variable], "interval": 60}


def fleet_config(checks: int, *, failing: str | None = None) -> dict[str, Any]:
    entries = [env_check(f"c{i}") for i in range(checks)]
    if failing is not None:
        entries.append(env_check(failing, variable="READINESS_TEST_NEVER_SET"))
    entries += [
        {"id": "staging-e2e", "section": "11.1", "title": "e2e", "kind": "env",
         "severity": "info", "required": ["HOME"]},
        {"id": "staging-signed", "section": "11.1", "title": "signed", "kind": "env",
         "severity": "info", "required": ["READINESS_TEST_NEVER_SET"]},
        {"id": "staging", "section": "11.1", "title": "staging", "kind": "aggregate",
         "severity": "critical", "ids": ["staging-e2e", "staging-signed"], "require": "any",
         "interval": 60},
        {"id": "11.3.1", "section": "11.3", "title": "health", "kind": "aggregate",
         "severity": "critical", "severities": ["critical"], "interval": 60},
    ]
    return {"settings": {"first_round_spread": 0.2}, "checks": entries}


def test_an_aggregate_listing_ids_keeps_its_inputs_on_its_shard() -> None:
    cfg = config.build(fleet_config(30), "test", {})
    keys = placement(cfg.checks)
    for total in (2, 3, 5):
        home = shard_of(keys["staging"], total)
        assert shard_of(keys["staging-e2e"], total) == home
        assert shard_of(keys["staging-signed"], total) == home
    assert keys["c1"] == "c1"  # everything else is placed by its own id
    assert keys["11.3.1"] == "11.3.1"  # a broad selection does not move its inputs


# ----------------------------------------------------------------------- aggregates


def view(check_id: str, status: Status | None, elsewhere: bool = False) -> CheckView:
    return CheckView(check_id, "6.1", Severity.CRITICAL, True, status,
                     None if status is None else time.time(), elsewhere=elsewhere)


def aggregate(**fields: Any) -> AggregateCheck:
    return AggregateCheck.model_validate({"id": "agg", "section": "11.3", "title": "agg",
                                          "kind": "aggregate", "severity": "critical",
                                          "timeout": 5, "first_result_wait": 0.5, **fields})


class Views:
    def __init__(self, views: list[CheckView]) -> None:
        self.views = views

    def __call__(self) -> list[CheckView]:
        return self.views


async def run_aggregate(spec: AggregateCheck, views: list[CheckView], tmp_path: Path) -> Any:
    from exporter.context import RuntimeContext

    ctx = RuntimeContext(state_dir=tmp_path, checks=Views(views))
    try:
        return await KIND.run(spec, ctx)
    finally:
        await ctx.aclose()


async def test_inputs_on_other_shards_are_never_assumed(tmp_path: Path) -> None:
    views = [view("a", Status.PASS), view("b", None, elsewhere=True)]
    outcome = await run_aggregate(aggregate(severities=["critical"]), views, tmp_path)
    assert outcome.status is Status.SKIPPED  # not pass: b is unseen, not passing
    assert "cannot see 1 of 2" in outcome.message and "b" in outcome.message
    states = {m.labels["state"]: m.value for m in outcome.measurements
              if m.family == "readiness_aggregate_checks"}
    assert states["other_shard"] == 1 and states["pass"] == 1 and states["not_run"] == 0


async def test_a_failure_this_shard_sees_still_fails(tmp_path: Path) -> None:
    views = [view("a", Status.FAIL), view("b", None, elsewhere=True)]
    outcome = await run_aggregate(aggregate(severities=["critical"]), views, tmp_path)
    assert outcome.status is Status.FAIL


async def test_listed_inputs_on_other_shards_are_not_reported_unconfigured(
        tmp_path: Path) -> None:
    views = [view("a", Status.FAIL), view("b", None, elsewhere=True)]
    outcome = await run_aggregate(aggregate(ids=["a", "b"], require="any"), views, tmp_path)
    assert outcome.status is Status.SKIPPED
    assert "not configured" not in outcome.message
    views = [view("a", Status.PASS), view("b", None, elsewhere=True)]
    outcome = await run_aggregate(aggregate(ids=["a", "b"], require="any"), views, tmp_path)
    assert outcome.status is Status.PASS


def test_a_shard_knows_the_other_shards_checks_without_results() -> None:
    cfg = config.build(fleet_config(12), "test", {})
    runtimes = [Runtime(cfg, None, shard=i, total_shards=TOTAL) for i in range(TOTAL)]
    owned = [set(r.store.states) for r in runtimes]
    for runtime, mine in zip(runtimes, owned, strict=True):
        views = runtime.check_views()
        assert {v.id for v in views} == {c.id for c in cfg.checks}
        assert {v.id for v in views if not v.elsewhere} == mine
        assert all(v.status is None for v in views if v.elsewhere)
    assert sum(len(m) for m in owned) == len(cfg.checks)


# ----------------------------------------------------------------------- real processes


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def wait_ready(daemon: Daemon, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if get(daemon.url + "/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError("not ready in time:\n" + daemon.logs())


def start_fleet(tmp_path: Path, cfg: dict[str, Any], mode: str) -> list[Daemon]:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    daemons = []
    for i in range(TOTAL):
        cwd = tmp_path / f"pod-{i}"
        cwd.mkdir()
        env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
        if mode == "explicit":
            args = ["--shard", str(i), "--total-shards", str(TOTAL)]
        else:  # what the chart's StatefulSet sets: POD_NAME (downward API), TOTAL_SHARDS
            args = ["--shard", "auto"]
            env |= {"POD_NAME": f"readiness-{i}", "TOTAL_SHARDS": str(TOTAL)}
        daemons.append(Daemon(["--config.file", str(path), *args], env, cwd))
    return daemons


@pytest.mark.parametrize("mode", ["explicit", "auto"])
def test_three_processes_cover_every_check_exactly_once(tmp_path: Path, mode: str) -> None:
    cfg = fleet_config(40)
    daemons = start_fleet(tmp_path, cfg, mode)
    try:
        for daemon in daemons:
            wait_ready(daemon)
        bodies = [get(d.url + "/metrics")[1] for d in daemons]
    finally:
        for daemon in daemons:
            daemon.stop()
    seen = [set(CHECK_INFO.findall(body)) for body in bodies]
    expected = {c["id"] for c in cfg["checks"]}
    assert set().union(*seen) == expected
    assert sum(len(s) for s in seen) == len(expected), "a check runs on two shards"
    assert all(seen), "a shard got no check"
    assert [SHARD_INFO.findall(body) for body in bodies] == [
        [(str(i), str(TOTAL))] for i in range(TOTAL)]
    # Every check passes: each shard's go-live is 1, so the fleet's (their minimum, the
    # readiness:go_live rule) is 1, although 11.3.1 sees only its own shard's inputs.
    assert [GO_LIVE.findall(body) for body in bodies] == [["1.0"]] * TOTAL
    owner = next(body for body in bodies if 'check="11.3.1"' in body)
    assert re.search(r'readiness_check_status\{check="11.3.1".*status="skipped"\} 1', owner)
    assert re.search(r'readiness_aggregate_checks\{check="11.3.1",state="other_shard"\} '
                     r'[1-9]', owner)


def test_a_failing_check_on_one_shard_holds_the_fleets_go_live(tmp_path: Path) -> None:
    cfg = fleet_config(40, failing="broken")
    daemons = start_fleet(tmp_path, cfg, "explicit")
    try:
        for daemon in daemons:
            wait_ready(daemon)
        bodies = [get(d.url + "/metrics")[1] for d in daemons]
    finally:
        for daemon in daemons:
            daemon.stop()
    go_live = {i: GO_LIVE.findall(body) for i, body in enumerate(bodies)}
    owner = next(i for i, body in enumerate(bodies) if 'check="broken"' in body)
    assert go_live[owner] == ["0.0"]
    assert min(float(v[0]) for v in go_live.values()) == 0  # readiness:go_live is 0


@pytest.mark.parametrize(("args", "env", "names"), [
    (["--shard", "auto", "--total-shards", "3"], {"POD_NAME": "readiness"}, "POD_NAME"),
    (["--shard", "auto"], {"POD_NAME": "readiness-4", "TOTAL_SHARDS": "3"}, "--total-shards"),
    (["--shard", "3", "--total-shards", "3"], {}, "between 0 and 2"),
    (["--shard", "auto"], {"POD_NAME": "readiness-0", "TOTAL_SHARDS": "x"}, "$TOTAL_SHARDS"),
], ids=["no-ordinal", "ordinal-too-big", "shard-too-big", "bad-total-env"])
def test_serve_refuses_a_shard_it_cannot_take(tmp_path: Path, args: list[str],
                                              env: dict[str, str], names: str) -> None:
    import subprocess

    from tests.core.conftest import EXE

    result = subprocess.run([str(EXE), "serve", "--web.listen-address", "127.0.0.1:1", *args],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env})
    assert result.returncode == 2, result.stderr
    assert names in result.stderr
    assert "Traceback" not in result.stderr
