"""The readiness board: cause grouping, history, and the pages rendered by a real browser
(Debian's Chromium, headless, driven over the DevTools protocol)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter import config
from exporter.cli import run_once
from exporter.history import History
from exporter.model import CheckSpec, Outcome, Reason, Severity, Status
from exporter.store import Store
from exporter.web.causes import group_causes, normalise

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
WIDTHS = (360, 1280, 2560)
SHOTS = Path(tempfile.gettempdir()) / "readiness-board-screenshots"

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


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout}s")


class Browser:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="readiness-chromium-")
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.session = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = 0

    async def connect(self) -> None:
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                                max_msg_size=0)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.ids += 1
        await self.ws.send_json({"id": self.ids, "method": method, "params": params})
        while True:
            message = json.loads((await asyncio.wait_for(self.ws.receive(), 60)).data)
            if message.get("id") == self.ids:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def eval(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_loaded(self, previous: str | None = None) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = await self.eval("[document.readyState, location.href]")
            if state[0] == "complete" and state[1] != previous and state[1] != "about:blank":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("page did not load")

    async def goto(self, url: str, width: int = 1280) -> None:
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=900,
                        deviceScaleFactor=1, mobile=width < 600)
        previous = await self.eval("location.href")
        await self.call("Page.navigate", url=url)
        await self.wait_loaded(previous if previous != url else None)

    async def overflow(self) -> int:
        """Pixels the page is wider than the viewport (0: no horizontal scrolling)."""
        return int(await self.eval(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"))

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png",
                                 captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.session.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = Browser()
    try:
        await b.connect()
        yield b
    finally:
        await b.close()


# --------------------------------------------------------------------------- causes


def test_normalise_replaces_hosts_paths_numbers_and_keeps_targets() -> None:
    norm = normalise("connection app-db: host name does not resolve")
    assert norm.template == "host name does not resolve"
    assert norm.display == "connection <connection>: host name does not resolve"
    assert [(t.kind, t.value) for t in norm.targets] == [("connection", "app-db")]
    norm = normalise("keyring /etc/readiness-exporter/keyring.yaml does not exist")
    assert norm.template == "<path> does not exist"
    assert ("path", "/etc/readiness-exporter/keyring.yaml") in [
        (t.kind, t.value) for t in norm.targets]
    assert normalise("cannot resolve loki").template == normalise(
        "PING: cannot resolve redis").template == "cannot resolve <host>"
    assert normalise("certificate expires in 12 days (min 30)").template == \
        normalise("certificate expires in 3 days (min 30)").template
    assert normalise("release 'a' is not 'b'").template == "release <value> is not <value>"
    norm = normalise("release being deployed is unknown: set settings.release, or release")
    assert [(t.kind, t.value) for t in norm.targets] == [("option", "settings.release")]


def test_spans_read_like_the_configuration() -> None:
    from exporter.web.board import span

    assert [span(s) for s in (0.5, 30, 90, 300, 21600, 90000)] == [
        "0.5s", "30s", "1m30s", "5m", "6h", "1d1h"]


def _store(*rows: tuple[str, Severity, Outcome]) -> Store:
    specs = [CheckSpec(id=i, section="1.1", title=f"check {i}", severity=sev, kind="env")
             for i, sev, _ in rows]
    store = Store(specs)
    for i, _, outcome in rows:
        store.record(i, outcome, time.time(), 0.1)
    return store


def test_causes_join_by_template_and_by_shared_unreachable_target() -> None:
    crit, warn = Severity.CRITICAL, Severity.WARNING
    store = _store(
        ("a", crit, Outcome.errored(Reason.DNS, "connection db: host name does not resolve")),
        ("b", warn, Outcome.errored(Reason.DNS, "connection db: host name does not resolve")),
        # another template, but the same target and reason: same cause
        ("c", crit, Outcome.errored(Reason.DNS, "connection db: lookup of replica failed")),
        # same target, unreachable another way (a slow resolver times out): same cause
        ("d", crit, Outcome.errored(Reason.TIMEOUT, "connection db: timed out")),
        # same target reached, but its certificate is rejected: its own cause
        ("h", crit, Outcome.errored(Reason.TLS, "connection db: certificate rejected")),
        ("e", crit, Outcome.failed("JWT_SECRET is not set")),
        ("f", crit, Outcome.failed("required missing: DATABASE_HOST, JWT_SECRET")),
        ("g", crit, Outcome.passed("ok")),
    )
    causes = group_causes(store.states.values())
    groups = sorted(sorted(c.id for c in cause.checks) for cause in causes)
    assert groups == [["a", "b", "c", "d"], ["e", "f"], ["h"]]
    db = next(c for c in causes if len(c.checks) == 4)
    assert db.critical == 3 and db.reasons == ["dns", "timeout"]
    assert [(t.kind, t.value, t.checks) for t in db.targets] == [
        ("connection", "db", ["a", "b", "c", "d"])]


def test_a_disabled_or_passing_check_is_no_cause() -> None:
    store = _store(("a", Severity.CRITICAL, Outcome.skipped("disabled: not used")),
                   ("b", Severity.CRITICAL, Outcome.passed("fine")))
    assert group_causes(store.states.values()) == []


async def test_preset_with_nothing_configured_collapses_into_at_most_18_causes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: about 110 failing rows of the preset share a handful of causes (16 with
    nothing configured: the smoke test's unset token and the missing `.env.example` are
    causes of their own since run-time secrets and 1.2.3's documented list)."""
    for name in list(os.environ):
        if name not in ("PATH", "HOME", "TMPDIR", "LANG", "VIRTUAL_ENV"):
            monkeypatch.delenv(name)
    path = tmp_path / "readiness.yaml"
    path.write_text("include: [qbitel-production]\n")
    cfg = config.load(path)
    store = await run_once(cfg, cfg.checks)
    problems = {s.spec.id: s for s in store.states.values()
                if s.spec.enabled and s.status in (Status.FAIL, Status.ERROR)}
    assert len(problems) >= 100
    causes = group_causes(store.states.values())
    assert len(causes) <= 18
    grouped = [c.id for cause in causes for c in cause.checks]
    assert sorted(grouped) == sorted(problems)  # every failing row in exactly one cause

    def cause_of(check_id: str) -> Any:
        return next(c for c in causes if check_id in {b.id for b in c.checks})

    # every Kubernetes check waits for the same missing cluster configuration
    kubernetes = {i for i, s in problems.items() if s.spec.kind == "kubernetes"}
    assert len(kubernetes) >= 15
    assert {cause_of(i).summary for i in kubernetes} == {cause_of("4.1.1").summary}
    assert any("kubeconfig" in fix for fix in cause_of("4.1.1").fixes)
    # attestations that cannot know the release: one cause, fixed by settings.release
    unknown = {i for i, s in problems.items() if s.outcome is not None
               and "release being deployed is unknown" in s.outcome.message}
    assert len(unknown) >= 10
    assert len({id(cause_of(i)) for i in unknown}) == 1
    assert "settings.release" in cause_of(next(iter(unknown))).fixes
    # the database connection: every check using it that cannot reach it (a name that
    # does not resolve, or a resolver too slow to say so)
    app_db = {i for i, s in problems.items() if s.outcome is not None
              and s.outcome.reason in (Reason.DNS, Reason.CONNECT, Reason.TIMEOUT)
              and getattr(s.spec, "connection", None) == "app-db"}
    assert len(app_db) >= 8 and len({id(cause_of(i)) for i in app_db}) == 1
    target = next(t for t in cause_of("2.1.2").targets if t.value == "app-db")
    assert set(target.checks) == app_db and target.options == ["connections.app-db"]
    # a missing variable named by two checks is one cause
    assert cause_of("2.1.1") is cause_of("6.1")
    # causes come biggest-first by critical checks blocked
    assert [c.critical for c in causes] == sorted((c.critical for c in causes), reverse=True)


