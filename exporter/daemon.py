"""The running exporter: configuration, store, shared clients, scheduler, reloads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from exporter import __version__, build_info, config, lint, redact, registry, sharding
from exporter.config import Config, ConfigError
from exporter.connection_guard import ConnectionGuard
from exporter.context import RuntimeContext
from exporter.metrics import CORE_FAMILIES, Exposition, ReloadState
from exporter.model import CheckSpec, CheckView, MetricFamily
from exporter.scheduler import RetryBackoff, Scheduler
from exporter.server import make_app, start_server
from exporter.store import Store
from exporter.webconfig import BasicAuth, WebConfig, build_ssl_context

log = logging.getLogger("readiness.daemon")

RELOAD_MIN_GAP = 1.0
"""Seconds from the end of one reload to the start of the next (requests meanwhile wait
and share that next reload), so clients that reload in a loop cannot starve scrapes."""


def in_shard(check_id: str, shard: int, total_shards: int) -> bool:
    """Stable assignment of a check to one of `total_shards` shards (crc32 of its id)."""
    return sharding.shard_of(check_id, total_shards) == shard


def retry_backoff(cfg: Config) -> RetryBackoff:
    """The scheduler's retry-after-error backoff from `settings:`."""
    s = cfg.settings
    return RetryBackoff(initial=s.retry_initial, maximum=s.retry_max,
                        enabled=s.retry_after_error)


def families_of(specs: Iterable[CheckSpec]) -> dict[str, MetricFamily]:
    """The metric families the configured probe kinds may emit."""
    families: dict[str, MetricFamily] = {}
    for kind_name in sorted({s.kind for s in specs}):
        for family in registry.probe_kind(kind_name).metrics:
            families[family.name] = family
    core = {f.name for f in CORE_FAMILIES}
    return {name: f for name, f in families.items() if name not in core}


