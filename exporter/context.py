"""The runtime's `ProbeContext`: shared clients opened once and reused across runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from exporter import registry
from exporter.model import CheckView, ConnectionSpec, Connector, Lifespan
from exporter.transport.base import Transport
from exporter.transport.clients import ClientRegistry

T = TypeVar("T")
OptT = TypeVar("OptT")
H = TypeVar("H")

log = logging.getLogger("readiness.context")


class RuntimeContext:
    """Holds the shared aiohttp session, thread pool, transport clients, named connections
    and the probe kinds' lifespans.

    Connections and transport clients are opened lazily on first use and closed by
    `aclose()`. A connection whose spec changed on reload is closed and reopened;
    unchanged ones are kept. Lifespans are entered on first use and exited first.
    """

    def __init__(
        self,
        connections: Mapping[str, ConnectionSpec] | None = None,
        *,
        state_dir: Path = Path("state"),
        max_workers: int = 8,
        checks: Callable[[], list[CheckView]] | None = None,
        release: str | None = None,
        repeats: bool = False,
    ) -> None:
        self._release = release
        self._repeats = repeats
        self._specs: dict[str, ConnectionSpec] = dict(connections or {})
        self._clients: dict[str, Any] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._http: aiohttp.ClientSession | None = None
        self._executor = ThreadPoolExecutor(max_workers=max_workers,
                                            thread_name_prefix="readiness-probe")
        self._state_dir = state_dir
        self._checks = checks or (lambda: [])
        self._transports = ClientRegistry(lambda: self.http, self.run_blocking)
        self._lifespans = contextlib.AsyncExitStack()
        self._kind_states: dict[str, Any] = {}
        self._entering = asyncio.Lock()

    # -- ProbeContext

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=60),
                trust_env=False,
            )
        return self._http

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def state_dir(self) -> Path:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return self._state_dir

    async def connection(self, name: str) -> Any:
        if name in self._clients:
            return self._clients[name]
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"no connection named {name!r}")
        lock = self._opening.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._clients:
                client = await registry.connection_kind(spec.kind).open(spec)
                self._clients[name] = client
            return self._clients[name]

    async def discard_connection(self, name: str) -> None:
        """Close and forget connection `name` (it is reopened on next use)."""
        client = self._clients.pop(name, None)
        if client is not None:
            await self._close(name, client)

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    @property
    def release(self) -> str | None:
        return self._release

    @property
    def repeats(self) -> bool:
        return self._repeats

    def checks(self) -> list[CheckView]:
        return self._checks()

    def now(self) -> float:
        return time.time()

    async def client(self, transport: Connector[OptT, H], options: OptT) -> H:
        return await self._transports.get(_transport(transport), options)

    async def refresh_client(self, transport: Connector[OptT, H], options: OptT) -> None:
        await self._transports.refresh(_transport(transport), options)

    async def kind_state(self, lifespan: Lifespan[T]) -> T:
        if lifespan.name not in self._kind_states:
            async with self._entering:
                if lifespan.name not in self._kind_states:
                    state = await self._lifespans.enter_async_context(lifespan.enter(self))
                    self._kind_states[lifespan.name] = state
        value: T = self._kind_states[lifespan.name]
        return value

    # -- lifecycle

    async def update_connections(self, connections: Mapping[str, ConnectionSpec]) -> None:
        """Adopt a reloaded set of connections; close those removed or changed."""
        for name in list(self._clients):
            if connections.get(name) != self._specs.get(name):
                await self.discard_connection(name)
        self._specs = dict(connections)

    async def _close(self, name: str, client: Any) -> None:
        spec = self._specs.get(name)
        kind = spec.kind if spec is not None else None
        try:
            if kind is not None:
                await registry.connection_kind(kind).close(client)
        except Exception as exc:  # closing must never stop shutdown
            log.warning("closing connection failed",
                        extra={"connection": name, "error": type(exc).__name__})

    async def aclose(self) -> None:
        """Exit the kinds' lifespans, then close every client and the thread pool."""
        try:
            await self._lifespans.aclose()
        except Exception as exc:  # a failing lifespan must not keep clients open
            log.warning("ending a probe kind's lifespan failed",
                        extra={"error": type(exc).__name__})
        self._kind_states.clear()
        await self._transports.aclose()
        for name in list(self._clients):
            await self.discard_connection(name)
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _transport(connector: Connector[OptT, H]) -> Transport[OptT, H]:
    if not isinstance(connector, Transport):
        raise TypeError(f"{type(connector).__name__} is not an exporter.transport Transport")
    return connector