# --------------------------------------------------------------------------- history


def _spec(check_id: str = "c") -> CheckSpec:
    return CheckSpec(id=check_id, section="1.1", title="t", kind="env")


def test_history_keeps_the_last_n_runs_and_ignores_reload_notifications() -> None:
    store = Store([_spec()])
    history = History.follow(store, None, length=3)
    for n in range(5):
        store.record("c", Outcome.failed(f"run {n}"), 1000.0 + n, 0.5)
    store.replace_specs([_spec()])  # notifies again without a new run
    entries = history.entries("c")
    assert [e.message for e in entries] == ["run 2", "run 3", "run 4"]
    assert entries[-1].duration == 0.5 and entries[-1].status == "fail"


def test_history_without_a_state_dir_forgets_checks_a_reload_removed() -> None:
    # Found by the soak: only the persisting path pruned, so ids renamed by reloads
    # kept their buffers for the life of the process.
    store = Store([_spec("a"), _spec("b")])
    history = History.follow(store, None, length=3)
    store.record("a", Outcome.passed("ok"), 1000.0, 0.1)
    store.record("b", Outcome.passed("ok"), 1000.0, 0.1)
    store.replace_specs([_spec("b"), _spec("c")])  # a reload renames "a" to "c"
    store.record("c", Outcome.failed("new"), 1001.0, 0.1)
    assert history.entries("a") == [] and len(history.entries("b")) == 1
    assert [e.message for e in history.entries("c")] == ["new"]
    assert "a" not in history._runs  # the run counters are pruned too