class Runtime:
    """Everything `serve` runs; started and stopped by the web app's cleanup context."""

    def __init__(self, cfg: Config, config_path: Path | None, *, shard: int = 0,
                 total_shards: int = 1) -> None:
        self.config = cfg
        self.config_path = config_path
        redact.install(redact.from_config(cfg))
        self.shard = shard
        self.total_shards = total_shards
        self._elsewhere: list[CheckView] = []
        specs = self._select(cfg)
        self.store = Store(specs, cfg.settings.stale_after_intervals)
        self.store.fleet_verdicts = self._fleet_verdicts(specs)
        from exporter.history import History  # the board's last outcomes per check
        self.history = History.follow(self.store, cfg.settings.state_dir)
        self.reload_state = ReloadState(successful=True, last_success=time.time(),
                                        phase=cfg.settings.phase, shard=shard,
                                        total_shards=total_shards)
        self.exposition = Exposition(self.store, families_of(specs), self.reload_state,
                                     process_series=True)
        self.ctx = RuntimeContext(cfg.connections, state_dir=cfg.settings.state_dir,
                                  checks=self.check_views, release=cfg.settings.release,
                                  repeats=True)
        self.scheduler = Scheduler(self.store, self.ctx,
                                   max_concurrency=cfg.settings.max_concurrency,
                                   jitter=cfg.settings.jitter,
                                   first_round_spread=cfg.settings.first_round_spread,
                                   retry=retry_backoff(cfg))
        self.reloads_run = 0
        """Reloads actually performed (requests that coalesced count once)."""
        self._next_reload: asyncio.Future[list[str]] | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._signal_tasks: set[asyncio.Task[list[str]]] = set()
        self._stopping = False
        self._last_reload_end = -math.inf

    def _select(self, cfg: Config) -> list[CheckSpec]:
        """This shard's checks; the others are remembered as views without results."""
        keys = sharding.placement(cfg.checks)
        mine: list[CheckSpec] = []
        elsewhere: list[CheckView] = []
        for spec in cfg.checks:
            if sharding.shard_of(keys[spec.id], self.total_shards) == self.shard:
                mine.append(spec)
            else:
                elsewhere.append(CheckView(spec.id, spec.section, spec.severity, spec.enabled,
                                           None, None, elsewhere=True))
        self._elsewhere = elsewhere
        return mine

    def _fleet_verdicts(self, specs: Iterable[CheckSpec]) -> frozenset[str]:
        if self.total_shards == 1:
            return frozenset()
        return frozenset(s.id for s in specs if sharding.covered_by_fleet_go_live(s))

    def check_views(self) -> list[CheckView]:
        """Every configured check for aggregates: this shard's with their results,
        the other shards' marked `elsewhere`."""
        return self.store.views() + self._elsewhere

    async def start(self) -> None:
        """Start scheduling checks."""
        # Move start-up objects (config, modules) out of the collector's view, so full
        # collections scan less and stall the event loop less.
        gc.collect()
        gc.freeze()
        lint.log_warnings(self.config, log)
        self.scheduler.start()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        log.info("SIGHUP received: reloading configuration")
        task = asyncio.ensure_future(self.reload())
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def stop(self) -> None:
        """Stop scheduling, finish or cancel in-flight probes, close every client.

        A reload in progress is abandoned, not waited for: its file reading runs in a
        daemon thread, so SIGTERM is never held up by a slow or hostile file.
        """
        self._stopping = True
        if self._reloader is not None:
            self._reloader.cancel()
        if self._next_reload is not None and not self._next_reload.done():
            self._next_reload.cancel()
        await self.scheduler.shutdown()
        await registry.shutdown_kinds(s.kind for s in self.config.checks)
        await self.ctx.aclose()

    async def reload(self) -> list[str]:
        """Re-read the configuration file; return its errors ([] when applied).

        Requests that arrive while a reload runs share the one reload that follows it and
        all get its result, so a burst of requests costs at most two reloads; reloads start
        at least `RELOAD_MIN_GAP` seconds apart. An invalid file, or one that cannot be
        applied, leaves the running configuration in place and sets
        `readiness_config_last_reload_successful` to 0.
        """
        if self._stopping:
            return ["the exporter is shutting down; the configuration was not reloaded"]
        if self._next_reload is None:
            self._next_reload = asyncio.get_running_loop().create_future()
        waiter = self._next_reload
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.create_task(self._run_reloads(), name="config-reload")
        return await asyncio.shield(waiter)

    async def _run_reloads(self) -> None:
        loop = asyncio.get_running_loop()
        while self._next_reload is not None:
            pause = self._last_reload_end + RELOAD_MIN_GAP - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            waiter, self._next_reload = self._next_reload, None
            try:
                result = await self._reload_once()
            except asyncio.CancelledError:
                waiter.cancel()
                raise
            except Exception as exc:  # every waiter gets an answer, whatever happened
                result = self._rejected([f"{self.config_path}: reload failed: unexpected "
                                         f"{type(exc).__name__}"])
            self._last_reload_end = loop.time()
            if not waiter.done():
                waiter.set_result(result)

    async def _reload_once(self) -> list[str]:
        self.reloads_run += 1
        try:
            new = await load_off_loop(self.config_path)
        except ConfigError as exc:
            return self._rejected(exc.errors)
        except Exception as exc:  # a bug in loading: still a rejected reload, never a crash
            return self._rejected([f"{self.config_path}: cannot be loaded: unexpected "
                                   f"{type(exc).__name__}"])
        scrubber = await asyncio.to_thread(redact.from_config, new)
        old_elsewhere = self._elsewhere
        specs = self._select(new)
        old_specs = [state.spec for state in self.store.states.values()]
        old_families = families_of(old_specs)
        try:
            families = families_of(specs)
            self.exposition.set_families(families)
            # Before replace_specs: the exposition's go-live tracking reads it then.
            self.store.fleet_verdicts = self._fleet_verdicts(specs)
            self.store.replace_specs(specs)
            self.scheduler.apply(specs)
        except Exception as exc:  # all or nothing: put the running configuration back
            self.exposition.set_families(old_families)
            self._elsewhere = old_elsewhere
            self.store.fleet_verdicts = self._fleet_verdicts(old_specs)
            self.store.replace_specs(old_specs)
            self.scheduler.apply(old_specs)
            return self._rejected([f"{new.source}: cannot be applied: unexpected "
                                   f"{type(exc).__name__}"])
        redact.install(scrubber)
        self.config = new
        self.store.stale_after_intervals = new.settings.stale_after_intervals
        self.scheduler.retry = retry_backoff(new)
        await self.ctx.update_connections(new.connections)
        self.reload_state.successful = True
        self.reload_state.phase = new.settings.phase
        self.reload_state.last_success = time.time()
        log.info("configuration reloaded", extra={"checks": len(specs), "source": new.source})
        return []

    def _rejected(self, errors: list[str]) -> list[str]:
        self.reload_state.successful = False
        log.error("configuration reload rejected; keeping the running configuration",
                  extra={"errors": errors, "source": str(self.config_path)})
        return errors


