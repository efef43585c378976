"""`file`: a file exists, has the expected sha256 and is recent enough (1.2.1, 10.3.3)."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from exporter.model import (
    CheckSpec,
    Duration,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeKind,
    Reason,
)


class FileCheck(CheckSpec):
    """`kind: file` options."""

    kind: Literal["file"]
    path: Path
    sha256: str | None = Field(default=None, description="expected hex digest")
    max_age: Duration | None = Field(default=None, gt=0, description="mtime younger than")
    min_size: int = Field(default=1, ge=0, description="smallest acceptable size in bytes")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip().lower()
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise ValueError("must be 64 hexadecimal characters")
        return value


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What was read off the file."""

    size: int
    mtime: float
    sha256: str | None


PRESENT = MetricFamily("readiness_file_present", "1 when the file exists, else 0.")
SIZE = MetricFamily("readiness_file_size_bytes", "Size of the file in bytes.")
MODIFIED = MetricFamily(
    "readiness_file_modified_timestamp_seconds", "Last modification time of the file."
)
DIGEST_OK = MetricFamily(
    "readiness_file_digest_match", "1 when the file's sha256 equals the expected digest."
)


def _read_facts(path: Path, want_digest: bool) -> FileFacts:
    stat = os.stat(path)
    if stat.st_mode & 0o170000 == 0o040000:
        raise IsADirectoryError(path)
    digest = None
    if want_digest:
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        digest = hasher.hexdigest()
    return FileFacts(stat.st_size, stat.st_mtime, digest)


async def run(spec: FileCheck, ctx: ProbeContext) -> Outcome:
    """Inspect the file."""
    try:
        facts = await ctx.run_blocking(_read_facts, spec.path, spec.sha256 is not None)
    except FileNotFoundError:
        return Outcome.failed(f"{spec.path} does not exist", (Measurement(PRESENT.name, 0.0),))
    except IsADirectoryError:
        return Outcome.errored(Reason.CONFIG, f"{spec.path} is a directory")
    except PermissionError:
        return Outcome.errored(Reason.AUTH, f"{spec.path} cannot be read: permission denied")
    except OSError as exc:
        return Outcome.errored(Reason.INTERNAL, f"{spec.path} cannot be read: {exc.strerror}")
    measurements = [
        Measurement(PRESENT.name, 1.0),
        Measurement(SIZE.name, float(facts.size)),
        Measurement(MODIFIED.name, facts.mtime),
    ]
    problems = []
    if facts.size < spec.min_size:
        problems.append(f"size {facts.size} B below {spec.min_size} B")
    if spec.sha256 is not None:
        match = facts.sha256 == spec.sha256
        measurements.append(Measurement(DIGEST_OK.name, 1.0 if match else 0.0))
        if not match:
            problems.append("sha256 differs from the expected digest")
    if spec.max_age is not None:
        age = time.time() - facts.mtime
        if age > spec.max_age:
            problems.append(f"last modified {age / 86400:.1f} days ago "
                            f"(max {spec.max_age / 86400:.1f})")
    if problems:
        return Outcome.failed(f"{spec.path}: {'; '.join(problems)}", tuple(measurements))
    return Outcome.passed(f"{spec.path} present ({facts.size} bytes)", tuple(measurements))


KIND = ProbeKind(
    name="file",
    spec=FileCheck,
    run=run,
    summary="A file exists, matches an expected sha256 and is younger than a max age.",
    metrics=(PRESENT, SIZE, MODIFIED, DIGEST_OK),
)