def test_history_survives_a_restart_in_the_state_dir(tmp_path: Path) -> None:
    store = Store([_spec()])
    history = History.follow(store, tmp_path, length=5)
    store.record("c", Outcome.passed("ok"), 1000.0, 0.1)
    store.record("c", Outcome.failed("broken"), 2000.0, 0.2)
    store.record("c", Outcome.failed("still broken"), 3000.0, 0.2)
    history.save()
    restarted_store = Store([_spec()])
    restarted = History.follow(restarted_store, tmp_path, length=5)
    assert [e.message for e in restarted.entries("c")] == ["ok", "broken", "still broken"]
    # after the restart the store only knows its own first run; the history knows more
    restarted_store.record("c", Outcome.failed("broken again"), 4000.0, 0.1)
    assert restarted.status_since("c") == 2000.0


async def test_history_is_written_off_the_event_loop_and_forgets_removed_checks(
        tmp_path: Path) -> None:
    store = Store([_spec("a"), _spec("b")])
    history = History.follow(store, tmp_path)
    history.save_interval = 0.0
    store.record("a", Outcome.passed("ok"), 1000.0, 0.1)
    path = tmp_path / "board-history.json"
    for _ in range(100):  # written by a worker thread
        if path.exists():
            break
        await asyncio.sleep(0.02)
    assert set(json.loads(path.read_text())["checks"]) == {"a"}
    history.save_interval = 1e9  # from here on only the explicit save below writes
    store.record("b", Outcome.passed("ok"), 1000.0, 0.1)
    store.replace_specs([_spec("b")])  # a reload removes "a"
    history.save()
    assert set(json.loads(path.read_text())["checks"]) == {"b"}
    assert [p.name for p in tmp_path.iterdir()] == ["board-history.json"]


def test_a_damaged_history_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "board-history.json").write_text("{not json")
    store = Store([_spec()])
    history = History.follow(store, tmp_path)
    assert history.entries("c") == []
    store.record("c", Outcome.passed("ok"), 1000.0, 0.1)
    history.save()
    assert json.loads((tmp_path / "board-history.json").read_text())["checks"]["c"]


# --------------------------------------------------------------------------- in Chromium


def test_board_in_chromium_shows_verdict_sections_and_escapes(tmp_path: Path,
                                                               start_daemon: Any) -> None:
    config_path = tmp_path / "readiness.yaml"
    config_path.write_text(CONFIG.format(runbook=tmp_path / "runbook.md"))
    secret = "weak"
    daemon = start_daemon(["--config.file", str(config_path)], {"JWT_SECRET": secret})
    wait_ready(daemon.url, 15)
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


PRESET = """
include: [qbitel-production]
settings:
  first_round_spread: 0.2
"""