async def load_off_loop(path: Path | None) -> Config:
    """`config.load(path)` in a daemon thread, so the loop keeps serving while it runs and
    a shutdown never waits for it (a thread of the default pool would be joined at exit)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Config] = loop.create_future()

    def settle(value: Config | None, error: BaseException | None) -> None:
        if result.done():
            return
        if error is not None:
            result.set_exception(error)
        else:
            assert value is not None
            result.set_result(value)

    def work() -> None:
        value: Config | None = None
        error: BaseException | None = None
        try:
            value = config.load(path)
        except BaseException as exc:  # handed to the loop, which decides
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name="readiness-config-load", daemon=True).start()
    return await result


async def serve(cfg: Config, config_path: Path | None, host: str, port: int,
                web_config: WebConfig | None, web_config_dir: Path, *, shard: int = 0,
                total_shards: int = 1, telemetry_path: str = "/metrics",
                enable_lifecycle: bool = False) -> None:
    """Run the exporter until SIGTERM or SIGINT (an empty `host`: every interface, IPv4
    and IPv6)."""
    build = build_info.current()  # before listening: it may run `git rev-parse` once
    runtime = Runtime(cfg, config_path, shard=shard, total_shards=total_shards)
    auth = BasicAuth(web_config.basic_auth_users if web_config else {})
    ssl_context = None
    if web_config is not None and web_config.tls_server_config is not None:
        # Built and checked when the file was loaded; rebuilt only for a WebConfig made
        # in code.
        ssl_context = web_config.ssl_context or build_ssl_context(
            web_config.tls_server_config, web_config_dir)
    # Handlers first: a SIGTERM that arrives as soon as the port answers (a supervisor,
    # a test) must stop the exporter cleanly, not kill it with the default action.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    guard = ConnectionGuard()
    app = make_app(runtime, auth, guard, telemetry_path=telemetry_path,
                   enable_lifecycle=enable_lifecycle)
    runner = await start_server(app, host, port, ssl_context, guard)
    shown_host = f"[{host}]" if ":" in host else host
    log.info("readiness board at %s://%s:%d/ (metrics at %s)",
             "https" if ssl_context else "http", shown_host or "localhost", port,
             telemetry_path)
    log.info("readiness-exporter started", extra={
        "version": __version__, "revision": build.revision,
        "python_version": build.python_version, "listen": f"{shown_host}:{port}",
        "telemetry_path": telemetry_path, "lifecycle": enable_lifecycle,
        "tls": ssl_context is not None,
        "basic_auth": auth.enabled, "config": cfg.source, "checks": len(runtime.store.states),
        "shard": shard, "total_shards": total_shards,
    })
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await guard.stop()
        await runner.cleanup()
        auth.close()
        log.info("stopped")
