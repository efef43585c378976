"""Run one check: its probe under a timeout, every failure mode mapped to an outcome.

Every outcome leaves through `run_check`, so this is where configured secret values are
scrubbed from messages and labels (`exporter.redact`), whatever the probe wrote.
"""

from __future__ import annotations

import asyncio
import logging
import time

from exporter import hints, redact, registry
from exporter.model import CheckSpec, Outcome, ProbeContext, ProbeError, Reason

log = logging.getLogger("readiness.runner")


async def run_check(spec: CheckSpec, ctx: ProbeContext) -> tuple[Outcome, float]:
    """Run `spec` once; return its outcome and duration in seconds.

    Never raises (except cancellation): a timeout becomes `error/timeout`, a
    `ProbeError` its own reason (with the measurements it carries), any other exception
    `error/internal` with only the exception's type in the message (exception text may
    carry secrets). Configured secret values are scrubbed from the outcome
    (`redact.active()`).
    """
    started = time.monotonic()
    try:
        kind = registry.probe_kind(spec.kind)
        async with asyncio.timeout(spec.timeout):
            outcome = await kind.run(spec, ctx)
    except TimeoutError:
        outcome = Outcome.errored(Reason.TIMEOUT, f"no result within {spec.timeout:g}s")
    except ProbeError as exc:
        outcome = exc.outcome()  # measurements taken before the error are kept
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("probe raised", extra={"check": spec.id, "error": type(exc).__name__})
        outcome = Outcome.errored(Reason.INTERNAL, f"probe failed: {type(exc).__name__}")
    outcome = hints.explain(spec, outcome)  # names the target and the option setting it
    return redact.active().outcome(outcome), time.monotonic() - started
