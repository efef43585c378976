"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.context import RuntimeContext


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    """A runtime context without connections (probes that need none)."""
    context = RuntimeContext(state_dir=tmp_path / "state")
    yield context
    await context.aclose()
