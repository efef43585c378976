"""The running exporter: configuration, store, shared clients, scheduler, reloads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from exporter import __version__, config, lint, redact, registry
from exporter.config import Config, ConfigError
from exporter.connection_guard import ConnectionGuard
from exporter.context import RuntimeContext
from exporter.metrics import CORE_FAMILIES, Exposition, ReloadState
from exporter.model import CheckSpec, MetricFamily
from exporter.scheduler import Scheduler
from exporter.server import make_app, start_server
from exporter.store import Store
from exporter.webconfig import BasicAuth, WebConfig, build_ssl_context

log = logging.getLogger("readiness.daemon")


def in_shard(check_id: str, shard: int, total_shards: int) -> bool:
    """Stable assignment of a check to one of `total_shards` shards (crc32 of its id)."""
    return zlib.crc32(check_id.encode("utf-8")) % total_shards == shard


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
        specs = self._select(cfg)
        self.store = Store(specs, cfg.settings.stale_after_intervals)
        from exporter.history import History  # the board's last outcomes per check
        self.history = History.follow(self.store, cfg.settings.state_dir)
        self.reload_state = ReloadState(successful=True, last_success=time.time(),
                                        phase=cfg.settings.phase)
        self.exposition = Exposition(self.store, families_of(specs), self.reload_state)
        self.ctx = RuntimeContext(cfg.connections, state_dir=cfg.settings.state_dir,
                                  checks=self.store.views, release=cfg.settings.release)
        self.scheduler = Scheduler(self.store, self.ctx,
                                   max_concurrency=cfg.settings.max_concurrency,
                                   jitter=cfg.settings.jitter,
                                   first_round_spread=cfg.settings.first_round_spread)
        self._reload_lock = asyncio.Lock()

    def _select(self, cfg: Config) -> list[CheckSpec]:
        return [s for s in cfg.checks if in_shard(s.id, self.shard, self.total_shards)]

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
        task.add_done_callback(lambda t: t.exception())

    async def stop(self) -> None:
        """Stop scheduling, finish or cancel in-flight probes, close every client."""
        await self.scheduler.shutdown()
        await registry.shutdown_kinds(s.kind for s in self.config.checks)
        await self.ctx.aclose()

    async def reload(self) -> list[str]:
        """Re-read the configuration file; keep the running one if the new one is invalid."""
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(config.load, self.config_path)
            except ConfigError as exc:
                self.reload_state.successful = False
                log.error("configuration reload rejected; keeping the running configuration",
                          extra={"errors": exc.errors, "source": str(self.config_path)})
                return exc.errors
            redact.install(await asyncio.to_thread(redact.from_config, new))
            specs = self._select(new)
            self.config = new
            await self.ctx.update_connections(new.connections)
            self.exposition.set_families(families_of(specs))
            self.store.replace_specs(specs)
            self.scheduler.apply(specs)
            self.reload_state.successful = True
            self.reload_state.phase = new.settings.phase
            self.reload_state.last_success = time.time()
            log.info("configuration reloaded", extra={"checks": len(specs),
                                                      "source": new.source})
            return []


async def serve(cfg: Config, config_path: Path | None, host: str, port: int,
                web_config: WebConfig | None, web_config_dir: Path, *, shard: int = 0,
                total_shards: int = 1) -> None:
    """Run the exporter until SIGTERM or SIGINT."""
    runtime = Runtime(cfg, config_path, shard=shard, total_shards=total_shards)
    auth = BasicAuth(web_config.basic_auth_users if web_config else {})
    ssl_context = None
    if web_config is not None and web_config.tls_server_config is not None:
        # Built and checked when the file was loaded; rebuilt only for a WebConfig made
        # in code.
        ssl_context = web_config.ssl_context or build_ssl_context(
            web_config.tls_server_config, web_config_dir)
    guard = ConnectionGuard()
    app = make_app(runtime, auth, guard)
    runner = await start_server(app, host, port, ssl_context, guard)
    log.info("readiness board at %s://%s:%d/ (metrics at /metrics)",
             "https" if ssl_context else "http", f"[{host}]" if ":" in host else host, port)
    log.info("readiness-exporter started", extra={
        "version": __version__, "listen": f"{host}:{port}", "tls": ssl_context is not None,
        "basic_auth": auth.enabled, "config": cfg.source, "checks": len(runtime.store.states),
        "shard": shard, "total_shards": total_shards,
    })
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await guard.stop()
        await runner.cleanup()
        auth.close()
        log.info("stopped")
