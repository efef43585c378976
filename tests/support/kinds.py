"""Probe kinds used only by the core tests: a probe that hangs, one that raises, one that
sleeps a given time, one that passes. They exercise the scheduler, not a real target."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from exporter.model import (
    CheckSpec,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    SecretReference,
)


class BehaviourCheck(CheckSpec):
    """`kind: test_behaviour`: what the probe does when run."""

    kind: Literal["test_behaviour"]
    behaviour: Literal["pass", "fail", "hang", "raise", "sleep", "leak"] = "pass"
    sleep: float = 0.0
    secret_in_exception: str = ""
    token: SecretReference | None = None


SAMPLE = MetricFamily("readiness_test_sample_value", "A sample family.", ("shape",))


async def run(spec: BehaviourCheck, ctx: ProbeContext) -> Outcome:
    if spec.behaviour == "hang":
        await asyncio.Event().wait()
    if spec.behaviour == "raise":
        raise RuntimeError(f"boom with {spec.secret_in_exception}")
    if spec.behaviour == "sleep":
        await asyncio.sleep(spec.sleep)
    from exporter.model import Measurement

    measurements = (Measurement(SAMPLE.name, 1.5, {"shape": "round"}),)
    if spec.behaviour == "fail":
        return Outcome.failed("not ready", measurements)
    if spec.behaviour == "leak":  # a careless probe: its secret in message, label and log
        assert spec.token is not None
        value = spec.token.resolve().get_secret_value()
        logging.getLogger("tests.kinds").warning("probe saw %s", value, extra={"seen": value})
        return Outcome.failed(f"saw {value} ({value!r}, cut: {value[:20]}...)",
                              (Measurement(SAMPLE.name, 1.0, {"shape": value}),))
    return Outcome.passed("ok", measurements)


SHUTDOWN_CALLS: list[float] = []


async def shutdown() -> None:
    """Record that the exporter asked this kind to end its background work."""
    import time

    SHUTDOWN_CALLS.append(time.time())


BEHAVIOUR = ProbeKind(name="test_behaviour", spec=BehaviourCheck, run=run,
                      summary="test-only", metrics=(SAMPLE,), shutdown=shutdown)
