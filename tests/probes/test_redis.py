"""`kind: redis` against real redis-server instances on free loopback ports."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter import config, lint
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.redis.probe import KIND, RedisCheck, run
from exporter.transport.redis import REDIS, RedisClient, RedisConnection, RedisOptions
from tests.support.servers import RedisServer, free_port, redis_server, start_redis
from tests.transport.kv_servers import redis_tls

PASSWORD = "pw-Zq81-never-shown"

# --------------------------------------------------------------------------- helpers


def build(connection: dict[str, Any], **check: Any) -> tuple[config.Config, RedisCheck]:
    """Validate one redis check on connection `cache` through the real config path."""
    raw = {"id": "3.2.x", "section": "3.2", "title": "redis", "kind": "redis",
           "connection": "cache", **check}
    cfg = config.build({"connections": {"cache": {"kind": "redis", **connection}},
                        "checks": [raw]}, "test")
    spec = cfg.checks[0]
    assert isinstance(spec, RedisCheck)
    return cfg, spec


@asynccontextmanager
async def runtime(cfg: config.Config, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    """A runtime context holding the config's connections, closed afterwards."""
    ctx = RuntimeContext(cfg.connections, state_dir=tmp_path / "state")
    try:
        yield ctx
    finally:
        await ctx.aclose()


async def run_once(connection: dict[str, Any], tmp_path: Path, **check: Any) -> Outcome:
    """Build, run once in a fresh context, close."""
    cfg, spec = build(connection, **check)
    async with runtime(cfg, tmp_path) as ctx:
        return await KIND.run(spec, ctx)


