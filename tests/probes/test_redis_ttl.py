"""`kind: redis, aspect: ttl`: bounded SCAN + PTTL review on real keyspaces (up to 1M keys)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.model import Status
from tests.probes.test_redis import cli, conn, run_once, samples, value
from tests.support.servers import RedisServer, redis_server

SESSIONS = 600_000  # keys "sess:N" with a TTL
CACHE = 400_000  # keys "cache:N" without one


@pytest.fixture(scope="module")
def million() -> Iterator[RedisServer]:
    """1,000,000 keys built server-side in about a second (DEBUG POPULATE + one script)."""
    with redis_server(["--enable-debug-command", "yes"]) as server:
        cli(server, "DEBUG", "POPULATE", str(SESSIONS), "sess", "8")
        cli(server, "EVAL", "for i = 0, tonumber(ARGV[1]) - 1 do "
            "redis.call('PEXPIRE', 'sess:' .. i, 3600000) end", "0", str(SESSIONS))
        cli(server, "DEBUG", "POPULATE", str(CACHE), "cache", "8")
        assert cli(server, "DBSIZE") == str(SESSIONS + CACHE)
        yield server


def stats(server: RedisServer) -> dict[str, int]:
    """calls per command from INFO commandstats."""
    result = {}
    for line in cli(server, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            result[name.removeprefix("cmdstat_")] = int(rest.split(",")[0].split("=")[1])
    return result


async def test_sample_of_a_million_keys_is_bounded_and_finds_the_offender(
        million: RedisServer, tmp_path: Path) -> None:
    cli(million, "CONFIG", "RESETSTAT")
    # the key cap is the bound under test: the time budget is wide enough that a loaded
    # machine does not stop the walk first
    outcome = await run_once(conn(million), tmp_path, aspect="ttl", timeout=150,
                             ttl={"max_keys": 50_000, "time_budget": 120})
    assert outcome.status is Status.FAIL, outcome
    assert outcome.message.startswith("keys without TTL above 10%: cache 100%")
    assert "a sample of 50000 of ~1000000" in outcome.message
    assert value(outcome, "readiness_redis_ttl_keys_sampled") == 50_000
    assert value(outcome, "readiness_redis_ttl_scan_complete") == 0
    assert value(outcome, "readiness_redis_keyspace_keys") == 1_000_000
    ratios = samples(outcome, "readiness_redis_ttl_prefix_without_ttl_ratio")
    assert ratios == {(("prefix", "cache"),): 1.0, (("prefix", "sess"),): 0.0}
    sampled = samples(outcome, "readiness_redis_ttl_prefix_keys_sampled")
    # SCAN order is hash order: the sample mirrors the 40/60 split of the keyspace.
    assert 0.35 < sampled[(("prefix", "cache"),)] / 50_000 < 0.45
    assert 0.35 < value(outcome, "readiness_redis_ttl_without_ttl_ratio") < 0.45
    calls = stats(million)
    assert "keys" not in calls
    assert calls["pttl"] == 50_000
    assert calls["scan"] >= 400  # COUNT 100 per call (a hint: a call may return more)


async def test_ignored_prefix_and_time_budget(million: RedisServer, tmp_path: Path) -> None:
    outcome = await run_once(conn(million), tmp_path, aspect="ttl", timeout=5,
                             ttl={"max_keys": 1_000_000, "time_budget": "50ms",
                                  "ignore_prefixes": ["cache"]})
    assert outcome.status is Status.PASS, outcome
    sampled = value(outcome, "readiness_redis_ttl_keys_sampled")
    assert 0 < sampled < 1_000_000  # stopped by the time budget, not the key cap
    assert value(outcome, "readiness_redis_ttl_scan_complete") == 0
    # ignored keys are still exported as facts
    assert samples(outcome, "readiness_redis_ttl_prefix_without_ttl_ratio")[
        (("prefix", "cache"),)] == 1.0


@pytest.fixture(scope="module")
def prefixes() -> Iterator[RedisServer]:
    """30 prefixes p00..p29 with 30-i keys each; half of each prefix's keys expire."""
    with redis_server() as server:
        lines = []
        for i in range(30):
            for j in range(30 - i):
                ttl = " PX 600000" if j % 2 else ""
                lines.append(f"SET p{i:02d}:{j} v{ttl}")
        lines += ["SET loose1 v", "SET loose2 v PX 600000", "SET other:x v PX 600000"]
        subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"],
                       input="\r\n".join(lines) + "\r\n", text=True, check=True,
                       capture_output=True, timeout=30)
        yield server


