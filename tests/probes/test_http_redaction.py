"""A failing JSON assertion never shows an observed string that could be a secret: a
target that echoes the bearer token it received (issue 17, "Secrets")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter.context import RuntimeContext
from exporter.model import Status
from exporter.probes.http.assertions import evaluate
from exporter.probes.http.probe import run
from exporter.probes.http.spec import JsonAssertion
from tests.probes.test_http_support import make_check
from tests.support.servers import free_port, terminate, wait_for_port

EXE = Path(sys.executable).parent / "readiness-exporter"
# Fresh per run (never a parametrize id), so a leak cannot hide behind a fixed string.
TOKEN = "tok-" + secrets.token_urlsafe(30)
SESSION = "sess-" + secrets.token_hex(20)


async def whoami(request: web.Request) -> web.Response:
    """Echoes the credential it received, as careless debug endpoints do."""
    authorization = request.headers.get("Authorization", "")
    return web.json_response({
        "status": "starting",
        "token": authorization.removeprefix("Bearer "),
        "auth": {"header": authorization},
        "session": SESSION,  # a value the exporter never knew: not scrubbable, must not show
        "replicas": 2,
        "ready": False,
    })


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """The `whoami` app on a free loopback port, in a thread (subprocesses call it)."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app, access_log=None)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}/whoami"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


ASSERTIONS: list[dict[str, Any]] = [
    {"path": "token", "op": "==", "value": "expected-public-token"},
    {"path": "auth.header", "op": "in", "value": ["Bearer one", "Bearer two"]},
    {"path": "session", "op": "<", "value": "a"},
    {"path": "session", "op": ">", "value": 3},  # not comparable
    {"path": "status", "op": "==", "value": "healthy"},
    {"path": "replicas", "op": ">=", "value": 3},
    {"path": "ready", "op": "==", "value": True},
    {"path": "auth", "op": "==", "value": "x"},
]


def assert_hidden(text: str, where: str) -> None:
    for value in (TOKEN, SESSION):
        for fragment in (value, value[:16], value[-16:]):
            assert fragment not in text, f"{where} shows an observed secret"


async def test_failing_assertions_show_shapes_not_observed_strings(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    with echo_server() as url:
        check = make_check(url=url, bearer_token="${API_TOKEN}", json_assertions=ASSERTIONS)
        outcome = await run(check, ctx)
    assert outcome.status is Status.FAIL
    assert_hidden(repr(outcome), "the outcome")
    report = outcome.message
    assert f"token is a {len(TOKEN)}-character string (expected == 'expected-public-token')" \
        in report
    assert f"auth.header is a {len('Bearer ' + TOKEN)}-character string" in report
    assert "(+5 more)" in report  # the summary names three problems


def test_assertion_messages_one_by_one() -> None:
    document = {"token": TOKEN, "session": SESSION, "status": "starting", "replicas": 2,
                "ready": False, "auth": {"header": TOKEN}}
    expected = {
        0: f"token is a {len(TOKEN)}-character string (expected == 'expected-public-token')",
        2: f"session is a {len(SESSION)}-character string (expected < 'a')",
        3: f"session is a {len(SESSION)}-character string, not comparable with 3",
        4: "status is a 8-character string (expected == 'healthy')",
        5: "replicas is 2 (expected >= 3)",
        6: "ready is False (expected == True)",
        7: "auth is an object with 1 key (expected == 'x')",
    }
    for index, text in expected.items():
        assert evaluate(JsonAssertion.model_validate(ASSERTIONS[index]), document) == text
    # A string equal to the configured value may be shown: it is configuration.
    equal = JsonAssertion.model_validate({"path": "status", "op": "!=", "value": "starting"})
    assert evaluate(equal, document) == "status is 'starting' (expected != 'starting')"


CONFIG = """
checks:
  - id: api-smoke
    section: "7.4"
    title: authenticated API smoke test
    severity: critical
    kind: http
    url: {url}
    bearer_token: ${{API_TOKEN}}
    interval: 1s
    json_assertions: {assertions}
"""


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "readiness.yaml"
    path.write_text(CONFIG.format(url=url, assertions=json.dumps(ASSERTIONS)))
    return path


def child_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "API_TOKEN": TOKEN}


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode("utf-8"))


@pytest.mark.parametrize("output", ["table", "json", "junit"])
def test_check_outputs_never_show_the_echoed_token(tmp_path: Path, output: str) -> None:
    with echo_server() as url:
        result = subprocess.run(
            [str(EXE), "check", "--config.file", str(write_config(tmp_path, url)),
             "--output", output], capture_output=True, text=True, env=child_env(tmp_path),
            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 1, result.stderr  # the critical check fails
    assert "token is a" in result.stdout
    assert_hidden(result.stdout, f"check --output {output}")
    assert_hidden(result.stderr, f"check --output {output} (stderr)")


def test_daemon_api_board_metrics_and_log_never_show_the_echoed_token(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "daemon.log"
    with echo_server() as url, open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [str(EXE), "serve", "--config.file", str(write_config(tmp_path, url)),
             "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=child_env(tmp_path), cwd=tmp_path)
        try:
            wait_for_port(port, timeout=20)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                records = json.loads(http_get(base + "/api/v1/checks"))
                if records[0]["status"] == "fail" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            time.sleep(1.5)  # a few more runs (and log lines), past the /metrics cache
            pages = {"api": http_get(base + "/api/v1/checks"), "board": http_get(base + "/"),
                     "metrics": http_get(base + "/metrics")}
        finally:
            terminate(daemon)
    assert records[0]["status"] == "fail"
    assert "token is a" in records[0]["message"]
    pages["log"] = log_path.read_text(encoding="utf-8", errors="replace")
    assert '"check status changed"' in pages["log"]
    for name, text in pages.items():
        assert_hidden(text, name)
