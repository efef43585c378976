"""Reloads: applied completely or not at all, concurrent requests coalesced, a bad file
reported by SIGHUP and POST alike, and SIGTERM effective while a reload runs."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exporter import config, daemon
from exporter.config import Config, ConfigError
from exporter.daemon import Runtime

CONFIG = """
settings:
  first_round_spread: 0.2
checks:
  - id: home
    section: "1.2"
    title: HOME is set
    kind: env
    required: [HOME]
    interval: 1s
"""

ADDED = """
  - id: added
    section: "1.2"
    title: added on reload
    kind: env
    required: [HOME]
    interval: 1s
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "readiness.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class BlockingLoad:
    """Stands in for `config.load`: each call waits until released, then loads for real
    (or raises what `outcomes` says)."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.real = config.load
        self.outcomes: list[ConfigError | None] = []

    def __call__(self, path: Path | None, environ: Any = None) -> Config:
        self.calls += 1
        self.started.set()
        self.release.wait(timeout=60)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return self.real(path, {"HOME": "/root"})


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_concurrent_reloads_coalesce_into_one_following_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    runtime = Runtime(config.load(path, {"HOME": "/root"}), path)
    loader = BlockingLoad()
    monkeypatch.setattr(config, "load", loader)
    await runtime.start()
    try:
        first = asyncio.create_task(runtime.reload())
        await wait_for(loader.started.is_set)
        # Twenty requests while the first reload runs: they share the next one.
        path.write_text(CONFIG + ADDED, encoding="utf-8")
        loader.outcomes = [None, ConfigError(["checks[1]: the shared result"])]
        followers = [asyncio.create_task(runtime.reload()) for _ in range(20)]
        await asyncio.sleep(0.1)
        loader.release.set()
        assert await first == []
        results = await asyncio.gather(*followers)
    finally:
        loader.release.set()
        await runtime.stop()
    assert loader.calls == 2
    assert runtime.reloads_run == 2
    assert results == [["checks[1]: the shared result"]] * 20
    assert runtime.reload_state.successful is False


async def test_a_reload_that_cannot_be_applied_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    runtime = Runtime(config.load(path, {"HOME": "/root"}), path)
    monkeypatch.setenv("HOME", "/root")
    await runtime.start()
    try:
        await wait_for(lambda: runtime.store.get("home").runs >= 1)
        before_config = runtime.config
        before_specs = {i: s.spec for i, s in runtime.store.states.items()}
        real_apply = runtime.scheduler.apply

        def failing_apply(specs: Any) -> None:
            specs = list(specs)
            if any(s.id == "added" for s in specs):
                real_apply(specs[:1])  # half applied, then it fails
                raise OverflowError("date value out of range")
            real_apply(specs)

        monkeypatch.setattr(runtime.scheduler, "apply", failing_apply)
        path.write_text(CONFIG + ADDED, encoding="utf-8")
        errors = await runtime.reload()
        assert errors == [f"{path}: cannot be applied: unexpected OverflowError"]
        assert runtime.reload_state.successful is False
        assert runtime.config is before_config
        assert {i: s.spec for i, s in runtime.store.states.items()} == before_specs
        runs = runtime.store.get("home").runs
        await wait_for(lambda: runtime.store.get("home").runs > runs, timeout=5)  # still runs
        metrics = runtime.exposition.render(False).decode()
        assert "readiness_config_last_reload_successful 0.0" in metrics
        assert 'check="added"' not in metrics
    finally:
        await runtime.stop()


async def test_reload_with_an_unbounded_interval_keeps_the_running_configuration(
    tmp_path: Path
) -> None:
    path = write(tmp_path, CONFIG)
    runtime = Runtime(config.load(path, {"HOME": "/root"}), path)
    await runtime.start()
    try:
        for bad in (".inf", "1e309", "99999999999d"):
            path.write_text(CONFIG + ADDED.replace("interval: 1s", f"interval: {bad}"))
            errors = await runtime.reload()
            assert errors and "checks[1] (id added).interval" in errors[0]
            assert set(runtime.store.states) == {"home"}
            assert runtime.reload_state.successful is False
        path.write_text(CONFIG + ADDED)
        assert await runtime.reload() == []
        assert set(runtime.store.states) == {"home", "added"}
        assert runtime.reload_state.successful is True
    finally:
        await runtime.stop()


def test_stop_does_not_wait_behind_a_running_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    runtime_config = config.load(path, {"HOME": "/root"})
    loader = BlockingLoad()  # never released while the loop runs: a reload that hangs
    monkeypatch.setattr(config, "load", loader)
    stopped: list[float] = []

    async def scenario() -> None:
        runtime = Runtime(runtime_config, path)
        await runtime.start()
        reload = asyncio.create_task(runtime.reload())
        while not loader.started.is_set():
            await asyncio.sleep(0.02)
        started = time.monotonic()
        await runtime.stop()
        stopped.append(time.monotonic() - started)
        reload.cancel()

    finished = threading.Event()

    def run() -> None:
        asyncio.run(scenario())
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        # asyncio.run returns although the load still runs (it would join a pool thread).
        assert finished.wait(timeout=15), "shutdown waited for the running reload"
        assert stopped and stopped[0] < 5
    finally:
        loader.release.set()
        thread.join(timeout=30)


# --------------------------------------------------------------------------- real process


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def reload_metric(url: str) -> str:
    text = get(url + "/metrics")[1].decode()
    return next(line for line in text.splitlines()
                if line.startswith("readiness_config_last_reload_successful "))


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_hostile_reload_is_reported_by_sighup_and_post_and_sigterm_still_works(
    tmp_path: Path, start_daemon: Any
) -> None:
    path = write(tmp_path, CONFIG)
    served = start_daemon(["--config.file", str(path), "--web.enable-lifecycle"])
    deadline = time.monotonic() + 20
    while get(served.url + "/readyz")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    path.write_text(CONFIG.replace("checks:", BOMB + "checks:").replace(
        "kind: env", "kind: env\n    severity: *i"), encoding="utf-8")
    served.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while not reload_metric(served.url).endswith(" 0.0"):
        assert time.monotonic() < deadline, served.logs()
        time.sleep(0.1)
    assert "configuration reload rejected" in served.logs()
    assert "aliases are expanded" in served.logs()
    status, body = post(served.url + "/-/reload")
    assert status == 400
    answer = json.loads(body)
    assert answer["status"] == "error" and "aliases are expanded" in answer["errors"][0]
    ids = {r["id"] for r in json.loads(get(served.url + "/api/v1/checks")[1])}
    assert ids == {"home"}
    path.write_text(CONFIG.replace("interval: 1s", "interval: .inf"), encoding="utf-8")
    status, body = post(served.url + "/-/reload")
    assert status == 400 and "interval" in body.decode()
    assert served.stop() < 5
    assert served.process.returncode == 0


async def test_every_waiter_is_answered_when_applying_raises_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    runtime = Runtime(config.load(path, {"HOME": "/root"}), path)
    monkeypatch.setenv("HOME", "/root")
    await runtime.start()

    async def broken(_: Any) -> None:
        raise RuntimeError("closing a client failed")

    monkeypatch.setattr(runtime.ctx, "update_connections", broken)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(runtime.reload() for _ in range(3))), timeout=10)
    finally:
        await runtime.stop()
    assert results == [[f"{path}: reload failed: unexpected RuntimeError"]] * 3
    assert runtime.reload_state.successful is False
    assert await runtime.reload() == [
        "the exporter is shutting down; the configuration was not reloaded"]


async def test_reloads_start_a_minimum_gap_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    runtime = Runtime(config.load(path, {"HOME": "/root"}), path)
    starts: list[float] = []
    real_load = config.load

    def recording(path: Path | None, environ: Any = None) -> Config:
        starts.append(time.monotonic())
        return real_load(path, {"HOME": "/root"})

    monkeypatch.setattr(config, "load", recording)
    monkeypatch.setattr(daemon, "RELOAD_MIN_GAP", 0.5)
    await runtime.start()
    try:
        for _ in range(3):  # one client reloading in a loop
            assert await runtime.reload() == []
    finally:
        await runtime.stop()
    assert len(starts) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.45, gaps  # a lower bound: a loaded machine only widens it


async def test_a_reload_applies_the_new_settings_staleness_and_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store kept the first configuration's stale_after_intervals forever, so
    # readiness_check_stale and go-live followed a setting the file no longer had.
    path = write(tmp_path, CONFIG)
    monkeypatch.setenv("HOME", "/root")
    runtime = Runtime(config.load(path, {"HOME": "/root"}), path)
    await runtime.start()
    try:
        assert runtime.store.stale_after_intervals == 3.0
        path.write_text(CONFIG.replace("settings:\n", "settings:\n  stale_after_intervals: 7\n"
                                       "  phase: live\n"), encoding="utf-8")
        assert await runtime.reload() == []
        assert runtime.store.stale_after_intervals == 7.0
        assert runtime.reload_state.phase == "live"
    finally:
        await runtime.stop()