async def test_labels_are_bounded_to_top_prefixes_and_other(prefixes: RedisServer,
                                                             tmp_path: Path) -> None:
    outcome = await run_once(conn(prefixes), tmp_path, aspect="ttl", timeout=5,
                             ttl={"top_prefixes": 5, "max_share_without_ttl": 0.52,
                                  "scan_count": 7, "time_budget": 4})
    assert outcome.status is Status.PASS, outcome
    assert value(outcome, "readiness_redis_ttl_scan_complete") == 1
    total = sum(30 - i for i in range(30)) + 3
    assert value(outcome, "readiness_redis_ttl_keys_sampled") == total
    sampled = samples(outcome, "readiness_redis_ttl_prefix_keys_sampled")
    assert sorted(dict(k)["prefix"] for k in sampled) == [
        "other", "p00", "p01", "p02", "p03", "p04"]
    assert sampled[(("prefix", "p00"),)] == 30
    assert sampled[(("prefix", "other"),)] == total - (30 + 29 + 28 + 27 + 26)
    ratios = samples(outcome, "readiness_redis_ttl_prefix_without_ttl_ratio")
    assert ratios[(("prefix", "p00"),)] == 0.5
    assert ratios[(("prefix", "p01"),)] == 15 / 29  # 0.517: below 0.52
    # the real prefix "other" (other:x) folds into the "other" bucket with p05..p29
    assert ratios[(("prefix", "other"),)] == 170 / 328
    # a lower threshold catches every bucket
    strict = await run_once(conn(prefixes), tmp_path, aspect="ttl", timeout=5,
                            ttl={"top_prefixes": 5, "max_share_without_ttl": 0.4,
                                 "time_budget": 4})
    assert strict.status is Status.FAIL
    assert "and 3 more" in strict.message  # five top prefixes + other, three named


async def test_threshold_is_per_prefix_and_separator_is_configurable(prefixes: RedisServer,
                                                                      tmp_path: Path) -> None:
    outcome = await run_once(conn(prefixes), tmp_path, aspect="ttl", timeout=5,
                             ttl={"top_prefixes": 40, "max_share_without_ttl": 0.5,
                                  "time_budget": 4})
    assert outcome.status is Status.FAIL  # odd-sized prefixes: (n+1)/2 of n > 50 %
    # worst first: p29 (1 key, no TTL), p27 (2 of 3), p25 (3 of 5); p00 at 50 % passes
    assert "above 50%: p29 100%, p27 67%, p25 60% and 12 more" in outcome.message
    ratios = samples(outcome, "readiness_redis_ttl_prefix_without_ttl_ratio")
    assert ratios[(("prefix", "(none)"),)] == 0.5  # loose1 (no TTL), loose2 (TTL)
    dash = await run_once(conn(prefixes), tmp_path, aspect="ttl", timeout=5,
                          ttl={"separator": "0", "match": "p1*", "time_budget": 4,
                               "max_share_without_ttl": 1})
    assert dash.status is Status.PASS
    labels = {dict(k)["prefix"] for k in
              samples(dash, "readiness_redis_ttl_prefix_keys_sampled")}
    assert "p1" in labels and "p" not in labels


async def test_empty_database_passes(prefixes: RedisServer, tmp_path: Path) -> None:
    outcome = await run_once({**conn(prefixes), "db": 5}, tmp_path, aspect="ttl",
                             timeout=5, ttl={"time_budget": 4})
    assert outcome.status is Status.PASS
    assert outcome.message == "no keys to review"
    assert value(outcome, "readiness_redis_ttl_scan_complete") == 1


@pytest.fixture
def long_ttls() -> Iterator[RedisServer]:
    """sessions with a 1 h TTL, tokens with a 10-year TTL, one setting without any."""
    with redis_server() as server:
        ten_years_ms = 10 * 365 * 86_400 * 1000
        lines = [f"SET sess:{i} v PX 3600000" for i in range(20)]
        lines += [f"SET token:{i} v PX {ten_years_ms}" for i in range(20)]
        subprocess.run(["redis-cli", "-p", str(server.port), "--pipe"],
                       input="\r\n".join(lines) + "\r\n", text=True, check=True,
                       capture_output=True, timeout=30)
        yield server


async def test_ten_year_ttl_is_not_a_ttl(long_ttls: RedisServer, tmp_path: Path) -> None:
    # the old rule: every key has a TTL, so the review passed
    old = await run_once(conn(long_ttls), tmp_path, aspect="ttl", timeout=5,
                         ttl={"time_budget": 4})
    assert old.status is Status.PASS, old
    limited = await run_once(conn(long_ttls), tmp_path, aspect="ttl", timeout=5,
                             ttl={"time_budget": 4, "max_ttl": "30d"})
    assert limited.status is Status.FAIL, limited
    assert limited.message.startswith("keys without TTL (or over max TTL) above 10%: token 100%")
    ratios = samples(limited, "readiness_redis_ttl_prefix_without_ttl_ratio")
    assert ratios[(("prefix", "sess"),)] == 0.0
    assert ratios[(("prefix", "token"),)] == 1.0


async def test_max_ttl_per_prefix_overrides_the_default(long_ttls: RedisServer,
                                                        tmp_path: Path) -> None:
    # tokens may live 3660 days; sessions may live only 30 minutes, and live 1 h
    outcome = await run_once(conn(long_ttls), tmp_path, aspect="ttl", timeout=5,
                             ttl={"time_budget": 4, "max_ttl": "30d",
                                  "max_ttl_per_prefix": {"token": "3660d", "sess": "30m"}})
    assert outcome.status is Status.FAIL, outcome
    assert ": sess 100%" in outcome.message
    within = await run_once(conn(long_ttls), tmp_path, aspect="ttl", timeout=5,
                            ttl={"time_budget": 4, "max_ttl": "30d",
                                 "max_ttl_per_prefix": {"token": "3660d"}})
    assert within.status is Status.PASS, within
    assert "keys without TTL (or over max TTL), every prefix within 10%" in within.message
