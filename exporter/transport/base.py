"""`Transport`: a connection kind (HTTP, PostgreSQL, Redis, Kubernetes, S3).

A transport owns everything about talking to a server that is not judging its answer:
its TLS options, secret resolution, the client's lifetime and the mapping from its
library's exceptions to `Reason`. Probes ask the context for a typed handle
(`await ctx.client(HTTP, options)`) and only judge what the server says.

Clients belong to the runtime (`ClientRegistry`, one per `RuntimeContext`), never to a
module: they are opened on first use, reused across runs, reopened when `is_stale`
says so (a rotated certificate file) or after `ctx.refresh_client` (a 401), and closed
when the runtime stops.
"""

from __future__ import annotations

import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import aiohttp

from exporter.model import ProbeError, Reason
from exporter.transport.errors import BASE_ERRORS, ErrorTable
from exporter.transport.tls import TlsClientOptions

__all__ = ["Deadline", "Transport", "TransportRuntime", "request_budget"]

OptT = TypeVar("OptT")
H = TypeVar("H")
T = TypeVar("T")


_BUDGET_SHARE = 0.95


def request_budget(check_timeout: float) -> float:
    """The time a transport may spend within a check's `timeout`.

    A little less than the runner's own limit, so a slow server ends as the transport's
    `error/timeout` naming the target, with the probe's measurements kept, rather than
    as a cancelled run.
    """
    return check_timeout * _BUDGET_SHARE


class Deadline:
    """The time left for the remaining requests of one run (start it with
    `request_budget(spec.timeout)`)."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.total = seconds

    def remaining(self) -> float:
        """Seconds left; raises `ProbeError(timeout)` when none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise ProbeError(Reason.TIMEOUT, f"no time left within {self.total:g}s")
        return left


class TransportRuntime(Protocol):
    """What a transport may use while opening a client."""

    @property
    def http_session(self) -> aiohttp.ClientSession:
        """The runtime's one aiohttp session."""

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work (file reads, key parsing) in the runtime's thread pool."""

    async def ssl_context(self, options: TlsClientOptions, option_path: str) -> ssl.SSLContext:
        """The (cached) client context for `options`; `ProbeError(config)` naming
        `option_path` when a file is missing or bad."""


class Transport(ABC, Generic[OptT, H]):
    """Base of a connection kind: options model `OptT` -> client handle `H`."""

    name: ClassVar[str]
    errors: ClassVar[ErrorTable] = BASE_ERRORS
    """Exception -> reason rows; extend `BASE_ERRORS` with the client library's types."""
    idle_close_after: ClassVar[float | None] = None
    """Close a client no check asked for during this many seconds (options changed on
    reload), e.g. 900 for a connection pool. Pick it above the longest time one run
    holds a handle (a restore drill): an idle client is closed even if a run still has
    it. None (the default) keeps clients until the runtime stops."""

    def key(self, options: OptT) -> Hashable:
        """What identifies one client: equal keys share it (default: the options, which
        are frozen models, hence hashable)."""
        return options

    @abstractmethod
    async def open(self, options: OptT, runtime: TransportRuntime) -> H:
        """Open a client (connect, build TLS contexts, resolve secrets)."""

    async def close(self, handle: H) -> None:
        """Close a client (default: nothing to close)."""

    def is_stale(self, handle: H) -> bool:
        """Whether the client must be reopened before its next use (default: never)."""
        return False

    def classify(self, exc: BaseException, target: str,
                 timeout: float | None = None) -> ProbeError:
        """The bounded error for an exception raised while talking to `target`."""
        return self.errors.classify(exc, target, timeout)