async def test_preset_board_at_three_widths_causes_filters_and_links(
        tmp_path: Path, start_daemon: Any, browser: Browser) -> None:
    (tmp_path / "readiness.yaml").write_text(PRESET)
    daemon = start_daemon(["--config.file", str(tmp_path / "readiness.yaml")])
    wait_ready(daemon.url)
    for width in WIDTHS:
        await browser.goto(daemon.url + "/", width)
        assert await browser.overflow() == 0, f"horizontal overflow at {width}px"
        shot = await browser.screenshot(SHOTS / f"preset-nothing-configured-{width}.png")
        assert shot.stat().st_size > 20_000
    assert await browser.eval("document.title") == "NO-GO · readiness board"
    causes = await browser.eval("document.querySelectorAll('li.cause').length")
    assert 1 <= causes <= 18
    heading = await browser.eval("document.querySelector('main h2').textContent")
    assert heading.startswith(f"{causes} causes behind ")
    # landmarks, a skip link and a label for every filter control
    assert await browser.eval(
        "['header','main','footer'].every(t => document.querySelector(t))"
        " && !!document.querySelector('a.skip[href=\"#content\"]')"
        " && [...document.querySelectorAll('#filters select, #filters input')]"
        "   .every(c => document.querySelector(`label[for=\"${c.id}\"]`))")
    # failing sections first, open; passing sections collapsed
    sections = await browser.eval(
        "[...document.querySelectorAll('details.section')].map(d => [d.id, d.open,"
        " d.querySelectorAll('tr.fail, tr.error, tr.pending').length])")
    first_quiet = next(i for i, s in enumerate(sections) if s[2] == 0)
    assert all(s[2] > 0 and s[1] for s in sections[:first_quiet])
    assert all(s[2] == 0 and not s[1] for s in sections[first_quiet:])

    # filters: the form's controls and its button (a plain GET form, no script)
    assert await browser.eval("document.querySelectorAll('script').length") == 0
    await browser.eval("""(() => { document.getElementById('f-severity').value = 'critical';
        document.querySelector('#filters button').click(); })()""")
    await browser.wait_loaded(daemon.url + "/")
    assert "severity=critical" in await browser.eval("location.search")
    severities = await browser.eval(
        "[...document.querySelectorAll('tbody td.sev')].map(td => td.textContent)")
    assert severities and set(severities) == {"critical"}
    before = await browser.eval("location.href")
    await browser.eval("""(() => { document.getElementById('f-text').value = 'kubeconfig';
        document.querySelector('#filters button').click(); })()""")
    await browser.wait_loaded(before)
    messages = await browser.eval(
        "[...document.querySelectorAll('tbody td.msg')].map(td => td.textContent)")
    assert messages and all("kubeconfig" in m for m in messages)
    # the same filters as a link: plain query parameters
    await browser.goto(daemon.url + "/?status=fail&section=1.1")
    rows = await browser.eval(
        "[...document.querySelectorAll('tbody tr')].map(tr => [tr.id, tr.className])")
    assert rows and all(r[0].startswith("check-1.1.") and r[1].startswith("fail") for r in rows)

    # a check's link leads to its page, and back
    before = await browser.eval("location.href")
    await browser.eval("document.querySelector('tbody td.id a').click()")
    await browser.wait_loaded(before)
    assert "/check/1.1." in await browser.eval("location.pathname")
    page = await browser.eval("document.body.innerText")
    assert "What is observed and what a pass means" in page and "newest first" in page
    assert await browser.eval("document.querySelectorAll('#history-title ~ table tbody tr')"
                              ".length") >= 1
    assert await browser.eval(
        "[...document.links].some(a => a.href.includes('/probes/report.md'))"
        " && [...document.links].some(a => a.href.includes('runbooks.md#'))")
    for width in WIDTHS:
        await browser.goto(await browser.eval("location.href"), width)
        assert await browser.overflow() == 0, f"check page overflows at {width}px"
    before = await browser.eval("location.href")
    await browser.eval("document.querySelector('nav a').click()")
    await browser.wait_loaded(before)
    assert await browser.eval("location.pathname") == "/"


GREEN = """
settings:
  first_round_spread: 0.2
checks:
{checks}
"""


