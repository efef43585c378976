"""The timed request of a check with `max_latency`: sent from a worker thread with its
own event loop, so a busy main loop (many checks, a CPU-heavy neighbour) cannot delay
the moment the answer is noticed and inflate the latency verdict.

The request uses the run's headers, credentials, TLS context and deadline (the
`Caller`), on a fresh session of the thread's loop: the measured time includes
connecting (and the TLS handshake), like a client that is not already connected.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping

from exporter.model import ProbeContext
from exporter.probes.http.client import Caller, Response
from exporter.transport.http import own_session

__all__ = ["timed_call"]


def _call_in_own_loop(caller: Caller, method: str, url: str,
                      extra_headers: Mapping[str, str], data: bytes | None,
                      follow_redirects: bool) -> Response:
    async def send() -> Response:
        async with own_session() as session:
            own = dataclasses.replace(caller, client=dataclasses.replace(caller.client,
                                                                         session=session))
            return await own.call(method, url, extra_headers=extra_headers, data=data,
                                  follow_redirects=follow_redirects)

    return asyncio.run(send())


async def timed_call(caller: Caller, ctx: ProbeContext, method: str, url: str, *,
                     extra_headers: Mapping[str, str], data: bytes | None,
                     follow_redirects: bool) -> Response:
    """The main request, timed in a worker thread (see the module docstring)."""
    return await ctx.run_blocking(_call_in_own_loop, caller, method, url,
                                  dict(extra_headers), data, follow_redirects)
