"""The readiness board rendered by a real browser (Debian's Chromium, headless)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

CONFIG = """
settings:
  first_round_spread: 0.2
checks:
  - id: "2.1.1"
    section: "2.1"
    title: JWT secret is cryptographically strong
    severity: critical
    kind: secret_strength
    env: JWT_SECRET
  - id: "10.3.3"
    section: "10.3"
    title: Recovery runbook documented <b>bold?</b>
    severity: warning
    kind: file
    path: {runbook}
  - id: "3.3.1"
    section: "3.3"
    title: Kafka/RabbitMQ deployed (if applicable)
    severity: critical
    kind: env
    enabled: false
    disabled_reason: no message queue in this deployment
"""


def chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="readiness-chromium-")
    try:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_board_in_chromium_shows_verdict_sections_and_escapes(tmp_path: Path,
                                                               start_daemon: Any) -> None:
    config = tmp_path / "readiness.yaml"
    config.write_text(CONFIG.format(runbook=tmp_path / "runbook.md"))
    secret = "weak"
    daemon = start_daemon(["--config.file", str(config)], {"JWT_SECRET": secret})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(daemon.url + "/readyz", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)
    result = chromium(["--dump-dom", daemon.url + "/"])
    dom = result.stdout
    assert '<header class="banner nogo" id="verdict">' in dom, result.stderr[-2000:]
    assert "NO-GO" in dom and "1 critical check blocking go-live" in dom
    assert "2.1 Authentication &amp; Authorization" in dom
    assert "10.3 DR Testing" in dom and "3.3 Message Queue" in dom
    assert "disabled: no message queue in this deployment" in dom
    assert "&lt;b&gt;bold?&lt;/b&gt;" in dom  # titles are escaped, not rendered as markup
    assert "JWT_SECRET is weak" in dom
    assert f">{secret}<" not in dom and f" {secret} " not in dom
    shot = tmp_path / "board.png"
    chromium(["--window-size=1280,900", f"--screenshot={shot}", daemon.url + "/"])
    assert shot.exists() and shot.stat().st_size > 10_000
