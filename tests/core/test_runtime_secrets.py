"""Secret references are resolved at each run, not at load: an unset token gives that one
check `error/config` naming the variable (a `validate` warning, refused by `--strict`),
and the preset's 7.4 authenticated smoke test ships enabled. A malformed reference is
still a load error. Token values never appear in output or logs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import cli, config, lint
from exporter.config import ConfigError
from exporter.context import RuntimeContext
from exporter.model import Reason, Status
from exporter.runner import run_check

EXE = Path(sys.executable).parent / "readiness-exporter"
TOKEN = "smoke-tok-8d31f0c2a9e7b4-never-shown"
VARIABLE = "API_SMOKE_TOKEN"


@contextlib.asynccontextmanager
async def copilot_api() -> AsyncIterator[str]:
    """The application's authenticated API on a free loopback port; yields its base URL."""
    async def copilot(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"detail": "unauthorized"}, status=401)
        return web.json_response({"assistant": "ready"})

    app = web.Application()
    app.router.add_get("/api/v1/copilot/", copilot)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def preset_config(tmp_path: Path, base: str, checks: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"include: [qbitel-production]\ninputs: {{app_url: \"{base}\"}}\n{checks}")
    return path


def validate(path: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["validate", "--config.file", str(path), *extra])
    return code, err.getvalue()


def test_preset_smoke_test_ships_enabled_and_loads_without_its_token(tmp_path: Path) -> None:
    cfg = config.load(preset_config(tmp_path, "https://qbitel.example.internal"), {})
    smoke = cfg.check("7.4-smoke")
    assert smoke.enabled and smoke.severity.value == "critical"
    assert getattr(smoke, "bearer_token").describe() == "${API_SMOKE_TOKEN}"
    warnings = [w for w in lint.config_warnings(cfg, {}) if "7.4-smoke" in w]
    assert warnings == [
        "checks (id 7.4-smoke).bearer_token: secret reference ${API_SMOKE_TOKEN} cannot be "
        "resolved now: environment variable API_SMOKE_TOKEN is not set; the check ends as "
        "error/config until it can (resolved at each run)"]
    assert [w for w in lint.config_warnings(cfg, {VARIABLE: TOKEN}) if "7.4-smoke" in w] == []


def test_validate_warns_and_strict_refuses(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = preset_config(tmp_path, "https://qbitel.example.internal")
    monkeypatch.delenv(VARIABLE, raising=False)
    code, stderr = validate(path)
    assert code == 0
    assert "warning: checks (id 7.4-smoke).bearer_token: secret reference ${API_SMOKE_TOKEN}" \
        in stderr
    code, stderr = validate(path, "--strict")
    assert code == 2 and "refused by --strict" in stderr
    monkeypatch.setenv(VARIABLE, TOKEN)
    code, stderr = validate(path, "--strict")
    assert "7.4-smoke" not in stderr and TOKEN not in stderr


async def test_the_token_is_resolved_at_each_run(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv(VARIABLE, raising=False)
    token_file = tmp_path / "token"
    async with copilot_api() as base:
        cfg = config.load(preset_config(tmp_path, base), {})
        smoke = cfg.check("7.4-smoke")
        ctx = RuntimeContext(state_dir=tmp_path / "state")
        try:
            unset, _ = await run_check(smoke, ctx)
            monkeypatch.setenv(VARIABLE, TOKEN + "-rotated-away")
            wrong, _ = await run_check(smoke, ctx)
            monkeypatch.setenv(VARIABLE, TOKEN)  # set after load: no reload needed
            good, _ = await run_check(smoke, ctx)
            # the same by file: missing, then written
            by_file = config.load(preset_config(tmp_path, base, checks=(
                f'checks:\n  - {{id: "7.4-smoke", bearer_token: {{file: {token_file}}}}}\n')),
                {}).check("7.4-smoke")
            missing, _ = await run_check(by_file, ctx)
            token_file.write_text(TOKEN + "\n")
            from_file, _ = await run_check(by_file, ctx)
        finally:
            await ctx.aclose()
    assert unset.status is Status.ERROR and unset.reason is Reason.CONFIG
    assert unset.message.startswith("bearer_token: environment variable API_SMOKE_TOKEN is "
                                    "not set (set it, or change bearer_token)")
    assert wrong.status is not Status.PASS and "401" in wrong.message
    assert good.status is Status.PASS, good.message
    assert missing.status is Status.ERROR and missing.reason is Reason.CONFIG
    assert str(token_file) in missing.message
    assert from_file.status is Status.PASS, from_file.message
    for outcome in (unset, wrong, good, missing, from_file):
        assert TOKEN not in outcome.message
    for entry in caplog.records:
        assert TOKEN not in entry.getMessage() and TOKEN not in str(entry.__dict__)


async def check(path: Path, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    process = await asyncio.create_subprocess_exec(
        str(EXE), "check", "--config.file", str(path), "--only", "7.4-smoke", "--output",
        "json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "HOME": str(path.parent), **env}, cwd=path.parent)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    assert TOKEN not in out.decode() and TOKEN not in err.decode()
    return process.returncode, json.loads(out), err.decode()


async def test_check_with_an_unset_token_fails_that_check_only(tmp_path: Path) -> None:
    async with copilot_api() as base:
        path = preset_config(tmp_path, base)
        code, document, stderr = await check(path, {})
        good_code, good, good_stderr = await check(path, {VARIABLE: TOKEN})
    (row,) = document["checks"]
    assert code == 1 and document["blocking"] == ["7.4-smoke"]
    assert row["status"] == "error" and row["reason"] == "config"
    assert "API_SMOKE_TOKEN is not set" in row["message"]
    assert "warning: checks (id 7.4-smoke).bearer_token" in stderr
    (good_row,) = good["checks"]
    assert good_code == 0 and good_row["status"] == "pass", good_row["message"]
    assert "7.4-smoke" not in good_stderr


@pytest.mark.parametrize(("reference", "expected"), [
    ('"inline-literal-token-value"', "by reference only"),
    ("{env: 1BAD-NAME}", "'env' must be an environment variable name"),
    ("{env: API_SMOKE_TOKEN, file: /run/secrets/token}", "exactly one of 'env' or 'file'"),
    ('"${API_SMOKE_TOKEN"', "by reference only"),
])
def test_a_malformed_reference_is_still_a_load_error(tmp_path: Path, reference: str,
                                                     expected: str) -> None:
    path = preset_config(tmp_path, "https://qbitel.example.internal", checks=(
        f'checks:\n  - {{id: "7.4-smoke", bearer_token: {reference}}}\n'))
    with pytest.raises(ConfigError) as info:
        config.load(path, {VARIABLE: TOKEN})
    text = "; ".join(info.value.errors)
    assert "7.4-smoke" in text and "bearer_token" in text and expected in text, text
    assert "inline-literal-token-value" not in text
    code, stderr = validate(path)
    assert code == 2 and "inline-literal-token-value" not in stderr