async def test_all_green_board_at_three_widths(tmp_path: Path, start_daemon: Any,
                                               browser: Browser) -> None:
    checks = []
    for n in range(1, 13):
        path = tmp_path / f"evidence-{n}.md"
        path.write_text("reviewed\n")
        checks.append(f'  - {{id: "{n}.1", section: "{n}", title: "Evidence file {n} present",'
                      f' severity: critical, kind: file, path: "{path}"}}')
    (tmp_path / "readiness.yaml").write_text(GREEN.format(checks="\n".join(checks)))
    daemon = start_daemon(["--config.file", str(tmp_path / "readiness.yaml")])
    wait_ready(daemon.url)
    for width in WIDTHS:
        await browser.goto(daemon.url + "/", width)
        assert await browser.overflow() == 0, f"horizontal overflow at {width}px"
        await browser.screenshot(SHOTS / f"all-green-{width}.png")
    assert await browser.eval("document.querySelector('#verdict h1').textContent") == "GO"
    assert await browser.eval("document.querySelectorAll('li.cause').length") == 0
    opened = await browser.eval(
        "[...document.querySelectorAll('details.section')].map(d => d.open)")
    assert len(opened) == 12 and not any(opened)  # every passing section collapsed


HOSTILE = """
settings:
  first_round_spread: 0.2
checks:
  - id: "1.1"
    section: "1"
    title: "quote \\" and <img src=x onerror=\\"window.pwned=1\\">"
    severity: critical
    kind: file
    path: "{hostile}"
  - id: "1.2"
    section: "1"
    title: second check on the same missing file
    severity: critical
    kind: file
    path: "{hostile}"
"""


async def test_hostile_titles_and_messages_are_escaped(tmp_path: Path, start_daemon: Any,
                                                       browser: Browser) -> None:
    hostile = tmp_path / "<script>window.pwned=2</script>'q\""
    (tmp_path / "readiness.yaml").write_text(
        HOSTILE.format(hostile=str(hostile).replace('"', '\\"')))
    daemon = start_daemon(["--config.file", str(tmp_path / "readiness.yaml")])
    wait_ready(daemon.url, 20)
    for url in ("/", "/check/1.1", "/report.html"):
        await browser.goto(daemon.url + url)
        assert await browser.eval("window.pwned === undefined"), url
        assert await browser.eval("document.querySelectorAll('img, script:not([src])')"
                                  ".length") == 0, url
        text = await browser.eval("document.body.innerText")
        assert "<script>window.pwned=2</script>'q\"" in text, url
    await browser.goto(daemon.url + "/")
    assert await browser.eval("document.querySelectorAll('li.cause').length") == 1
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(daemon.url + "/check/no-such-check", timeout=10)
    assert missing.value.code == 404
    assert await browser.eval("document.querySelectorAll('li.cause var').length") >= 1


def test_an_unwritable_state_dir_is_logged_once(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = Store([_spec()])
    history = History.follow(store, blocker / "state")
    for n in range(3):
        store.record("c", Outcome.passed("ok"), 1000.0 + n, 0.1)
        history.save()
    warnings = [r for r in caplog.records if "board history" in r.getMessage()]
    assert len(warnings) == 1 and "settings.state_dir" in warnings[0].getMessage()
    assert len(history.entries("c")) == 3  # the board keeps working from memory


def test_the_daemon_writes_the_history_at_shutdown(tmp_path: Path, start_daemon: Any) -> None:
    evidence = tmp_path / "evidence.md"
    evidence.write_text("reviewed\n")
    (tmp_path / "readiness.yaml").write_text(
        "settings: {first_round_spread: 0}\nchecks:\n"
        f'  - {{id: "1.1", section: "1", title: t, kind: file, path: "{evidence}",'
        " interval: 0.5s}\n")
    daemon = start_daemon(["--config.file", str(tmp_path / "readiness.yaml")])
    wait_ready(daemon.url)
    time.sleep(2.5)  # several runs, but no periodic save after the first one (10 s)
    daemon.stop()
    saved = json.loads((tmp_path / "state" / "board-history.json").read_text())
    assert len(saved["checks"]["1.1"]) >= 3, daemon.logs()[-2000:]
