"""Throw-away Prometheus and Alertmanager servers (Debian packages) on loopback.

Reusable by any test module:

    with prometheus(config_text, rules={"app.rules.yml": rules_text}) as prom:
        prom.wait_until(lambda: prom.query("up") != [])
        ... prom.url ...

    with alertmanager(config_text) as am:
        am.silence({"alertname": "Foo"})
        am.reload(other_config_text)

Each server gets a free port on 127.0.0.1 and its own temporary directory (config,
rule files, data), removed on stop. Alertmanager clustering is switched off so
nothing else is bound. Prometheus runs with `--web.enable-lifecycle` (so `reload`
works) and `--rules.alert.resend-delay=1s`. Build configuration text with
`prometheus_config` and `alert_rules`, or write it yourself.

Timing: Prometheus applies static targets and Alertmanager addresses through its
discovery manager, which updates every 5 s: the first scrape and the first alert sent
come about 5 to 7 s after start. Start servers once per module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, terminate

PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
AMTOOL_BIN = "/usr/bin/amtool"


class StackError(RuntimeError):
    """A server did not start, did not become ready, or rejected a request."""


def _request(method: str, url: str, body: Any = None, timeout: float = 5.0,
             auth: tuple[str, str] | None = None) -> Any:
    """A small JSON-over-HTTP call with the standard library (loopback only)."""
    data = None
    headers = {}
    if auth is not None:
        pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0,
               what: str = "condition") -> None:
    """Poll `predicate` every 0.1 s until it is true (exceptions count as false)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise StackError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class _Server:
    """Common part: a process on 127.0.0.1:port with a working directory."""

    name: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    auth: tuple[str, str] | None = None  # basic auth for our own calls (web config)

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:41234`."""
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        """GET `path` and decode the JSON answer."""
        return _request("GET", self.url + path, auth=self.auth)

    def post(self, path: str, body: Any = None) -> Any:
        """POST a JSON `body` to `path` and decode the JSON answer."""
        return _request("POST", self.url + path, body, auth=self.auth)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log (for failure messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until `/-/ready` answers 200 (raise with the log tail otherwise)."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with {self.process.returncode}:\n"
                                 f"{self.log_tail()}")
            _request("GET", self.url + "/-/ready", timeout=1, auth=self.auth)
            return True

        try:
            wait_until(ready, timeout, f"{self.name} ready")
        except StackError as exc:
            raise StackError(f"{exc}\n{self.log_tail()}") from None

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0,
                   what: str = "condition") -> None:
        """`wait_until` that also fails early when the server died."""

        def check() -> bool:
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited:\n{self.log_tail()}")
            return predicate()

        wait_until(check, timeout, what)

    def reload(self, config_text: str) -> None:
        """Write a new configuration and apply it with `POST /-/reload`."""
        self.config_path.write_text(config_text, encoding="utf-8")
        try:
            _request("POST", self.url + "/-/reload", auth=self.auth)
        except urllib.error.HTTPError as exc:
            raise StackError(f"{self.name} rejected the configuration: "
                             f"{exc.read().decode(errors='replace')}") from None

    def stop(self) -> None:
        """Terminate the process and remove its directory."""
        terminate(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PrometheusServer(_Server):
    """A running Prometheus; `rules_dir` holds the rule files named in the config."""

    rules_dir: Path = field(default_factory=Path)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the `result` list (vector) of the answer."""
        from urllib.parse import quote

        answer = self.get("/api/v1/query?query=" + quote(expr))
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def rule_groups(self) -> list[str]:
        """Names of the loaded rule groups."""
        answer = self.get("/api/v1/rules")
        return [group["name"] for group in answer["data"]["groups"]]

    def write_rules(self, files: Mapping[str, str]) -> None:
        """(Re)write rule files under `rules_dir` (apply with `reload`)."""
        for name, text in files.items():
            (self.rules_dir / name).write_text(text, encoding="utf-8")


@dataclass
class AlertmanagerServer(_Server):
    """A running Alertmanager (clustering off)."""

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts` with query parameters (e.g. `active="true"`)."""
        from urllib.parse import urlencode

        query = ("?" + urlencode(params)) if params else ""
        result: list[dict[str, Any]] = self.get("/api/v2/alerts" + query)
        return result

    def silence(self, matchers: Mapping[str, str], hours: float = 2.0,
                comment: str = "test silence") -> str:
        """Create a silence on exact label matchers; return its id."""
        now = time.time()
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                         for k, v in matchers.items()],
            "startsAt": _rfc3339(now - 1),
            "endsAt": _rfc3339(now + hours * 3600),
            "createdBy": "readiness-exporter tests",
            "comment": comment,
        }
        answer = self.post("/api/v2/silences", body)
        return str(answer["silenceID"])

    def amtool(self, *args: str) -> str:
        """Run `amtool --alertmanager.url=<this> args...`; return stdout."""
        result = subprocess.run(
            [AMTOOL_BIN, f"--alertmanager.url={self.url}", *args],
            check=True, capture_output=True, text=True, timeout=30,
        )
        return result.stdout


def _rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + "Z"


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def start_prometheus(config_text: str, rules: Mapping[str, str] | None = None,
                     extra_args: tuple[str, ...] = (), port: int | None = None,
                     timeout: float = 30.0,
                     ready_auth: tuple[str, str] | None = None) -> PrometheusServer:
    """Start Prometheus with `config_text`; rule files are written to `rules_dir`.

    Reference rule files in the config as `rules/<name>` (relative to the config file,
    which Prometheus resolves against the config's directory). `ready_auth` is the
    basic-auth pair the helper itself uses when `--web.config.file` demands one.
    """
    root = Path(tempfile.mkdtemp(prefix="readiness-prom-"))
    rules_dir = root / "rules"
    rules_dir.mkdir()
    for name, text in (rules or {}).items():
        (rules_dir / name).write_text(text, encoding="utf-8")
    config_path = root / "prometheus.yml"
    config_path.write_text(config_text, encoding="utf-8")
    port = port or free_port()
    log_path = root / "prometheus.log"
    argv = [PROMETHEUS_BIN, f"--config.file={config_path}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
            "--rules.alert.resend-delay=1s", "--log.level=warn", *extra_args]
    server = PrometheusServer("prometheus", port, root, _spawn(argv, log_path), config_path,
                              log_path, auth=ready_auth, rules_dir=rules_dir)
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


def start_alertmanager(config_text: str, extra_args: tuple[str, ...] = (),
                       port: int | None = None, timeout: float = 30.0) -> AlertmanagerServer:
    """Start Alertmanager with `config_text` (no cluster; reload via `POST /-/reload`)."""
    root = Path(tempfile.mkdtemp(prefix="readiness-am-"))
    config_path = root / "alertmanager.yml"
    config_path.write_text(config_text, encoding="utf-8")
    port = port or free_port()
    log_path = root / "alertmanager.log"
    argv = [ALERTMANAGER_BIN, f"--config.file={config_path}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            "--log.level=warn", *extra_args]
    server = AlertmanagerServer("alertmanager", port, root, _spawn(argv, log_path),
                                config_path, log_path)
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def prometheus(config_text: str, rules: Mapping[str, str] | None = None,
               extra_args: tuple[str, ...] = ()) -> Iterator[PrometheusServer]:
    """A started Prometheus, stopped and removed afterwards."""
    server = start_prometheus(config_text, rules, extra_args)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def alertmanager(config_text: str,
                 extra_args: tuple[str, ...] = ()) -> Iterator[AlertmanagerServer]:
    """A started Alertmanager, stopped and removed afterwards."""
    server = start_alertmanager(config_text, extra_args)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- config text


def dead_url() -> str:
    """A loopback URL nothing listens on (notification targets that must go nowhere)."""
    return f"http://127.0.0.1:{free_port()}/"


def prometheus_config(scrape_jobs: Mapping[str, list[str]] | None = None,
                      rule_files: list[str] | None = None,
                      alertmanagers: list[str] | None = None,
                      scrape_interval: str = "1s", evaluation_interval: str = "1s") -> str:
    """A Prometheus configuration: jobs (name -> host:port targets), rule files by name
    (under `rules/`), and Alertmanager `host:port` addresses to send alerts to."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval,
                   "evaluation_interval": evaluation_interval,
                   "scrape_timeout": scrape_interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in (scrape_jobs or {}).items()
        ],
    }
    if rule_files:
        config["rule_files"] = [f"rules/{name}" for name in rule_files]
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
    return json.dumps(config, indent=2)  # JSON is YAML


def alert_rules(group: str, alerts: Mapping[str, Mapping[str, str]],
                expr: str = "vector(1)") -> str:
    """A rule file with one group of always-firing alerts: name -> labels."""
    rules = [{"alert": name, "expr": expr, "for": "0s", "labels": dict(labels)}
             for name, labels in alerts.items()]
    return json.dumps({"groups": [{"name": group, "interval": "1s", "rules": rules}]}, indent=2)
