"""The timed request of a check with `max_latency`: sent from a worker thread with its
own event loop, so a busy main loop (many checks, a CPU-heavy neighbour) cannot delay
the moment the answer is noticed and inflate the latency verdict.

The request uses the run's headers, credentials, TLS context and deadline (the
`Caller`), on a fresh session of the thread's loop: the measured time includes
connecting (and the TLS handshake), like a client that is not already connected.

A worker thread still waits for the GIL whenever the main thread holds it: CPython hands
it over after `sys.getswitchinterval()` (5 ms by default), several times per request, so
a CPU-heavy neighbour added about 18 ms to a 5 ms endpoint. The first timed request
lowers the interval to `SWITCH_INTERVAL` for the process (never raises it), which brings
the inflation to a few milliseconds (`bench/http_latency_busy_loop.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Mapping

from exporter.model import ProbeContext
from exporter.probes.http.client import Caller, Response
from exporter.transport.http import own_session

__all__ = ["SWITCH_INTERVAL", "timed_call"]

SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits, once timed requests run."""


def _prompt_gil_handover() -> None:
    """Lower the interpreter's GIL switch interval to `SWITCH_INTERVAL` (process-wide)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)


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
    _prompt_gil_handover()
    return await ctx.run_blocking(_call_in_own_loop, caller, method, url,
                                  dict(extra_headers), data, follow_redirects)
