"""Reading a local file whose size is bounded (configuration, keyrings, records, reports)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["read_bounded"]


def read_bounded(path: Path, limit: int,
                 error: Callable[[str], Exception] = ValueError) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    `OSError` when it cannot be opened or read; `error` ("is not a regular file", "is
    larger than N bytes") when it is a FIFO or device, or too large. A FIFO is opened
    without blocking, so a misplaced pipe cannot hang the caller.
    """
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NONBLOCK)) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise error("is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(f"is larger than {limit} bytes")
    return data
