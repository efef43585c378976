"""`ClientRegistry`: the clients of one runtime, per (transport, key).

Created and closed by the runtime (`RuntimeContext`); nothing here is module state, so
two runtimes (a test and `check`, or a reload) never share a client. A client that no
check has used for its transport's `idle_close_after` (a reload changed the options that
selected it) is closed, so pools of old configurations do not linger.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import aiohttp

from exporter.transport.base import Transport
from exporter.transport.tls import TlsClientOptions, TlsContexts

__all__ = ["ClientRegistry"]

OptT = TypeVar("OptT")
H = TypeVar("H")
T = TypeVar("T")

log = logging.getLogger("readiness.transport")


_SWEEP_EVERY = 60.0


class ClientRegistry:
    """Opens each client once, reuses it, reopens stale or refreshed ones, closes idle
    ones and, at the end, all."""

    def __init__(self, http_session: Callable[[], aiohttp.ClientSession],
                 run_blocking: Callable[..., Awaitable[Any]], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http_session = http_session
        self._run_blocking = run_blocking
        self._tls = TlsContexts()
        self._clients: dict[tuple[str, Hashable], tuple[Transport[Any, Any], Any]] = {}
        self._locks: dict[tuple[str, Hashable], asyncio.Lock] = {}
        self._last_used: dict[tuple[str, Hashable], float] = {}
        self._clock = clock
        self._next_sweep = clock() + _SWEEP_EVERY

    # -- TransportRuntime (what `Transport.open` may use)

    @property
    def http_session(self) -> aiohttp.ClientSession:
        return self._http_session()

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        result: T = await self._run_blocking(func, *args)
        return result

    async def ssl_context(self, options: TlsClientOptions, option_path: str) -> ssl.SSLContext:
        return await self._tls.get(options, option_path, self.run_blocking)

    # -- clients

    async def get(self, transport: Transport[OptT, H], options: OptT) -> H:
        """The client for `options`, opened on first use (or when stale)."""
        slot = (transport.name, transport.key(options))
        now = self._last_used[slot] = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            await self._close_idle(now)
        held = self._clients.get(slot)
        if held is not None and not transport.is_stale(held[1]):
            handle: H = held[1]
            return handle
        async with self._locks.setdefault(slot, asyncio.Lock()):
            held = self._clients.get(slot)
            if held is not None and transport.is_stale(held[1]):
                await self._close(slot)
                held = None
            if held is None:
                held = (transport, await transport.open(options, self))
                self._clients[slot] = held
            handle = held[1]
            return handle

    async def refresh(self, transport: Transport[OptT, H], options: OptT) -> None:
        """Close the client for `options`: the next `get` opens it with fresh credentials."""
        slot = (transport.name, transport.key(options))
        async with self._locks.setdefault(slot, asyncio.Lock()):
            await self._close(slot)

    def __len__(self) -> int:
        return len(self._clients)

    async def _close_idle(self, now: float) -> None:
        for slot, (transport, _) in list(self._clients.items()):
            limit = transport.idle_close_after
            if limit is not None and now - self._last_used.get(slot, now) > limit:
                async with self._locks.setdefault(slot, asyncio.Lock()):
                    if now - self._last_used.get(slot, now) > limit:
                        await self._close(slot)

    async def _close(self, slot: tuple[str, Hashable]) -> None:
        held = self._clients.pop(slot, None)
        self._last_used.pop(slot, None)
        if held is None:
            return
        transport, handle = held
        try:
            await transport.close(handle)
        except Exception as exc:  # closing must never stop shutdown
            log.warning("closing a client failed",
                        extra={"transport": transport.name, "error": type(exc).__name__})

    async def aclose(self) -> None:
        """Close every client."""
        for slot in list(self._clients):
            await self._close(slot)
