"""Configured secret values are scrubbed from outcomes and log lines, whatever a probe
writes: `exporter.redact`, applied by the runner and the JSON log formatter."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest
from aiohttp import web

from exporter import config, redact
from exporter.cli import run_once
from exporter.context import RuntimeContext
from exporter.daemon import Runtime
from exporter.jsonlog import JsonFormatter
from exporter.model import Measurement, Outcome, SecretRef, Status
from exporter.render.json_output import RunInfo, to_json
from exporter.render.junit import to_junit
from exporter.render.table import to_table
from exporter.runner import run_check
from exporter.server import make_app
from exporter.webconfig import BasicAuth
from tests.support.servers import free_port

# Fresh per run, so a leak cannot hide behind a hard-coded string.
TOKEN = "tok-" + secrets.token_urlsafe(30)
PASSWORD = "pw-" + secrets.token_hex(12)

pytestmark = pytest.mark.usefixtures("behaviour_kind")


def scrubber(**values: str) -> redact.Scrubber:
    return redact.Scrubber({value: f"${{{name}}}" for name, value in values.items()})


# --------------------------------------------------------------------------- the scrubber


def test_whole_value_is_replaced_by_a_placeholder_naming_the_reference() -> None:
    text = scrubber(JWT_SECRET=TOKEN).scrub(f"got {TOKEN} twice: {TOKEN}.")
    assert text == "got <redacted ${JWT_SECRET}> twice: <redacted ${JWT_SECRET}>."


def test_encoded_and_truncated_forms_are_caught() -> None:
    odd = "quote'and\"back\\slash-" + secrets.token_hex(8)
    dsn_password = "dsn-" + secrets.token_hex(10)
    scrub = redact.Scrubber({
        odd: "${ODD}", TOKEN: "${TOKEN}",
        f"postgresql://app:{dsn_password}@db.internal:5432/app": "${DATABASE_URL}",
    }).scrub
    for written in (repr(odd), json.dumps(odd), f"?q={aiohttp.helpers.quote(odd)}"):
        assert "slash-" not in scrub(written), written
    assert dsn_password not in scrub(f"auth failed for password {dsn_password}")
    encoded = redact.Scrubber({"redis://:p%40ss-w0rd-long@cache:6379/0": "${REDIS_URL}"})
    assert encoded.scrub("password p@ss-w0rd-long") == "password <redacted ${REDIS_URL}>"
    cut = TOKEN[:25] + "..."
    assert scrub(f"value {cut}") == "value <redacted ${TOKEN}>..."


def test_short_values_are_left_alone_and_longest_secret_wins() -> None:
    inner = "inner-" + secrets.token_hex(6)
    outer = f"outer-{inner}-" + secrets.token_hex(6)
    scrub = redact.Scrubber({"abc": "${SHORT}", inner: "${INNER}", outer: "${OUTER}"}).scrub
    assert scrub("abc is a common word") == "abc is a common word"
    assert scrub(f"[{outer}] [{inner}]") == "[<redacted ${OUTER}>] [<redacted ${INNER}>]"


def test_secrets_sharing_a_long_prefix_are_told_apart() -> None:
    prefix = "shared-prefix-of-sixteen-plus-"
    first, second = prefix + secrets.token_hex(8), prefix + secrets.token_hex(8)
    scrub = redact.Scrubber({first: "${FIRST}", second: "${SECOND}"}).scrub
    assert scrub(f"a {second} b {first}") == "a <redacted ${SECOND}> b <redacted ${FIRST}>"


def test_outcome_message_and_labels_are_scrubbed() -> None:
    outcome = Outcome.failed(f"saw {TOKEN}", (Measurement("f", 1.0, {"shape": TOKEN}),))
    clean = scrubber(TOKEN=TOKEN).outcome(outcome)
    assert TOKEN not in repr(clean)
    assert clean.message == "saw <redacted ${TOKEN}>"
    assert clean.measurements[0].labels == {"shape": "<redacted ${TOKEN}>"}


def test_from_config_resolves_env_and_file_references_of_checks_and_connections(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "db-password"
    secret_file.write_text(PASSWORD + "\n")
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("REDIS_PASSWORD", "redis-" + secrets.token_hex(8))
    monkeypatch.setenv("JWT_SECRET", "jwt-" + secrets.token_hex(20))
    cfg = config.build({
        "connections": {
            "db": {"kind": "postgres", "password": {"file": str(secret_file)}},
            "cache": {"kind": "redis", "password_env": "REDIS_PASSWORD"},
        },
        "checks": [
            {"id": "api", "section": "7.4", "title": "t", "kind": "http",
             "url": "http://127.0.0.1:1/", "bearer_token": "${API_TOKEN}", "enabled": False},
            {"id": "unset", "section": "7.4", "title": "t", "kind": "http",
             "url": "http://127.0.0.1:1/", "bearer_token": "${NOT_SET_ANYWHERE}",
             "enabled": False},
            {"id": "zero", "section": "7.4", "title": "t", "kind": "http",
             "url": "http://127.0.0.1:1/", "bearer_token": {"file": "/dev/zero"},
             "enabled": False},
            {"id": "jwt", "section": "2.1", "title": "t", "kind": "secret_strength",
             "env": "JWT_SECRET"},
            {"id": "basic", "section": "7.4", "title": "t", "kind": "http",
             "url": "http://127.0.0.1:1/", "enabled": False,
             "basic_auth": {"username": "monitor", "password": {"file": str(secret_file)}}},
        ],
    }, "test")
    started = time.monotonic()
    scrub = redact.from_config(cfg).scrub
    assert time.monotonic() - started < 5  # /dev/zero is not read
    text = scrub(f"{TOKEN} {PASSWORD} {os.environ['REDIS_PASSWORD']} "
                 f"{os.environ['JWT_SECRET']}")
    assert text == (f"<redacted ${{API_TOKEN}}> <redacted file {secret_file}> "
                    "<redacted ${REDIS_PASSWORD}> <redacted ${JWT_SECRET}>")
    header = "Basic " + base64.b64encode(f"monitor:{PASSWORD}".encode()).decode()
    assert scrub(f"echoed {header}") == f"echoed Basic <redacted file {secret_file}>"


def test_json_log_lines_are_scrubbed() -> None:
    redact.install(scrubber(API_TOKEN=TOKEN))
    record = logging.makeLogRecord({
        "name": "readiness.test", "levelno": logging.WARNING, "levelname": "WARNING",
        "msg": "saw %s", "args": (TOKEN,),
        "detail": f"header Bearer {TOKEN}", "errors": [f"x {TOKEN}"],
        "obj": SecretRef(env="X"), "nested": {"k": TOKEN},
    })
    line = JsonFormatter().format(record)
    assert TOKEN not in line
    entry = json.loads(line)
    assert entry["msg"] == "saw <redacted ${API_TOKEN}>"
    assert entry["detail"] == "header Bearer <redacted ${API_TOKEN}>"
    assert entry["errors"] == ["x <redacted ${API_TOKEN}>"]
    assert entry["nested"] == {"k": "<redacted ${API_TOKEN}>"}


# --------------------------------------------------------------------------- end to end


def leaky(check_id: str, token: Any, **extra: Any) -> dict[str, Any]:
    return {"id": check_id, "section": "5.1", "title": check_id, "kind": "test_behaviour",
            "severity": "critical", "behaviour": "leak", "token": token, "interval": 0.3,
            **extra}


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Log lines as the daemon writes them (formatted when emitted), at INFO."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_runner_scrubs_a_probe_that_puts_its_secret_in_the_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAK_TOKEN", TOKEN)
    cfg = config.build({"checks": [leaky("leak", "${LEAK_TOKEN}")]}, "test")
    redact.install(redact.from_config(cfg))
    ctx = RuntimeContext(state_dir=tmp_path)
    try:
        outcome, _ = await run_check(cfg.checks[0], ctx)
    finally:
        await ctx.aclose()
    assert outcome.status is Status.FAIL
    assert TOKEN not in repr(outcome) and TOKEN[:16] not in repr(outcome)
    assert outcome.message.startswith("saw <redacted ${LEAK_TOKEN}>")


async def test_check_outputs_never_show_the_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_logs: io.StringIO) -> None:
    monkeypatch.setenv("LEAK_TOKEN", TOKEN)
    cfg = config.build({"settings": {"state_dir": str(tmp_path)},
                        "checks": [leaky("leak", "${LEAK_TOKEN}")]}, "test")
    store = await run_once(cfg, cfg.checks)  # what `check` runs before it renders
    outputs = {"table": to_table(store.states.values()),
               "json": to_json(store.states.values(), RunInfo("test")),
               "junit": to_junit(store.states.values(), RunInfo("test")),
               "log": json_logs.getvalue()}
    for name, text in outputs.items():
        assert TOKEN not in text and TOKEN[:16] not in text, name
    assert "<redacted ${LEAK_TOKEN}>" in outputs["table"]
    assert json.loads(outputs["json"])["checks"][0]["message"].startswith("saw <redacted ${LEAK_TOKEN}>")
    failure = ET.fromstring(outputs["junit"]).find(".//failure")
    assert failure is not None and "<redacted ${LEAK_TOKEN}>" in failure.get("message", "")
    assert "probe saw <redacted ${LEAK_TOKEN}>" in outputs["log"]


async def test_daemon_api_board_metrics_and_logs_never_show_the_secret_and_reload_rebuilds(
        tmp_path: Path, json_logs: io.StringIO) -> None:
    first, second = tmp_path / "token-1", tmp_path / "token-2"
    new_token = "rotated-" + secrets.token_urlsafe(24)
    first.write_text(TOKEN)
    second.write_text(new_token)
    path = tmp_path / "readiness.yaml"

    def write(token_file: Path) -> None:
        path.write_text(json.dumps({
            "settings": {"first_round_spread": 0.1, "state_dir": str(tmp_path / "state")},
            "checks": [leaky("leak", {"file": str(token_file)})]}))

    write(first)
    runtime = Runtime(config.load(path), path)
    runner = web.AppRunner(make_app(runtime, BasicAuth({})))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"

    async def fetch_all(session: aiohttp.ClientSession) -> dict[str, str]:
        pages = {}
        for name, url in (("api", "/api/v1/checks"), ("board", "/"), ("metrics", "/metrics")):
            async with session.get(base + url) as response:
                assert response.status == 200
                pages[name] = await response.text()
        return pages

    async def wait_for(text: str, session: aiohttp.ClientSession) -> dict[str, str]:
        deadline = time.monotonic() + 10
        while True:
            pages = await fetch_all(session)
            # /metrics reuses its rendered body for up to a second.
            if (text in pages["api"] and text in pages["metrics"]) or time.monotonic() > deadline:
                return pages
            await asyncio.sleep(0.1)

    try:
        async with aiohttp.ClientSession() as session:
            before = await wait_for(f"file {first}", session)
            write(second)
            assert await runtime.reload() == []
            after = await wait_for(f"file {second}", session)
    finally:
        await runner.cleanup()
    logs = json_logs.getvalue()
    for name, text in {**before, "log": logs}.items():
        assert TOKEN not in text and TOKEN[:16] not in text, name
    for name, text in {**after, "log": logs}.items():
        assert new_token not in text and new_token[:16] not in text, name
    assert f"saw &lt;redacted file {first}&gt;" in before["board"]
    assert f'shape="<redacted file {first}>"' in before["metrics"]
    assert f'shape="<redacted file {second}>"' in after["metrics"]
    assert json.loads(after["api"])[0]["message"].startswith(f"saw <redacted file {second}>")


@pytest.fixture
def installed_scrubber() -> Iterator[None]:
    before = redact.active()
    redact.install(redact.Scrubber())
    yield
    redact.install(before)


def test_a_secret_first_readable_after_start_up_is_scrubbed(
        installed_scrubber: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Secrets are resolved at run time: the scrubber built at load did not know this one.
    late = "late-token-" + secrets.token_hex(12)
    monkeypatch.setenv("READINESS_LATE_TOKEN", late)
    assert late in redact.active().scrub(f"answer {late}")
    SecretRef(env="READINESS_LATE_TOKEN").resolve()
    assert redact.active().scrub(f"answer {late}") == \
        "answer <redacted ${READINESS_LATE_TOKEN}>"
    rotated = tmp_path / "token"
    rotated.write_text("file-token-" + secrets.token_hex(12) + "\n")
    value = SecretRef(file=rotated).resolve().get_secret_value()
    assert value not in redact.active().scrub(f"{late} {value}")
    assert late not in redact.active().scrub(f"{late} {value}")


def test_learned_secrets_are_bounded_and_the_newest_kept(installed_scrubber: None) -> None:
    configured = "configured-" + secrets.token_hex(12)
    redact.install(redact.Scrubber({configured: "${CONFIGURED}"}))
    values = [f"rotated-{i:04d}-" + secrets.token_hex(8) for i in range(redact.MAX_LEARNED + 40)]
    for value in values:
        redact.learn(value, "file /run/token")
    active = redact.active()
    assert len(active.secrets) == redact.MAX_LEARNED + 1
    assert configured not in active.scrub(configured)  # configured ones are never dropped
    assert values[-1] not in active.scrub(values[-1])
    assert values[0] in active.scrub(values[0])  # the oldest learned one went first
    redact.learn("short", "x")  # too short to be a secret: nothing rebuilt
    assert redact.active() is active


def test_building_from_a_configuration_learns_nothing_on_the_side(
        installed_scrubber: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("READINESS_LOAD_TOKEN", "load-token-" + secrets.token_hex(12))
    path = tmp_path / "readiness.yaml"
    path.write_text("checks:\n  - {id: a, section: '1.1', title: t, kind: http,"
                    " url: 'http://127.0.0.1:1/', bearer_token: '${READINESS_LOAD_TOKEN}'}\n")
    before = redact.active()
    scrubber = redact.from_config(config.load(path))
    assert redact.active() is before and len(scrubber.secrets) == 1
