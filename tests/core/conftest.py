"""Fixtures for the core tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import registry
from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "readiness-exporter"


@pytest.fixture
def behaviour_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register the test-only `test_behaviour` probe kind."""
    monkeypatch.setitem(registry.PROBE_KINDS, "test_behaviour", "tests.support.kinds:BEHAVIOUR")
    registry.probe_kind.cache_clear()
    yield
    registry.probe_kind.cache_clear()


class Daemon:
    """A `readiness-exporter serve` subprocess on a free port."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.log_path = cwd / "daemon.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(EXE), "serve", "--web.listen-address", f"127.0.0.1:{self.port}", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
        )
        try:
            wait_for_port(self.port, timeout=20)
        except TimeoutError:
            self.stop()
            raise AssertionError(self.logs()) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> float:
        """SIGTERM and wait; return seconds it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return time.monotonic() - started


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[object]:
    """Factory: start_daemon(args, env=None) -> Daemon; stopped afterwards."""
    daemons: list[Daemon] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Daemon:
        full_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **(env or {})}
        daemon = Daemon(args, full_env, tmp_path)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()
