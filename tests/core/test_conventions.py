"""Prometheus-exporter conventions of `serve`, against the real process: process and
platform series, build info, `--web.telemetry-path`, `--web.enable-lifecycle`,
`--web.listen-address :PORT` on IPv4 and IPv6, `--log.format logfmt`."""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import build_info, redact
from exporter.cli import parse_listen_address
from exporter.jsonlog import JsonFormatter, LogfmtFormatter
from tests.core.conftest import EXE, REPO
from tests.support.servers import free_port, terminate, wait_for_port

SECRET = "s3cr3t-Value-that-must-never-show-9f2c"
CONFIG = """
settings:
  first_round_spread: 0.1
checks:
  - id: jwt
    section: "2.1"
    title: JWT secret set
    kind: env
    required: [JWT_SECRET]
    interval: 1s
"""


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parse_text(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


class Served:
    """`readiness-exporter serve ARGS` with its log captured."""

    def __init__(self, tmp_path: Path, args: list[str], port: int, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None) -> None:
        self.port = port
        self.log_path = tmp_path / f"serve-{port}.log"
        config = tmp_path / "readiness.yaml"
        if not config.exists():
            config.write_text(CONFIG, encoding="utf-8")
        self.config = config
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(EXE), "serve", "--config.file", str(config), *args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "JWT_SECRET": SECRET,
                 **(env or {})})
        try:
            wait_for_port(port, host=host, timeout=20)
        except TimeoutError:
            self.stop()
            raise AssertionError(self.logs()) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        terminate(self.process)  # type: ignore[arg-type]
        self._log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(args: list[str], **kwargs: Any) -> Served:
        port = kwargs.pop("port", None) or free_port()
        if not any(a == "--web.listen-address" for a in args):
            args = ["--web.listen-address", f"127.0.0.1:{port}", *args]
        served = Served(tmp_path, args, port, **kwargs)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


# --------------------------------------------------------------------------- /metrics


