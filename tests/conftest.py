"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exporter import redact
from exporter.context import RuntimeContext


@pytest.fixture(autouse=True)
def _no_scrubber_left_behind() -> Iterator[None]:
    """A test that starts a Runtime or `check` installs a scrubber; the next starts clean."""
    yield
    redact.install(redact.Scrubber())


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    """A runtime context without connections (probes that need none)."""
    context = RuntimeContext(state_dir=tmp_path / "state")
    yield context
    await context.aclose()
