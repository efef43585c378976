"""`file`: a file exists, has the expected sha256, is recent enough and, for a document
such as a runbook, has the required sections with content (1.2.1, 10.3.3)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

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
from exporter.probes.document_sections import Section, sections

DEFAULT_READ_LIMIT = 10 * 1024 * 1024


class FileCheck(CheckSpec):
    """`kind: file` options."""

    kind: Literal["file"]
    path: Path
    sha256: str | None = Field(default=None, description="expected hex digest")
    max_age: Duration | None = Field(default=None, gt=0, description="mtime younger than")
    min_size: int = Field(default=1, ge=0, description="smallest acceptable size in bytes")
    required_sections: list[str] = Field(
        default=[], description="regular expressions (case-insensitive); each must match the "
        "title of a Markdown/reStructuredText section whose body has min_section_bytes")
    min_section_bytes: int | None = Field(default=None, ge=1, description="smallest body "
                                          "(non-blank text, subsections included) a required "
                                          "section may have (default 1)")
    max_read_bytes: int | None = Field(default=None, gt=0, description="with "
                                       "required_sections: larger files are refused "
                                       "(default 10 MiB)")

    @model_validator(mode="after")
    def _patterns_compile(self) -> FileCheck:
        for index, pattern in enumerate(self.required_sections):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"required_sections[{index}]: not a regular expression: "
                                 f"{exc}") from None
        return self

    @property
    def section_min_bytes(self) -> int:
        """The effective `min_section_bytes`."""
        return self.min_section_bytes or 1

    @property
    def read_limit(self) -> int:
        """The effective `max_read_bytes`."""
        return self.max_read_bytes or DEFAULT_READ_LIMIT

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
    sections: tuple[Section, ...] | None = None  # read when sections are required


PRESENT = MetricFamily("readiness_file_present", "1 when the file exists, else 0.")
SIZE = MetricFamily("readiness_file_size_bytes", "Size of the file in bytes.")
MODIFIED = MetricFamily(
    "readiness_file_modified_timestamp_seconds", "Last modification time of the file."
)
DIGEST_OK = MetricFamily(
    "readiness_file_digest_match", "1 when the file's sha256 equals the expected digest."
)
SECTION_OK = MetricFamily(
    "readiness_file_section_present",
    "1 when a section matching the required title pattern has enough content, else 0.",
    ("section",),
)


class _TooLarge(Exception):
    pass


def _read_facts(path: Path, want_digest: bool, read_limit: int | None) -> FileFacts:
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
    found = None
    if read_limit is not None:
        if stat.st_size > read_limit:
            raise _TooLarge(stat.st_size)
        with open(path, "rb") as handle:
            text = handle.read(read_limit + 1).decode("utf-8", errors="replace")
        found = tuple(sections(text))
    return FileFacts(stat.st_size, stat.st_mtime, digest, found)


def _missing_sections(spec: FileCheck, found: tuple[Section, ...],
                      measurements: list[Measurement]) -> list[str]:
    missing = []
    for pattern in spec.required_sections:
        wanted = re.compile(pattern, re.IGNORECASE)
        matching = [s for s in found if wanted.search(s.title)]
        ok = any(s.body_bytes >= spec.section_min_bytes for s in matching)
        measurements.append(Measurement(SECTION_OK.name, 1.0 if ok else 0.0,
                                        {"section": pattern}))
        if not matching:
            missing.append(f"no section /{pattern}/")
        elif not ok:
            largest = max(s.body_bytes for s in matching)
            missing.append(f"section {matching[0].title!r} has {largest} B "
                           f"(min_section_bytes {spec.section_min_bytes})")
    return missing


async def run(spec: FileCheck, ctx: ProbeContext) -> Outcome:
    """Inspect the file."""
    try:
        facts = await ctx.run_blocking(_read_facts, spec.path, spec.sha256 is not None,
                                       spec.read_limit if spec.required_sections else None)
    except _TooLarge as exc:
        return Outcome.errored(Reason.CONFIG, f"{spec.path} is {exc.args[0]} bytes, over "
                               f"max_read_bytes {spec.read_limit}")
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
    if facts.sections is not None:
        problems.extend(_missing_sections(spec, facts.sections, measurements))
    if spec.max_age is not None:
        age = time.time() - facts.mtime
        if age > spec.max_age:
            problems.append(f"last modified {age / 86400:.1f} days ago "
                            f"(max {spec.max_age / 86400:.1f})")
    if problems:
        return Outcome.failed(f"{spec.path}: {'; '.join(problems)}", tuple(measurements))
    claims = ", ".join(_pass_claims(spec, facts.size))
    return Outcome.passed(f"{spec.path} present ({claims})", tuple(measurements))


def _pass_claims(spec: FileCheck, size: int) -> list[str]:
    """What a pass checked, and only that."""
    claims = [f"{size} bytes"]
    if spec.required_sections:
        claims.append(f"{len(spec.required_sections)} required sections with content")
    if spec.sha256 is not None:
        claims.append("sha256 matches")
    if spec.max_age is not None:
        claims.append(f"modified within {spec.max_age / 86400:g} days")
    return claims


KIND = ProbeKind(
    name="file",
    spec=FileCheck,
    run=run,
    summary="A file exists, matches an expected sha256, is younger than a max age and has "
    "the required sections with content.",
    metrics=(PRESENT, SIZE, MODIFIED, DIGEST_OK, SECTION_OK),
)
