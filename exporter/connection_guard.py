"""Closes HTTP connections that hold the server without using it.

aiohttp bounds the size of a request head but not the time a client may take to send
it, nor (in older releases) how long a connection may stay open without a request.
A sweep every `idle_timeout / 4` seconds closes:

- a new connection that has not delivered a complete request head within
  `idle_timeout` seconds: it sent nothing, or only part of a head (slowloris);
- a connection that has been served but has no request in progress for
  `keepalive_timeout` seconds (idle keep-alive, or a slow next head). This is longer than
  the usual scrape intervals (15 s to 1 min), so a scraper's connection is reused rather
  than closed just as its next request arrives;
- a connection whose request has been in progress for `request_timeout` seconds (a
  client that stops reading a response holds it otherwise).

A request is "in progress" from the moment aiohttp hands it to the application (its head
is complete) until the handler has returned, which the `middleware` records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

IDLE_TIMEOUT = 15.0
"""Seconds a new connection has to deliver its first complete request head."""
KEEPALIVE_TIMEOUT = 75.0
"""Seconds a served connection may stay open without a request in progress."""
REQUEST_TIMEOUT = 120.0
"""Seconds one request (head complete to handler returned) may take."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Activity:
    since: float
    busy: int = 0
    served: int = 0


class ConnectionGuard:
    """The sweep and the middleware that feeds it (see the module doc)."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT,
                 request_timeout: float = REQUEST_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self._clock = clock
        self._activity: dict[RequestHandler, _Activity] = {}
        self._task: asyncio.Task[None] | None = None
        self.closed = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while the application handles a request."""
        protocol = request.protocol
        if not isinstance(protocol, RequestHandler):  # pragma: no cover - always one
            return await handler(request)
        activity = self._activity.setdefault(protocol, _Activity(self._clock()))
        if activity.busy == 0:
            activity.since = self._clock()
        activity.busy += 1
        try:
            return await handler(request)
        finally:
            activity.busy -= 1
            activity.served += 1
            activity.since = self._clock()

    def sweep(self, connections: list[RequestHandler]) -> int:
        """Close the connections over their bound; forget closed ones; return how many
        were closed."""
        now = self._clock()
        live = set(connections)
        for gone in [c for c in self._activity if c not in live]:
            del self._activity[gone]
        closed = 0
        for connection in connections:
            activity = self._activity.setdefault(connection, _Activity(now))
            if activity.busy:
                limit = self.request_timeout
            else:
                limit = self.keepalive_timeout if activity.served else self.idle_timeout
            if now - activity.since > limit:
                connection.force_close()
                del self._activity[connection]
                closed += 1
        self.closed += closed
        return closed

    async def _run(self, server: web.Server) -> None:
        interval = max(0.05, min(self.idle_timeout, self.keepalive_timeout,
                                  self.request_timeout) / 4)
        while True:
            await asyncio.sleep(interval)
            self.sweep(server.connections)

    def start(self, server: web.Server) -> None:
        """Sweep `server`'s connections until `stop()`."""
        self._task = asyncio.get_running_loop().create_task(self._run(server))

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