def test_metrics_carry_process_platform_and_build_info(serve: Callable[..., Served]) -> None:
    served = serve([], env={"READINESS_EXPORTER_REVISION": "0123abcd"})
    status, text = get(served.url + "/metrics")
    assert status == 200
    found = samples(text)
    (labels, value), = found["readiness_exporter_build_info"]
    assert value == 1.0
    assert labels == {"version": "0.1.0", "revision": "0123abcd",
                      "python_version": platform.python_version()}
    assert found["process_resident_memory_bytes"][0][1] > 1e6
    assert found["process_cpu_seconds_total"][0][1] > 0
    assert found["process_open_fds"][0][1] >= 3
    assert abs(found["process_start_time_seconds"][0][1] - time.time()) < 600
    (python, _), = found["python_info"]
    assert python["version"] == platform.python_version()
    # OpenMetrics: still valid (one `# EOF`, counters named as OpenMetrics wants).
    status, om = get(served.url + "/metrics",
                     {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and om.count("# EOF") == 1 and om.endswith("# EOF\n")
    types = {f.name: f.type for f in parse_openmetrics(om)}
    assert types["process_cpu_seconds"] == "counter"
    assert types["python_info"] == "gauge"  # as prometheus_client renders it
    assert types["readiness_exporter_build"] == "info"


def test_build_info_revision_from_the_checkout_when_nothing_else_says(
        serve: Callable[..., Served]) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not running from a git checkout: no revision to compare with")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    served = serve([])
    (labels, _), = samples(get(served.url + "/metrics")[1])["readiness_exporter_build_info"]
    assert labels["revision"] == head


def test_find_revision_order_and_unknown(tmp_path: Path) -> None:
    file = tmp_path / "REVISION"
    no_git = tmp_path / "pkg" / "exporter"
    no_git.mkdir(parents=True)
    env = build_info.REVISION_ENV
    assert build_info.find_revision({env: "abc"}, file, no_git) == "abc"
    assert build_info.find_revision({}, file, no_git) == "unknown"
    file.write_text("feedbeef\n")
    assert build_info.find_revision({}, file, no_git) == "feedbeef"
    # A malformed value (label injection, spaces) is not taken.
    assert build_info.find_revision({env: 'x"} 1\nevil'}, file, no_git) == "feedbeef"
    file.write_text("not a revision\n")
    assert build_info.find_revision({env: ""}, file, no_git) == "unknown"


def test_telemetry_path_moves_the_exposition(serve: Callable[..., Served]) -> None:
    served = serve(["--web.telemetry-path", "/internal/metrics"])
    status, text = get(served.url + "/internal/metrics")
    assert status == 200 and "readiness_exporter_build_info{" in text
    assert get(served.url + "/metrics")[0] == 404
    assert get(served.url + "/healthz")[0] == 200


@pytest.mark.parametrize("path", ["metrics", "/healthz", "/-/reload", "/check/x", "/a b"])
def test_telemetry_path_rejects_what_would_shadow_a_page(tmp_path: Path, path: str) -> None:
    result = subprocess.run([str(EXE), "serve", "--web.telemetry-path", path],
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "--web.telemetry-path" in result.stderr and "/metrics" in result.stderr


# --------------------------------------------------------------------------- lifecycle


def _checks(served: Served) -> set[str]:
    return {r["id"] for r in json.loads(get(served.url + "/api/v1/checks")[1])}


def test_reload_endpoint_is_forbidden_without_lifecycle_but_sighup_reloads(
        serve: Callable[..., Served]) -> None:
    served = serve([])
    assert _checks(served) == {"jwt"}
    served.config.write_text(CONFIG + """
  - id: added
    section: "2.1"
    title: added by a reload
    kind: env
    required: [JWT_SECRET]
""", encoding="utf-8")
    status, body = post(served.url + "/-/reload")
    assert status == 403 and "--web.enable-lifecycle" in body
    time.sleep(0.5)
    assert _checks(served) == {"jwt"}
    served.process.send_signal(signal.SIGHUP)
    wait_until(lambda: _checks(served) == {"jwt", "added"})


def test_reload_endpoint_reloads_with_lifecycle(serve: Callable[..., Served]) -> None:
    served = serve(["--web.enable-lifecycle"])
    served.config.write_text(CONFIG.replace("JWT secret set", "renamed"), encoding="utf-8")
    status, body = post(served.url + "/-/reload")
    assert (status, json.loads(body)) == (200, {"status": "success"})
    titles = {r["title"] for r in json.loads(get(served.url + "/api/v1/checks")[1])}
    assert titles == {"renamed"}


# --------------------------------------------------------------------------- listening


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_listen_address_parsing() -> None:
    assert parse_listen_address(":9847") == ("", 9847)
    assert parse_listen_address("[::1]:80") == ("::1", 80)
    assert parse_listen_address("127.0.0.1:1") == ("127.0.0.1", 1)


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_port_only_listen_address_serves_ipv4_and_ipv6(serve: Callable[..., Served]) -> None:
    port = free_port()
    served = serve(["--web.listen-address", f":{port}"], port=port)
    wait_for_port(port, host="::1", timeout=10)
    for base in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
        status, body = get(base + "/health")
        assert (status, json.loads(body)) == (200, {"status": "healthy"}), base
    assert served.process.poll() is None


# --------------------------------------------------------------------------- logs


def _record(**extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "readiness.test", "levelno": logging.WARNING,
                                  "levelname": "WARNING", "msg": "saw %s", "args": (SECRET,),
                                  **extra})


def test_logfmt_has_the_json_fields_quoted_when_needed_and_scrubbed() -> None:
    redact.install(redact.Scrubber({SECRET: "${JWT_SECRET}"}))
    try:
        record = _record(count=3, ok=True, plain="word", spaced='a "b" c\nd',
                         errors=[f"x {SECRET}"], empty=None)
        line = LogfmtFormatter().format(record)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        redact.install(redact.Scrubber({}))
    assert SECRET not in line
    assert "\n" not in line
    assert line.startswith("time=")
    keys = [part.split("=", 1)[0] for part in _logfmt_pairs(line)]
    assert keys == list(entry)
    pairs = dict(p.split("=", 1) for p in _logfmt_pairs(line))
    assert pairs["level"] == "warning" and pairs["logger"] == "readiness.test"
    assert pairs["msg"] == '"saw <redacted ${JWT_SECRET}>"'
    assert pairs["count"] == "3" and pairs["ok"] == "true" and pairs["plain"] == "word"
    assert pairs["empty"] == ""
    assert json.loads(pairs["spaced"]) == 'a "b" c\nd'
    assert json.loads(json.loads(pairs["errors"])) == ["x <redacted ${JWT_SECRET}>"]


def _logfmt_pairs(line: str) -> list[str]:
    """Split a logfmt line on the spaces outside quoted values."""
    pairs, current, quoted, escaped = [], "", False, False
    for char in line:
        if char == " " and not quoted:
            pairs.append(current)
            current = ""
            continue
        current += char
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    return [*pairs, current]


def test_serve_logs_logfmt_when_asked(serve: Callable[..., Served]) -> None:
    served = serve(["--log.format", "logfmt"])
    wait_until(lambda: "readiness-exporter started" in served.logs())
    started = next(line for line in served.logs().splitlines()
                   if "readiness-exporter started" in line)
    pairs = dict(p.split("=", 1) for p in _logfmt_pairs(started))
    assert pairs["level"] == "info" and pairs["msg"] == '"readiness-exporter started"'
    assert pairs["version"] == "0.1.0" and pairs["lifecycle"] == "false"
    assert SECRET not in served.logs()


def test_serve_logs_json_by_default(serve: Callable[..., Served]) -> None:
    served = serve([])
    wait_until(lambda: "readiness-exporter started" in served.logs())
    line = next(line for line in served.logs().splitlines()
                if "readiness-exporter started" in line)
    entry = json.loads(line)
    assert entry["revision"] and entry["python_version"] == platform.python_version()


def test_process_series_pass_promtool_and_are_documented(behaviour_kind: None) -> None:
    from exporter.metrics import Exposition, ReloadState
    from exporter.store import Store

    exposition = Exposition(Store([]), {}, ReloadState(), process_series=True)
    body = exposition.render(False)
    names = {f.name for f in parse_text(body.decode())}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    documented = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    for family in parse_text(body.decode()):
        if family.name.startswith(("process_", "python_")):
            sample = family.samples[0].name
            assert f"`{sample}`" in documented or f"`{sample}`," in documented, sample
