"""logs: files written by Python's logging with a JSON formatter, and by hand."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter import config
from exporter.context import RuntimeContext
from exporter.model import Outcome, Reason, Status
from exporter.probes.kubernetes.connection import KubernetesConnection
from exporter.probes.logs import KIND, LogsCheck, read_tail
from tests.probes.k8s_apiserver import FakeApiServer, write_kubeconfig
from tests.support.servers import free_port


class JsonFormatter(logging.Formatter):
    """What a structured application logger writes: one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"timestamp": self.formatTime(record), "level": record.levelname,
                           "message": record.getMessage(), "logger": record.name,
                           "correlation_id": getattr(record, "correlation_id", None)})


def _app_log(path: Path, count: int, *, correlation: bool = True) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"qbitel.test.{path.name}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(count):
            extra = {"correlation_id": f"req-{i:06d}"} if correlation else {}
            logger.info("handled request %d", i, extra=extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _spec(path: Path, **fields: object) -> LogsCheck:
    return LogsCheck.model_validate({"id": "5.2.1", "section": "5.2", "title": "t",
                                     "kind": "logs", "path": str(path), **fields})


def _value(outcome: Outcome, family: str, **labels: str) -> float:
    return next(m.value for m in outcome.measurements
                if m.family == family and dict(m.labels) == labels)


async def test_structured_application_log_passes(tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "app.log"
    _app_log(log, 1000)
    outcome = await KIND.run(_spec(log), ctx)
    assert outcome.status is Status.PASS
    assert outcome.message == "100.0% of the last 200 lines structured (min 95%)"
    assert _value(outcome, "readiness_logs_sampled_lines") == 200
    assert _value(outcome, "readiness_logs_structured_ratio") == 1.0
    assert _value(outcome, "readiness_logs_missing_field_lines", field="correlation_id") == 0


async def test_plain_lines_and_missing_fields_lower_the_share(
        tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "app.log"
    _app_log(log, 300)
    secret = "password=Hunter2-prod-value"
    with log.open("a") as handle:  # a traceback printed without the JSON formatter
        handle.write("Traceback (most recent call last):\n  File \"app.py\", line 1\n"
                     f"ValueError: bad login {secret}\n")
        handle.write(json.dumps([1, 2]) + "\n")
    _app_log(log, 20, correlation=False)
    outcome = await KIND.run(_spec(log, lines=100), ctx)
    # 100 lines: 76 structured, 3 plain + 1 JSON array, 20 without correlation id.
    assert outcome.status is Status.FAIL
    assert outcome.message == ("76.0% of the last 100 lines structured (min 95%): "
                               "4 not JSON, 20 without correlation_id")
    assert _value(outcome, "readiness_logs_unparsed_lines") == 4
    assert _value(outcome, "readiness_logs_missing_field_lines", field="correlation_id") == 20
    assert secret not in outcome.message + repr(outcome.measurements)
    relaxed = await KIND.run(_spec(log, lines=100, min_share=0.75), ctx)
    assert relaxed.status is Status.PASS
    optional = await KIND.run(_spec(log, lines=100, fields={"correlation_id": []}), ctx)
    assert _value(optional, "readiness_logs_structured_ratio") == 0.96


async def test_nested_field_names(tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "ecs.log"
    # Elastic Common Schema style: dotted and nested names.
    rows = [{"@timestamp": "2026-11-28T10:00:00Z", "log": {"level": "info"},
             "message": "ok", "trace": {"id": f"t{i}"}} for i in range(10)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    default = await KIND.run(_spec(log), ctx)
    assert default.status is Status.FAIL and "10 without correlation_id" in default.message
    ecs = await KIND.run(_spec(log, fields={"correlation_id": ["trace.id"]}), ctx)
    assert ecs.status is Status.PASS, ecs.message


def _log_with_errors(path: Path, infos: int, errors: int) -> None:
    """A JSON application log (Python's logging) with `errors` ERROR records at the end."""
    _app_log(path, infos)
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"qbitel.errors.{path.name}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(errors):
            logger.error("upstream failed %d", i, extra={"correlation_id": f"e-{i}"})
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize(("errors", "status"), [(0, Status.PASS), (1, Status.PASS),
                                                (2, Status.FAIL), (30, Status.FAIL)])
async def test_error_rate_over_recent_lines(tmp_path: Path, ctx: RuntimeContext, errors: int,
                                            status: Status) -> None:
    """7.4: the share of error lines in the last 100 (the checklist's --tail=100)."""
    log = tmp_path / "app.log"
    _log_with_errors(log, 500, errors)
    structure_only = await KIND.run(_spec(log, lines=100), ctx)
    assert structure_only.status is Status.PASS  # the old 7.4 had no error-rate rule
    outcome = await KIND.run(_spec(log, lines=100, min_share=0, max_error_share=0.01), ctx)
    assert outcome.status is status, outcome.message
    assert _value(outcome, "readiness_logs_error_lines") == errors
    assert _value(outcome, "readiness_logs_error_ratio") == errors / 100
    assert _value(outcome, "readiness_logs_error_ratio_target") == 0.01
    if status is Status.FAIL:
        assert f"error rate {errors / 100:.1%} > 1.0%" in outcome.message


async def test_error_levels_plain_and_numeric(tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "mixed.log"
    rows = [{"time": 1, "level": 30, "msg": "ok"}, {"time": 2, "level": 50, "msg": "boom"},
            {"time": 3, "severity": "CRITICAL", "msg": "down"},
            {"time": 4, "level": "warning", "msg": "slow"}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows)
                   + "2026-11-28 10:00:00 ERROR worker crashed\nall good, no error here\n")
    outcome = await KIND.run(_spec(log, min_share=0, max_error_share=0.5), ctx)
    assert _value(outcome, "readiness_logs_error_lines") == 3  # 50, CRITICAL, plain ERROR
    assert outcome.status is Status.PASS, outcome.message


def test_preset_structured_logging_and_error_rate() -> None:
    """5.2.1 judges structure only (correlation ids are 5.2.4's); 7.4 has an error rate."""
    by_id = {spec.id: spec for name in ("60-reports.yaml", "21-http.yaml") for spec in
             config.build(config.preset_file("qbitel-production", name), "t", {}).checks}
    structured = by_id["5.2.1"]
    assert isinstance(structured, LogsCheck)
    assert structured.fields.correlation_id == []
    assert structured.fields.time and structured.fields.level and structured.fields.message
    rate = by_id["7.4-error-rate"]
    assert isinstance(rate, LogsCheck) and rate.enabled
    assert rate.max_error_share == 0.01 and rate.lines == 100 and rate.min_share == 0


async def test_structure_without_correlation_ids_passes_the_preset_rule(
        tmp_path: Path, ctx: RuntimeContext) -> None:
    log = tmp_path / "app.log"
    _app_log(log, 300, correlation=False)
    old_rule = await KIND.run(_spec(log), ctx)
    assert old_rule.status is Status.FAIL  # judged on correlation ids, 5.2.4's job
    rule = await KIND.run(_spec(log, fields={"correlation_id": []}), ctx)
    assert rule.status is Status.PASS, rule.message
    log.write_text("".join(json.dumps({"message": f"m{i}"}) + "\n" for i in range(50)))
    no_level = await KIND.run(_spec(log, fields={"correlation_id": []}), ctx)
    assert no_level.status is Status.FAIL and "50 without level" in no_level.message


def test_tail_reads_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("w") as handle:
        for i in range(400_000):  # ~ 14 MB
            handle.write(f'{{"n": {i}, "pad": "{"x" * 16}"}}\n')
    tail = read_tail(log, 5, 8 * 1024 * 1024)
    assert [json.loads(line)["n"] for line in tail.lines] == list(range(399_995, 400_000))
    # Bounded by max_bytes: a partial first line is dropped, never half-parsed.
    bounded = read_tail(log, 100_000, 1000)
    assert 0 < len(bounded.lines) <= 1000 // 30
    assert all(line.startswith(b'{"n": ') for line in bounded.lines)
    short = tmp_path / "short.log"
    short.write_text("first\r\n\n\nsecond")  # no trailing newline, blank lines, CRLF
    assert read_tail(short, 10, 1024).lines == [b"first", b"second"]


async def test_missing_empty_stale_and_directory(tmp_path: Path, ctx: RuntimeContext) -> None:
    missing = await KIND.run(_spec(tmp_path / "none.log"), ctx)
    assert missing.status is Status.FAIL
    assert missing.message == f"log file {tmp_path / 'none.log'} does not exist"
    empty = tmp_path / "empty.log"
    empty.write_text("")
    outcome = await KIND.run(_spec(empty), ctx)
    assert outcome.status is Status.FAIL and "only 0 lines (min 1)" in outcome.message
    log = tmp_path / "app.log"
    _app_log(log, 10)
    os.utime(log, (time.time() - 7200, time.time() - 7200))
    stale = await KIND.run(_spec(log, max_age="1h"), ctx)
    # Written 120 min before the fixture was built; the suite may run a few minutes later.
    assert stale.status is Status.FAIL
    assert re.search(r"not written for 1[2-3]\d min", stale.message), stale.message
    directory = await KIND.run(_spec(tmp_path), ctx)
    assert directory.status is Status.ERROR and directory.reason is Reason.CONFIG


def test_spec_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        _spec(tmp_path, min_share=1.5)
    with pytest.raises(ValueError, match="Extra inputs"):
        _spec(tmp_path, fields={"trace": ["x"]})


# --------------------------------------------------------------------------- source: pod
# A pod's log through the real kubernetes-asyncio client (kubeconfig with a bearer token)
# against the fake API server of tests/probes/k8s_apiserver.py, which serves
# `GET /api/v1/namespaces/{ns}/pods/{name}/log` with tailLines, timestamps, limitBytes
# and container semantics.

K8S_TOKEN = "tok-LOGS-BEARER-do-not-leak-5521"
LOG_SECRET = "db-password=Pr0d-Hunter2-do-not-leak"
STARTED: dict[str, float] = {}
"""When the `apiserver` fixture built its logs (per test: the suite may import this module
long before a test runs)."""


def _pod(name: str, phase: str, started: str, labels: dict[str, str],
         containers: tuple[str, ...] = ("app",)) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": labels,
                         "creationTimestamp": started},
            "spec": {"containers": [{"name": c, "image": "x"} for c in containers]},
            "status": {"phase": phase, "startTime": started}}


def _json_lines(count: int, written: float, *, correlation: bool = True
                ) -> list[tuple[float, str]]:
    rows = []
    for i in range(count):
        record = {"ts": "2026-11-28T10:00:00Z", "level": "info", "msg": f"request {i}"}
        if correlation:
            record["traceId"] = f"t{i}"
        rows.append((written - count + i, json.dumps(record)))
    return rows


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(token=K8S_TOKEN)
    server.add([
        _pod("api-old", "Running", "2026-11-28T09:00:00Z", {"app": "api"}),
        _pod("api-new", "Running", "2026-11-28T11:00:00Z", {"app": "api"}),
        _pod("api-pending", "Pending", "2026-11-28T12:00:00Z", {"app": "api"}),
        _pod("multi", "Running", "2026-11-28T10:00:00Z", {"app": "multi"},
             ("app", "istio-proxy")),
        _pod("quiet", "Running", "2026-11-28T10:00:00Z", {"app": "quiet"}),
    ])
    now = STARTED["now"] = time.time()
    server.pod_logs[("shop", "api-new", "app")] = _json_lines(1000, now)
    server.pod_logs[("shop", "api-old", "app")] = [
        *_json_lines(150, now - 60),
        (now - 50, f"ERROR plain text line with {LOG_SECRET}"),
        *_json_lines(49, now - 40, correlation=False)]
    server.pod_logs[("shop", "multi", "app")] = _json_lines(30, now - 7200)
    server.pod_logs[("shop", "multi", "istio-proxy")] = [(now, "[envoy] plain access log")]
    await server.start(free_port())
    yield server
    await server.stop()


@pytest.fixture
async def k8s_ctx(apiserver: FakeApiServer, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig",
                                  f"http://127.0.0.1:{apiserver.port}", K8S_TOKEN)
    connections = {"k8s": KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                               context="test", request_timeout=2.0)}
    context = RuntimeContext(connections, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


def _pod_spec(**fields: object) -> LogsCheck:
    return LogsCheck.model_validate({"id": "5.2.1", "section": "5.2", "title": "t",
                                     "kind": "logs", "source": "pod", "connection": "k8s",
                                     "namespace": "shop", **fields})


def _assert_clean(outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    texts = [outcome.message, *(json.dumps(dict(m.labels)) for m in outcome.measurements),
             *(r.getMessage() for r in caplog.records)]
    for text in texts:
        assert K8S_TOKEN not in text and LOG_SECRET not in text and "request 1" not in text


def _log_requests(server: FakeApiServer, pod: str) -> list[dict[str, str]]:
    return [r.query for r in server.requests if r.path.endswith(f"/pods/{pod}/log")]


async def test_named_pod_log_passes(apiserver: FakeApiServer, k8s_ctx: RuntimeContext,
                                    caplog: pytest.LogCaptureFixture) -> None:
    before = len(_log_requests(apiserver, "api-new"))
    outcome = await KIND.run(_pod_spec(pod="api-new", max_age="10m"), k8s_ctx)
    assert outcome.status is Status.PASS, outcome.message
    assert outcome.message == ("100.0% of the last 200 lines structured (min 95%) "
                               "in pod shop/api-new")
    assert _value(outcome, "readiness_logs_sampled_lines") == 200
    # the newest line's kubelet timestamp (timestamps=true), to the microsecond
    assert abs(_value(outcome, "readiness_logs_modified_timestamp_seconds") - (STARTED["now"] - 1)) < 1e-3
    queries = _log_requests(apiserver, "api-new")[before:]
    assert queries == [{"tailLines": "200", "limitBytes": str(8 * 1024 * 1024),
                        "timestamps": "true"}]
    _assert_clean(outcome, caplog)


async def test_workload_reads_the_pods_where_the_log_file_passed(
        apiserver: FakeApiServer, k8s_ctx: RuntimeContext, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """`workload:` (the preset's `inputs.app_workload`) reads the application's pods; the
    log file next to the exporter, which the old rule judged, is only the fallback."""
    log = tmp_path / "app.log"
    _app_log(log, 300)
    caplog.clear()  # the lines just written are no output of the probe
    base = {"id": "5.2.1", "section": "5.2", "title": "t", "kind": "logs", "path": str(log),
            "lines": 100, "max_pods": 3}
    from_file = LogsCheck.model_validate({**base, "workload": None})
    assert (await KIND.run(from_file, k8s_ctx)).status is Status.PASS
    spec = LogsCheck.model_validate(
        {**base, "workload": {"namespace": "shop", "selector": "app=api", "connection": "k8s"}})
    assert spec.source == "pod" and spec.path is None and spec.label_selector == "app=api"
    outcome = await KIND.run(spec, k8s_ctx)
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("75.0% of the last 200 lines structured (min 95%) in "
                                      "pod shop/api-new, api-old")
    _assert_clean(outcome, caplog)


def test_preset_log_checks_follow_the_application_workload(tmp_path: Path) -> None:
    workload = {"namespace": "qbitel", "selector": "app=qbitel"}
    for inputs, source in (({"app_workload": workload}, "pod"), ({}, "file")):
        cfg = config.load_document({"include": ["qbitel-production"], "inputs": inputs},
                                   "test", tmp_path, environ={})
        for check_id in ("5.2.1", "7.4-error-rate"):
            spec = cfg.check(check_id)
            assert isinstance(spec, LogsCheck) and spec.source == source, (check_id, inputs)
            if source == "pod":
                assert (spec.namespace, spec.label_selector) == ("qbitel", "app=qbitel")


async def test_label_selector_samples_newest_running_pods(
        apiserver: FakeApiServer, k8s_ctx: RuntimeContext,
        caplog: pytest.LogCaptureFixture) -> None:
    newest = await KIND.run(_pod_spec(label_selector="app=api", lines=100), k8s_ctx)
    # api-pending is newer but not Running: api-new is sampled
    assert newest.status is Status.PASS and newest.message.endswith("in pod shop/api-new")
    listing = [r for r in apiserver.requests if r.path == "/api/v1/namespaces/shop/pods"][-1]
    assert listing.query["labelSelector"] == "app=api"
    assert listing.query["fieldSelector"] == "status.phase=Running"
    both = await KIND.run(_pod_spec(label_selector="app=api", lines=100, max_pods=3),
                          k8s_ctx)
    # 100 lines of each Running pod, merged: api-old has 1 plain line and 49 without ids
    assert both.status is Status.FAIL
    assert both.message == ("75.0% of the last 200 lines structured (min 95%) in pod "
                            "shop/api-new, api-old: 1 not JSON, 49 without correlation_id")
    assert _value(both, "readiness_logs_unparsed_lines") == 1
    _assert_clean(both, caplog)
    none = await KIND.run(_pod_spec(label_selector="app=absent"), k8s_ctx)
    assert none.status is Status.FAIL
    assert none.message == "no Running pod matches app=absent in namespace shop"


async def test_containers_and_stale_log(k8s_ctx: RuntimeContext) -> None:
    unnamed = await KIND.run(_pod_spec(pod="multi"), k8s_ctx)
    assert unnamed.status is Status.ERROR and unnamed.reason is Reason.CONFIG
    assert "a container name must be specified for pod multi" in unnamed.message
    wrong = await KIND.run(_pod_spec(pod="multi", container="nginx"), k8s_ctx)
    assert wrong.status is Status.ERROR and wrong.reason is Reason.CONFIG
    assert "container nginx is not valid for pod multi" in wrong.message
    sidecar = await KIND.run(_pod_spec(pod="multi", container="istio-proxy"), k8s_ctx)
    assert sidecar.status is Status.FAIL and "1 not JSON" in sidecar.message
    stale = await KIND.run(_pod_spec(pod="multi", container="app", max_age="1h"), k8s_ctx)
    # Written 120 min before the fixture was built; the suite may run a few minutes later.
    assert stale.status is Status.FAIL
    assert re.search(r"not written for 1[2-3]\d min", stale.message), stale.message
    empty = await KIND.run(_pod_spec(pod="quiet"), k8s_ctx)
    assert empty.status is Status.FAIL and "only 0 lines (min 1)" in empty.message
    assert not any(m.family == "readiness_logs_modified_timestamp_seconds"
                   for m in empty.measurements)


async def test_limit_bytes_drops_the_cut_line(apiserver: FakeApiServer,
                                              k8s_ctx: RuntimeContext) -> None:
    outcome = await KIND.run(_pod_spec(pod="api-new", lines=100, max_bytes=1000), k8s_ctx)
    # limitBytes keeps the first 1000 bytes of the last 100 lines; the cut last line is
    # dropped, never parsed as a broken JSON line
    assert outcome.status is Status.PASS, outcome.message
    assert 0 < _value(outcome, "readiness_logs_sampled_lines") < 100
    assert _log_requests(apiserver, "api-new")[-1]["limitBytes"] == "1000"


async def test_missing_pod_forbidden_and_slow(apiserver: FakeApiServer,
                                              k8s_ctx: RuntimeContext,
                                              caplog: pytest.LogCaptureFixture) -> None:
    missing = await KIND.run(_pod_spec(pod="ghost"), k8s_ctx)
    assert missing.status is Status.FAIL and missing.message == "pod shop/ghost not found"
    apiserver.forbidden_get.add("pods/log")
    try:
        denied = await KIND.run(_pod_spec(pod="api-new"), k8s_ctx)
    finally:
        apiserver.forbidden_get.discard("pods/log")
    assert denied.status is Status.ERROR and denied.reason is Reason.AUTH
    assert denied.message == ("log of pod shop/api-new: forbidden, missing RBAC permission "
                              "get pods/log in namespace shop")
    apiserver.slow["pods/log"] = 3.0  # request_timeout is 2 s
    try:
        slow = await KIND.run(_pod_spec(pod="api-new"), k8s_ctx)
    finally:
        del apiserver.slow["pods/log"]
    assert slow.status is Status.ERROR and slow.reason is Reason.TIMEOUT
    assert "did not answer within 2s" in slow.message
    for outcome in (missing, denied, slow):
        _assert_clean(outcome, caplog)


async def test_wrong_token_is_auth_error(apiserver: FakeApiServer, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig",
                                  f"http://127.0.0.1:{apiserver.port}", K8S_TOKEN)
    connections = {"k8s": KubernetesConnection(kind="kubernetes", kubeconfig=kubeconfig,
                                               context="other")}  # user "nobody"
    context = RuntimeContext(connections, state_dir=tmp_path / "state")
    try:
        outcome = await KIND.run(_pod_spec(pod="api-new"), context)
    finally:
        await context.aclose()
    assert outcome.status is Status.ERROR and outcome.reason is Reason.AUTH
    assert "wrong-token" not in outcome.message


def test_pod_source_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs connection and namespace"):
        LogsCheck.model_validate({"id": "5.2.1", "section": "5.2", "title": "t",
                                  "kind": "logs", "source": "pod", "pod": "x"})
    with pytest.raises(ValueError, match="exactly one of pod and label_selector"):
        _pod_spec(pod="a", label_selector="app=a")
    with pytest.raises(ValueError, match="exactly one of pod and label_selector"):
        _pod_spec()
    with pytest.raises(ValueError, match="path: only with source: file"):
        _pod_spec(pod="a", path=str(tmp_path))
    with pytest.raises(ValueError, match="max_pods: only with label_selector"):
        _pod_spec(pod="a", max_pods=2)
    with pytest.raises(ValueError, match="namespace, container: only with source: pod"):
        _spec(tmp_path, namespace="shop", container="app")
    with pytest.raises(ValueError, match="path is required with source: file"):
        LogsCheck.model_validate({"id": "5.2.1", "section": "5.2", "title": "t",
                                  "kind": "logs"})


def test_config_checks_the_connection_kind() -> None:
    check = {"id": "5.2.1", "section": "5.2", "title": "t", "kind": "logs", "source": "pod",
             "connection": "db", "namespace": "shop", "pod": "api"}
    wrong = {"connections": {"db": {"kind": "redis", "url": "redis://127.0.0.1:1"}},
             "checks": [check]}
    with pytest.raises(config.ConfigError) as caught:
        config.build(wrong, "test")
    assert "connection 'db' is a redis connection, this check needs kubernetes" in str(
        caught.value)
    right = {"connections": {"db": {"kind": "kubernetes", "kubeconfig": "/nonexistent"}},
             "checks": [check]}
    built = config.build(right, "test").checks[0]
    assert isinstance(built, LogsCheck) and built.connection == "db"


async def test_unusable_connection_is_config_error(tmp_path: Path) -> None:
    connections = {"k8s": KubernetesConnection(kind="kubernetes",
                                               kubeconfig=tmp_path / "absent")}
    context = RuntimeContext(connections, state_dir=tmp_path / "state")
    try:
        outcome = await KIND.run(_pod_spec(pod="api-new"), context)
    finally:
        await context.aclose()
    assert outcome.status is Status.ERROR and outcome.reason is Reason.CONFIG
    assert "does not exist" in outcome.message