def samples(outcome: Outcome, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one family: sorted label items -> value."""
    return {tuple(sorted(m.labels.items())): m.value
            for m in outcome.measurements if m.family == family}


def value(outcome: Outcome, family: str) -> float:
    """The single unlabelled sample of `family`."""
    found = samples(outcome, family)
    assert list(found) == [()], (family, found)
    return found[()]


def assert_secret_absent(secret: str, outcomes: Iterable[Outcome],
                         caplog: pytest.LogCaptureFixture) -> None:
    """The secret is in no message, label or log record."""
    for outcome in outcomes:
        assert secret not in repr(outcome)
        for m in outcome.measurements:
            assert all(secret not in k and secret not in v for k, v in m.labels.items())
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)


async def shared_client(ctx: RuntimeContext, name: str = "cache") -> RedisClient:
    """The runtime's client of connection `name` (what the probe uses)."""
    declared = await ctx.connection(name)
    assert isinstance(declared, RedisConnection)
    return await ctx.client(REDIS, RedisOptions(name, declared))


def conn(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "command_timeout": 2, **extra}


def cli(server: RedisServer, *args: str) -> str:
    argv = ["redis-cli", "-p", str(server.port)]
    if server.password:
        argv += ["-a", server.password, "--no-auth-warning"]
    return subprocess.run([*argv, *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def plain() -> Iterator[RedisServer]:
    """No password, no persistence, DEBUG allowed."""
    with redis_server(["--enable-debug-command", "yes"]) as server:
        yield server


@pytest.fixture(scope="module")
def secured(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """requirepass set; REDIS_TEST_PASSWORD holds it."""
    monkeypatch_module.setenv("REDIS_TEST_PASSWORD", PASSWORD)
    monkeypatch_module.setenv("REDIS_WRONG_PASSWORD", PASSWORD + "-wrong")
    with redis_server(password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


# --------------------------------------------------------------------------- ping


async def test_ping_passes_with_version_and_role(plain: RedisServer, tmp_path: Path) -> None:
    outcome = await run_once(conn(plain), tmp_path, aspect="ping")
    assert outcome.status is Status.PASS, outcome
    assert value(outcome, "readiness_redis_up") == 1
    [(labels, _one)] = samples(outcome, "readiness_redis_server_info").items()
    assert dict(labels)["role"] == "master" and dict(labels)["version"].startswith("7.")
    assert 0 < value(outcome, "readiness_redis_ping_seconds") < 2


async def test_url_form_selects_host_port_and_db(plain: RedisServer, tmp_path: Path) -> None:
    cli(plain, "-n", "3", "SET", "url:probe", "x")
    outcome = await run_once({"url": f"redis://127.0.0.1:{plain.port}/3"}, tmp_path,
                             aspect="ttl", timeout=5, ttl={"time_budget": 1})
    assert value(outcome, "readiness_redis_keyspace_keys") == 1
    assert samples(outcome, "readiness_redis_ttl_prefix_keys_sampled") == {
        (("prefix", "url"),): 1.0}


def test_url_with_password_is_rejected_by_config() -> None:
    with pytest.raises(config.ConfigError) as err:
        build({"url": "redis://:hunter2@127.0.0.1:6379/0"}, aspect="ping")
    text = str(err.value)
    assert "connections.cache" in text and "password" in text and "hunter2" not in text


def test_options_of_another_aspect_are_rejected() -> None:
    with pytest.raises(config.ConfigError) as err:
        build({"port": 6379}, aspect="ping", ttl={"max_keys": 10})
    assert "ttl: options only apply to aspect ttl" in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        build({"port": 6379}, aspect="ttl", timeout=5, ttl={"time_budget": 9})
    assert "time_budget" in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        build({"port": 6379}, aspect="ttl", ttl={"max_share_without_ttl": 2})
    assert "max_share_without_ttl" in str(err.value)


def test_check_must_name_a_redis_connection() -> None:
    raw = {"id": "3.2.1", "section": "3.2", "title": "t", "kind": "redis",
           "connection": "nope"}
    with pytest.raises(config.ConfigError) as err:
        config.build({"checks": [raw]}, "test")
    assert "no connection named 'nope'" in str(err.value)


# --------------------------------------------------------------------------- errors


async def test_refused_is_error_connect(tmp_path: Path) -> None:
    outcome = await run_once({"port": free_port()}, tmp_path, aspect="ping")
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONNECT), outcome
    assert value(outcome, "readiness_redis_up") == 0
    outcome = await run_once({"port": free_port()}, tmp_path, aspect="auth")
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONNECT), outcome


async def test_wrong_password_is_error_auth_and_never_shown(
        secured: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = conn(secured, password="${REDIS_WRONG_PASSWORD}")
    outcomes = [await run_once(wrong, tmp_path, aspect=aspect)
                for aspect in ("ping", "auth", "persistence")]
    outcomes.append(await run_once(wrong, tmp_path, aspect="ttl", timeout=5,
                                   ttl={"time_budget": 1}))
    for outcome in outcomes:
        assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome
        assert f"127.0.0.1:{secured.port} rejected the credentials" in outcome.message
    missing = await run_once(conn(secured), tmp_path, aspect="ping")
    assert (missing.status, missing.reason) == (Status.ERROR, Reason.AUTH)
    good = await run_once(conn(secured, password="${REDIS_TEST_PASSWORD}"), tmp_path,
                          aspect="ping")
    assert good.status is Status.PASS
    assert_secret_absent(PASSWORD, [*outcomes, missing, good], caplog)


async def test_env_fields_are_read_when_connecting(
        secured: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("RT_REDIS_HOST", "RT_REDIS_PORT", "RT_REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    env_conn = {"host": "127.0.0.1", "port": free_port(), "host_env": "RT_REDIS_HOST",
                "port_env": "RT_REDIS_PORT", "password_env": "RT_REDIS_PASSWORD"}
    build(env_conn, aspect="ping")  # loads with none of them set
    # unset: host/port fields apply (nothing listens there)
    unset = await run_once(env_conn, tmp_path, aspect="ping")
    assert (unset.status, unset.reason) == (Status.ERROR, Reason.CONNECT), unset
    monkeypatch.setenv("RT_REDIS_HOST", "localhost")
    monkeypatch.setenv("RT_REDIS_PORT", str(secured.port))
    no_password = await run_once(env_conn, tmp_path, aspect="ping")
    assert (no_password.status, no_password.reason) == (Status.ERROR, Reason.AUTH)
    assert f"localhost:{secured.port}" in no_password.message
    auth_only = await run_once(env_conn, tmp_path, aspect="auth")  # NOAUTH part needs none
    assert auth_only.status is Status.PASS, auth_only
    monkeypatch.setenv("RT_REDIS_PASSWORD", PASSWORD)
    good = await run_once(env_conn, tmp_path, aspect="ping")
    assert good.status is Status.PASS, good
    monkeypatch.setenv("RT_REDIS_PORT", "not-a-port")
    bad = await run_once(env_conn, tmp_path, aspect="ping")
    assert (bad.status, bad.reason) == (Status.ERROR, Reason.CONFIG)
    assert bad.message == ("connections.cache.port_env: RT_REDIS_PORT is not a port number "
                           "(set it to one)")
    assert_secret_absent(PASSWORD, [unset, no_password, auth_only, good, bad], caplog)
    with pytest.raises(config.ConfigError) as err:
        build({**env_conn, "password": "${REDIS_TEST_PASSWORD}"}, aspect="ping")
    assert "either password or password_env" in str(err.value)


async def test_missing_password_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Resolved at each run: a warning at load, `error/config` naming it at run time."""
    monkeypatch.delenv("REDIS_UNSET_PASSWORD", raising=False)
    cfg, spec = build({"port": 6379, "password": "${REDIS_UNSET_PASSWORD}"}, aspect="ping")
    assert any("REDIS_UNSET_PASSWORD" in w for w in lint.config_warnings(cfg))
    async with runtime(cfg, tmp_path) as ctx:
        outcome = await KIND.run(spec, ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome
    assert "REDIS_UNSET_PASSWORD" in outcome.message


async def test_debug_sleep_is_error_timeout_then_recovers(plain: RedisServer,
                                                          tmp_path: Path) -> None:
    cfg, spec = build(conn(plain, command_timeout=0.5), aspect="ping")
    async with runtime(cfg, tmp_path) as ctx:
        assert (await KIND.run(spec, ctx)).status is Status.PASS
        sleeper = subprocess.Popen(["redis-cli", "-p", str(plain.port), "DEBUG", "SLEEP", "2"],
                                   stdout=subprocess.DEVNULL)
        try:
            await asyncio.sleep(0.2)
            started = time.monotonic()
            outcome = await KIND.run(spec, ctx)
            assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.TIMEOUT), outcome
            assert time.monotonic() - started < 1.9  # gave up before the server woke
        finally:
            sleeper.wait(timeout=10)
        after = await KIND.run(spec, ctx)
        assert after.status is Status.PASS, after


async def test_server_stop_mid_run_and_back_recovers(tmp_path: Path) -> None:
    server = start_redis()
    try:
        cfg, spec = build(conn(server), aspect="ping")
        async with runtime(cfg, tmp_path) as ctx:
            assert (await KIND.run(spec, ctx)).status is Status.PASS
            client = (await shared_client(ctx)).client
            server.stop()
            down = await KIND.run(spec, ctx)
            assert (down.status, down.reason) == (Status.ERROR, Reason.CONNECT), down
            server = start_redis(port=server.port, directory=server.dir)
            back = await KIND.run(spec, ctx)
            assert back.status is Status.PASS, back
            assert (await shared_client(ctx)).client is client  # same shared client
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


async def test_server_killed_during_a_ttl_review_then_back(tmp_path: Path) -> None:
    server = start_redis(["--enable-debug-command", "yes"])
    try:
        cli(server, "DEBUG", "POPULATE", "300000", "k", "4")
        cfg, spec = build(conn(server), aspect="ttl", timeout=20,
                          ttl={"scan_count": 10, "max_keys": 300_000, "time_budget": 15,
                               "max_share_without_ttl": 1})
        async with runtime(cfg, tmp_path) as ctx:
            running = asyncio.create_task(run(spec, ctx))
            await asyncio.sleep(0.3)
            assert not running.done()
            server.process.kill()  # mid-walk, no goodbye
            server.process.wait()
            down = await running
            assert (down.status, down.reason) == (Status.ERROR, Reason.CONNECT), down
            assert down.message.startswith("TTL review")
            server = start_redis(port=server.port, directory=server.dir)
            cli(server, "SET", "k:again", "x")
            back = await KIND.run(spec, ctx)
            assert back.status is Status.PASS, back
            assert value(back, "readiness_redis_ttl_keys_sampled") == 1
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


async def test_client_is_shared_across_runs(plain: RedisServer, tmp_path: Path) -> None:
    cfg, spec = build(conn(plain), aspect="ping")
    before = int(cli(plain, "INFO", "stats").split("total_connections_received:")[1].split()[0])
    async with runtime(cfg, tmp_path) as ctx:
        for _ in range(20):
            assert (await KIND.run(spec, ctx)).status is Status.PASS
    after = int(cli(plain, "INFO", "stats").split("total_connections_received:")[1].split()[0])
    assert after - before <= 2  # one pooled connection (+ the second redis-cli call)


# --------------------------------------------------------------------------- auth


async def test_auth_fails_without_password(plain: RedisServer, tmp_path: Path) -> None:
    outcome = await run_once(conn(plain), tmp_path, aspect="auth")
    assert outcome.status is Status.FAIL, outcome
    assert "no password required" in outcome.message
    assert value(outcome, "readiness_redis_auth_required") == 0


async def test_auth_passes_with_requirepass_and_reads_acl(
        secured: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await run_once(conn(secured, password="${REDIS_TEST_PASSWORD}"), tmp_path,
                             aspect="auth")
    assert outcome.status is Status.PASS, outcome
    assert value(outcome, "readiness_redis_auth_required") == 1
    assert value(outcome, "readiness_redis_default_user_nopass") == 0
    assert "default user has a password" in outcome.message
    # Without credentials the NOAUTH part still answers; the ACL part is not claimed.
    bare = await run_once(conn(secured), tmp_path, aspect="auth")
    assert bare.status is Status.PASS and "ACL not checked" in bare.message
    assert samples(bare, "readiness_redis_default_user_nopass") == {}
    assert_secret_absent(PASSWORD, [outcome, bare], caplog)


async def test_auth_fails_when_default_user_is_nopass_beside_acl_user(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The app user has a password, but `default` stays nopass: unauthenticated access works.
    with redis_server() as server:
        cli(server, "ACL", "SETUSER", "monitor", "on", f">{PASSWORD}", "+@all", "~*")
        monkeypatch.setenv("REDIS_MONITOR_PASSWORD", PASSWORD)
        outcome = await run_once(conn(server, username="monitor",
                                      password="${REDIS_MONITOR_PASSWORD}"),
                                 tmp_path, aspect="auth")
        assert outcome.status is Status.FAIL, outcome
        assert value(outcome, "readiness_redis_default_user_nopass") == 1
        assert "default user is nopass" in outcome.message
        # default user switched off: NOAUTH for strangers, and nopass no longer matters.
        cli(server, "ACL", "SETUSER", "default", "off")
        outcome = await run_once(conn(server, username="monitor",
                                      password="${REDIS_MONITOR_PASSWORD}"),
                                 tmp_path, aspect="auth")
        assert outcome.status is Status.PASS, outcome
        assert value(outcome, "readiness_redis_default_user_nopass") == 0


async def test_auth_with_acl_unreadable_still_judges_noauth(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server(password=PASSWORD) as server:
        cli(server, "ACL", "SETUSER", "probe", "on", f">{PASSWORD}", "+@all", "-acl", "~*")
        monkeypatch.setenv("REDIS_PROBE_PASSWORD", PASSWORD)
        outcome = await run_once(conn(server, username="probe",
                                      password="${REDIS_PROBE_PASSWORD}"),
                                 tmp_path, aspect="auth")
    assert outcome.status is Status.PASS, outcome
    assert "ACL not readable" in outcome.message
    assert samples(outcome, "readiness_redis_default_user_nopass") == {}


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    certs = tmp_path_factory.mktemp("redis-tls")
    with redis_tls(trustme.CA(), certs, PASSWORD) as server:
        yield server, certs / "ca.pem"


async def test_tls_ping_and_auth(tls_server: tuple[RedisServer, Path], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server, ca = tls_server
    monkeypatch.setenv("REDIS_TLS_PASSWORD", PASSWORD)
    url = {"url": f"rediss://127.0.0.1:{server.port}/0", "tls": {"ca_file": str(ca)},
           "password": "${REDIS_TLS_PASSWORD}"}
    ping = await run_once(url, tmp_path, aspect="ping")
    assert ping.status is Status.PASS, ping
    auth = await run_once(url, tmp_path, aspect="auth")
    assert auth.status is Status.PASS, auth
    assert value(auth, "readiness_redis_auth_required") == 1


async def test_tls_untrusted_is_error_tls(tls_server: tuple[RedisServer, Path],
                                          tmp_path: Path) -> None:
    server, _ = tls_server
    for aspect in ("ping", "auth"):
        outcome = await run_once({"port": server.port, "tls": {}}, tmp_path, aspect=aspect)
        assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.TLS), outcome
        assert f"TLS certificate of 127.0.0.1:{server.port} rejected" in outcome.message


async def test_tls_server_name_is_sent_and_verified(tls_server: tuple[RedisServer, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`tls.server_name` is the name verified in the certificate (and sent as SNI)."""
    server, ca = tls_server
    monkeypatch.setenv("REDIS_TLS_PASSWORD", PASSWORD)
    base = {"host": "127.0.0.1", "port": server.port, "password": "${REDIS_TLS_PASSWORD}"}
    for aspect in ("ping", "auth"):
        named = await run_once({**base, "tls": {"ca_file": str(ca), "server_name": "localhost"}},
                               tmp_path, aspect=aspect)
        assert named.status is Status.PASS, named
        other = await run_once({**base, "tls": {"ca_file": str(ca),
                                                "server_name": "cache.example"}},
                               tmp_path, aspect=aspect)
        assert (other.status, other.reason) == (Status.ERROR, Reason.TLS), other


async def test_a_rotated_ca_file_reopens_the_client(tls_server: tuple[RedisServer, Path],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server, ca = tls_server
    rotated = tmp_path / "ca.pem"
    shutil.copy(ca, rotated)
    monkeypatch.setenv("REDIS_TLS_PASSWORD", PASSWORD)
    cfg, spec = build({"port": server.port, "password": "${REDIS_TLS_PASSWORD}",
                       "tls": {"ca_file": str(rotated)}}, aspect="ping")
    async with runtime(cfg, tmp_path) as ctx:
        assert (await KIND.run(spec, ctx)).status is Status.PASS
        before = await shared_client(ctx)
        assert (await shared_client(ctx)) is before
        os.utime(rotated, (time.time() + 60, time.time() + 60))  # a new CA bundle lands
        assert (await KIND.run(spec, ctx)).status is Status.PASS
        assert (await shared_client(ctx)) is not before


async def test_old_flat_tls_spelling_still_connects(tls_server: tuple[RedisServer, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server, ca = tls_server
    monkeypatch.setenv("REDIS_TLS_PASSWORD", PASSWORD)
    old = {"port": server.port, "tls": True, "ca_file": str(ca),
           "password": "${REDIS_TLS_PASSWORD}"}
    outcome = await run_once(old, tmp_path, aspect="ping")
    assert outcome.status is Status.PASS, outcome


def test_old_tls_spellings_load_with_deprecation_warnings(tmp_path: Path) -> None:
    files = {name: str(tmp_path / f"{name}.pem") for name in ("ca_file", "cert_file",
                                                              "key_file")}
    cfg, _ = build({"port": 6380, "tls": True, **files}, aspect="ping")
    declared = cfg.connections["cache"]
    assert isinstance(declared, RedisConnection)
    assert declared.tls is not None
    assert (declared.tls.ca_file, declared.tls.cert_file, declared.tls.key_file) == (
        tmp_path / "ca_file.pem", tmp_path / "cert_file.pem", tmp_path / "key_file.pem")
    assert lint.config_warnings(cfg) == [
        "connections.cache.tls: true|false is deprecated: write connections.cache.tls: "
        "{...} (a TLS block; none for plain text) (the old name is accepted until the next "
        "release)",
        *(f"connections.cache.{name} is deprecated: write connections.cache.tls.{name} (the "
          "old name is accepted until the next release)" for name in files)]
    plain, _ = build({"port": 6379, "tls": False}, aspect="ping")
    assert plain.connections["cache"].tls is None  # type: ignore[attr-defined]
    modern, _ = build({"url": "rediss://127.0.0.1:6380/0", "tls": {"ca_file": files["ca_file"]}},
                      aspect="ping")
    assert lint.config_warnings(modern) == []
    assert modern.connections["cache"].tls.ca_file == tmp_path / "ca_file.pem"  # type: ignore[attr-defined]
    for bad, message in (
            ({"tls": False, "ca_file": files["ca_file"]}, "tls: false with ca_file"),
            ({"url": "redis://127.0.0.1:6379/0", "tls": {}}, "a tls block needs a rediss://"),
            ({"tls": {"ca_file": files["ca_file"]}, "ca_file": files["ca_file"]},
             "ca_file is the old spelling of tls.ca_file"),
            ({"tls": {"cert_file": files["cert_file"]}}, "cert_file and key_file go together")):
        with pytest.raises(config.ConfigError) as err:
            build(bad, aspect="ping")
        assert message in str(err.value), bad


async def test_missing_tls_file_names_the_connection_option(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    outcome = await run_once({"port": free_port(), "tls": {"ca_file": str(missing)}},
                             tmp_path, aspect="ping")
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome
    assert outcome.message.startswith(f"connections.cache.tls.ca_file: {missing} does not "
                                      "exist")


async def test_rotated_password_file_is_read_by_the_next_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The password is read from its reference each time a connection is made: after a
    rotation (new file content, server reconfigured, connections dropped) the next run
    passes without restarting the exporter."""
    caplog.set_level(logging.DEBUG)
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(PASSWORD + "\n")
    rotated = PASSWORD + "-rotated"
    with redis_server(password=PASSWORD) as server:
        cfg, spec = build(conn(server, password={"file": str(secret_file)}), aspect="ping")
        async with runtime(cfg, tmp_path) as ctx:
            first = await KIND.run(spec, ctx)
            assert first.status is Status.PASS, first
            cli(server, "CONFIG", "SET", "requirepass", rotated)
            server.password = rotated
            secret_file.write_text(rotated + "\n")
            cli(server, "CLIENT", "KILL", "TYPE", "normal")
            after = await KIND.run(spec, ctx)
            assert after.status is Status.PASS, after
    assert_secret_absent(rotated, [first, after], caplog)


# --------------------------------------------------------------------------- persistence


async def test_no_persistence_fails(plain: RedisServer, tmp_path: Path) -> None:
    outcome = await run_once(conn(plain), tmp_path, aspect="persistence")
    assert outcome.status is Status.FAIL, outcome
    assert "RDB or AOF persistence is off" in outcome.message
    assert value(outcome, "readiness_redis_rdb_enabled") == 0
    assert value(outcome, "readiness_redis_aof_enabled") == 0
    assert samples(outcome, "readiness_redis_persistence_source_info") == {
        (("source", "config"),): 1.0}


async def test_rdb_passes_with_last_save_timestamp(tmp_path: Path) -> None:
    with redis_server(["--save", "3600 1 300 100"]) as server:
        cli(server, "SET", "a", "1")
        cli(server, "BGSAVE")
        for _ in range(100):
            if "rdb_bgsave_in_progress:0" in cli(server, "INFO", "persistence"):
                break
            time.sleep(0.05)
        before = time.time()
        outcome = await run_once(conn(server), tmp_path, aspect="persistence")
        assert outcome.status is Status.PASS, outcome
        assert value(outcome, "readiness_redis_rdb_enabled") == 1
        assert value(outcome, "readiness_redis_rdb_save_rules") == 2
        assert value(outcome, "readiness_redis_rdb_last_bgsave_ok") == 1
        assert before - 30 < value(outcome,
                                   "readiness_redis_rdb_last_save_timestamp_seconds") <= before
        assert value(outcome, "readiness_redis_rdb_last_save_age_target_seconds") == 86400
        # pending changes older than max_age fail; with the AOF requirement too
        cli(server, "SET", "b", "2")
        time.sleep(1.2)
        stale = await run_once(conn(server), tmp_path, aspect="persistence",
                               persistence={"max_age": "1s", "require": "both"})
        assert stale.status is Status.FAIL
        assert "RDB and AOF persistence is off" in stale.message
        assert "1 changes unsaved" in stale.message
        assert value(stale, "readiness_redis_rdb_changes_since_last_save") == 1


async def test_failed_bgsave_fails(tmp_path: Path) -> None:
    with redis_server(["--save", "3600 1"]) as server:
        shutil.rmtree(server.dir)  # the working directory vanishes: saves cannot write
        cli(server, "SET", "a", "1")
        cli(server, "BGSAVE")
        for _ in range(100):
            info = cli(server, "INFO", "persistence")
            if "rdb_bgsave_in_progress:0" in info and "rdb_last_bgsave_status:err" in info:
                break
            time.sleep(0.05)
        outcome = await run_once(conn(server), tmp_path, aspect="persistence")
        cli(server, "CONFIG", "SET", "save", "")  # else SIGTERM's final save fails and hangs
    assert outcome.status is Status.FAIL, outcome
    assert "last background save failed" in outcome.message
    assert value(outcome, "readiness_redis_rdb_last_bgsave_ok") == 0


async def test_aof_passes_and_reports_write_status(tmp_path: Path) -> None:
    with redis_server(["--appendonly", "yes"]) as server:
        outcome = await run_once(conn(server), tmp_path, aspect="persistence",
                                 persistence={"require": "aof"})
    assert outcome.status is Status.PASS, outcome
    assert outcome.message.startswith("AOF (from config)")
    assert value(outcome, "readiness_redis_aof_enabled") == 1
    assert value(outcome, "readiness_redis_aof_last_write_ok") == 1
    assert value(outcome, "readiness_redis_rdb_enabled") == 0


async def test_config_renamed_falls_back_to_info(tmp_path: Path) -> None:
    with redis_server(["--rename-command", "CONFIG", "", "--appendonly", "yes"]) as server:
        outcome = await run_once(conn(server), tmp_path, aspect="persistence")
        assert outcome.status is Status.PASS, outcome
        assert samples(outcome, "readiness_redis_persistence_source_info") == {
            (("source", "info"),): 1.0}
        assert value(outcome, "readiness_redis_aof_enabled") == 1
        assert samples(outcome, "readiness_redis_rdb_save_rules") == {}
    with redis_server(["--rename-command", "CONFIG", "", "--save", "3600 1"]) as server:
        unknown = await run_once(conn(server), tmp_path, aspect="persistence")
        assert unknown.status is Status.FAIL
        assert "CONFIG unavailable, no background save seen" in unknown.message
        cli(server, "BGSAVE")
        for _ in range(100):
            if "rdb_last_bgsave_time_sec:-1" not in cli(server, "INFO", "persistence"):
                break
            time.sleep(0.05)
        seen = await run_once(conn(server), tmp_path, aspect="persistence")
        assert seen.status is Status.PASS, seen
        assert value(seen, "readiness_redis_rdb_enabled") == 1


async def test_config_forbidden_by_acl_falls_back_to_info(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server(["--appendonly", "yes"]) as server:
        cli(server, "ACL", "SETUSER", "probe", "on", f">{PASSWORD}", "+@all", "-config",
            "~*")
        monkeypatch.setenv("REDIS_PROBE_PASSWORD", PASSWORD)
        outcome = await run_once(conn(server, username="probe",
                                      password="${REDIS_PROBE_PASSWORD}"),
                                 tmp_path, aspect="persistence")
    assert outcome.status is Status.PASS, outcome
    assert samples(outcome, "readiness_redis_persistence_source_info") == {
        (("source", "info"),): 1.0}


# --------------------------------------------------------------------------- preset


def _preset_fragment() -> config.Config:
    merged: dict[str, Any] = {}
    for origin, text in config._preset_documents("qbitel-production"):
        if origin.endswith("31-redis.yaml"):
            merged = config._merge(merged, config._parse_yaml(text, origin))
    return config.build(merged, "31-redis.yaml", environ=dict(os.environ))


async def test_preset_loads_empty_and_runs_from_the_env_contract(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    cfg = _preset_fragment()
    assert [c.id for c in cfg.checks] == ["3.2.1", "3.2.2", "3.2.3", "3.2.4"]
    with redis_server(["--appendonly", "yes"], password=PASSWORD) as server:
        cli(server, "SET", "session:1", "x", "EX", "600")
        monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
        monkeypatch.setenv("REDIS_PORT", str(server.port))
        monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
        cfg = _preset_fragment()  # host and port are inputs, read from the environment at load
        async with runtime(cfg, tmp_path) as ctx:
            outcomes = {}
            for spec in cfg.checks:
                assert isinstance(spec, RedisCheck)
                outcomes[spec.id] = await KIND.run(spec, ctx)
    assert {i: o.status for i, o in outcomes.items()} == {
        "3.2.1": Status.PASS, "3.2.2": Status.PASS, "3.2.3": Status.PASS,
        "3.2.4": Status.PASS}, outcomes
    assert_secret_absent(PASSWORD, outcomes.values(), caplog)


async def test_least_privilege_user_from_the_docs_runs_every_aspect(
        secured: RedisServer, tmp_path: Path) -> None:
    acl = ("+ping +info +config|get +acl|getuser +scan +pttl +dbsize +client|setname ~*")
    cli(secured, "ACL", "SETUSER", "readiness", "on", f">{PASSWORD}", *acl.split())
    cli(secured, "SET", "lp:1", "x")
    who = conn(secured, username="readiness", password="${REDIS_TEST_PASSWORD}")
    outcomes = {aspect: await run_once(who, tmp_path, aspect=aspect)
                for aspect in ("ping", "auth", "persistence")}
    outcomes["ttl"] = await run_once(who, tmp_path, aspect="ttl", timeout=5,
                                     ttl={"time_budget": 1, "max_share_without_ttl": 1})
    assert outcomes["ping"].status is Status.PASS, outcomes
    assert outcomes["auth"].status is Status.PASS, outcomes
    assert value(outcomes["auth"], "readiness_redis_default_user_nopass") == 0
    assert outcomes["persistence"].status is Status.FAIL  # the server has none: judged
    assert samples(outcomes["persistence"], "readiness_redis_persistence_source_info") == {
        (("source", "config"),): 1.0}
    assert outcomes["ttl"].status is Status.PASS, outcomes
    assert value(outcomes["ttl"], "readiness_redis_ttl_keys_sampled") >= 1
    cli(secured, "DEL", "lp:1")


async def test_a_command_the_user_may_not_run_is_error_auth(secured: RedisServer,
                                                            tmp_path: Path) -> None:
    """NOPERM (an ACL user without +info) is the same reason as a rejected password."""
    cli(secured, "ACL", "SETUSER", "pingonly", "on", f">{PASSWORD}", "+ping",
        "+client|setname", "~*")
    who = conn(secured, username="pingonly", password="${REDIS_TEST_PASSWORD}")
    outcome = await run_once(who, tmp_path, aspect="ping")
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.AUTH), outcome
    assert outcome.message == (f"PING: 127.0.0.1:{secured.port}: the user lacks permission "
                               "for this command")
    assert value(outcome, "readiness_redis_up") == 0


# --------------------------------------------------------------------------- client lifetime


def _exporter_clients(server: RedisServer) -> int:
    return cli(server, "CLIENT", "LIST").count("name=readiness-exporter")


async def test_clients_belong_to_the_runtime(plain: RedisServer, tmp_path: Path) -> None:
    """Each runtime has its own client (no module state); closing it closes its sockets."""
    cfg, spec = build(conn(plain), aspect="ping")
    async with runtime(cfg, tmp_path) as first, runtime(cfg, tmp_path) as second:
        assert (await KIND.run(spec, first)).status is Status.PASS
        assert (await KIND.run(spec, second)).status is Status.PASS
        one, two = await shared_client(first), await shared_client(second)
        assert one.client is not two.client
        assert one.client is (await shared_client(first)).client
        assert _exporter_clients(plain) == 2
    assert await _until_no_exporter_clients(plain) == 0


def test_validate_prints_the_deprecation_of_flat_tls_options(tmp_path: Path) -> None:
    """The real command: an old spelling loads (exit 0) and says what to write instead."""
    from tests.core.conftest import EXE

    path = tmp_path / "old.yaml"
    path.write_text("""
connections:
  cache: {kind: redis, host: cache.internal, tls: true, ca_file: /etc/ssl/redis-ca.pem}
checks:
  - {id: "3.2.1", section: "3.2", title: Redis deployed, kind: redis, connection: cache}
""", encoding="utf-8")
    done = subprocess.run([str(EXE), "validate", "--config.file", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ("warning: connections.cache.ca_file is deprecated: write "
            "connections.cache.tls.ca_file") in done.stderr
    assert "warning: connections.cache.tls: true|false is deprecated" in done.stderr


async def _until_no_exporter_clients(server: RedisServer) -> int:
    deadline = time.monotonic() + 5
    while _exporter_clients(server) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return _exporter_clients(server)


async def test_a_reloaded_connection_replaces_its_client(tmp_path: Path) -> None:
    """A reload that points `cache` elsewhere closes the old server's sockets."""
    with redis_server() as before, redis_server() as after:
        cfg, spec = build(conn(before), aspect="ping")
        async with runtime(cfg, tmp_path) as ctx:
            assert (await KIND.run(spec, ctx)).status is Status.PASS
            assert _exporter_clients(before) == 1
            reloaded, _ = build(conn(after), aspect="ping")
            await ctx.update_connections(reloaded.connections)
            outcome = await KIND.run(spec, ctx)
            assert outcome.status is Status.PASS, outcome
            assert f"127.0.0.1:{after.port}" in outcome.message
            assert await _until_no_exporter_clients(before) == 0
            assert _exporter_clients(after) == 1
