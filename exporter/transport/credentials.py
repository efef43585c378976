"""Credentials that expire: fetched when first needed, refreshed on expiry and on 401.

A transport whose credentials come from a token file, an exec plugin (EKS, GKE, OIDC) or
a token endpoint keeps one `RefreshingCredential` per client. `get()` returns the
current value, fetching a new one when none is held or it expires within `skew`
seconds; `invalidate()` (after a 401) makes the next `get()` fetch again. Concurrent
callers share one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Expiring", "RefreshingCredential"]

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Expiring(Generic[V]):
    """A credential value and when it stops being valid (None: it does not expire)."""

    value: V
    expires_at: float | None = None


class RefreshingCredential(Generic[V]):
    """Holds one credential and refreshes it on expiry or after a rejection."""

    def __init__(self, fetch: Callable[[], Awaitable[Expiring[V]]], *, skew: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._skew = skew
        self._clock = clock
        self._current: Expiring[V] | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the credential was fetched (for metrics and tests)."""

    def _fresh(self, held: Expiring[V] | None) -> bool:
        if held is None:
            return False
        return held.expires_at is None or held.expires_at - self._skew > self._clock()

    async def get(self) -> V:
        """The current value, fetched or refreshed first when needed."""
        held = self._current
        if self._fresh(held):
            assert held is not None
            return held.value
        async with self._lock:
            if not self._fresh(self._current):
                self._current = await self._fetch()
                self.fetches += 1
            assert self._current is not None
            return self._current.value

    def invalidate(self) -> None:
        """Forget the value (the server rejected it): the next `get()` fetches again."""
        self._current = None
