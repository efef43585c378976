"""Core types shared by every part of the exporter.

This module knows nothing else of the package: probes, the runtime and the CLI all
depend on it, never the other way round.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar

import aiohttp
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = [
    "CheckSpec",
    "CheckView",
    "ConnectionKind",
    "ConnectionSpec",
    "Duration",
    "FileReadError",
    "IntervalDuration",
    "Measurement",
    "MetricFamily",
    "Outcome",
    "ProbeContext",
    "ProbeError",
    "ProbeKind",
    "Reason",
    "SecretRef",
    "SecretReference",
    "Severity",
    "Status",
    "TimeoutDuration",
    "parse_duration",
    "read_file_bounded",
]


class Status(StrEnum):
    """Result of one check run."""

    PASS = "pass"  # noqa: S105 - a status, not a password
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"
    DISABLED = "disabled"
    """The check is switched off in the configuration (never run); not a skip by its probe."""


class Reason(StrEnum):
    """Bounded reason of an `error` outcome (a metric label: never free text)."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    PROTOCOL = "protocol"
    CONFIG = "config"
    INTERNAL = "internal"


class Severity(StrEnum):
    """How much a failing check matters; `critical` gates go-live."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DAY = 86400.0

MAX_DURATION = 3660 * _DAY
"""Longest duration of any kind (about ten years: certificate windows, evidence ages)."""
MAX_INTERVAL = 31 * _DAY
"""Longest interval between two runs of a check."""
MAX_TIMEOUT = 3600.0
"""Longest time one run of a check may take."""


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def parse_duration(value: object) -> float:
    """Parse `90`, `1.5`, `30s`, `5m`, `6h`, `1d`, `1h30m` into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '6h'")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_RE.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"invalid duration {_show(value)}: use a number of seconds or e.g. '30s', "
                    "'5m', '6h', '1d', '1h30m'"
                ) from None
    else:
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '6h'")
    if math.isnan(seconds):
        raise ValueError("a duration must be a number, not NaN")
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration must be at most {MAX_DURATION / _DAY:.0f}d")
    return seconds


def _at_most(limit: float, what: str) -> Callable[[float], float]:
    def check(seconds: float) -> float:
        if seconds > limit:
            unit, size = ("d", _DAY) if limit >= _DAY else ("h", 3600.0)
            raise ValueError(f"{what} must be at most {limit / size:g}{unit}")
        return seconds
    return check


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the YAML as a number or a string such as `30s`, `6h`."""

IntervalDuration = Annotated[Duration, AfterValidator(_at_most(MAX_INTERVAL, "an interval"))]
"""A check's interval: a duration of at most 31 days."""

TimeoutDuration = Annotated[Duration, AfterValidator(_at_most(MAX_TIMEOUT, "a timeout"))]
"""A check's timeout: a duration of at most one hour."""


# --------------------------------------------------------------------------- secrets

_ENV_REF_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")

MAX_SECRET_FILE_BYTES = 64 * 1024
"""Largest secret file that is read."""


class FileReadError(Exception):
    """A file could not be read within its bounds; the message says why (never content)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def read_file_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them.

    Reads at most `limit + 1` bytes, so `/dev/zero` or a huge file costs nothing; refuses
    FIFOs, devices and directories without blocking on them.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except ValueError:
        raise FileReadError("the path contains a NUL character") from None
    except FileNotFoundError as exc:
        raise FileReadError(f"cannot be read: {exc.strerror}", missing=True) from None
    except OSError as exc:
        reason = "the path is too long" if exc.errno == errno.ENAMETOOLONG else exc.strerror
        raise FileReadError(f"cannot be read: {reason}") from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:
        os.close(fd)
        raise FileReadError("not a regular file (a directory, device or pipe)")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise FileReadError(f"cannot be read: {exc.strerror}") from None
    if len(data) > limit:
        raise FileReadError(f"larger than {_size(limit)}, the limit for this file")
    return data


def _size(count: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


class SecretRef(BaseModel):
    """A reference to a secret: `${ENV_NAME}` or `{env: NAME}` or `{file: PATH}`.

    The value is read by `resolve()` when a probe needs it and held as `SecretStr`, so
    it never appears in a repr, a log line or an error message. Inline literals are
    rejected at load time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @classmethod
    def _coerce(cls, value: object) -> object:
        if isinstance(value, str):
            match = _ENV_REF_RE.match(value.strip())
            if not match:
                raise ValueError(
                    "secrets are given by reference only: '${ENV_NAME}', {env: NAME} or "
                    "{file: /path}; an inline value is not accepted"
                )
            return {"env": match.group(1)}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference names exactly one of 'env' or 'file'")
        if self.env is not None and not _ENV_NAME_RE.fullmatch(self.env):
            raise ValueError("'env' must be an environment variable name such as DB_PASSWORD "
                             "(letters, digits, '_'; at most 256 characters)")
        return self

    def describe(self) -> str:
        """Where the secret comes from (safe to show: no value)."""
        return f"${{{self.env}}}" if self.env is not None else f"file {self.file}"

    def resolve(self, environ: Mapping[str, str] | None = None) -> SecretStr:
        """Read the secret now. Raises `LookupError` naming the reference, never the value."""
        if self.env is not None:
            env = os.environ if environ is None else environ
            if self.env not in env:
                raise LookupError(f"environment variable {self.env} is not set")
            return SecretStr(env[self.env])
        assert self.file is not None
        try:
            raw = read_file_bounded(self.file, MAX_SECRET_FILE_BYTES)
        except FileReadError as exc:
            reason = str(exc).removeprefix("cannot be read: ")
            raise LookupError(f"secret file {self.file} cannot be read: {reason}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LookupError(f"secret file {self.file} is not UTF-8 text") from None
        return SecretStr(text.rstrip("\r\n"))


def _secret_ref_before(value: object) -> object:
    return SecretRef._coerce(value)


SecretReference = Annotated[SecretRef, BeforeValidator(_secret_ref_before)]


# --------------------------------------------------------------------------- check spec

_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class CheckSpec(BaseModel):
    """Fields every check has; a probe kind subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind_name: ClassVar[str] = ""

    id: str = Field(pattern=_ID_RE, description="stable check id, unique in the file")
    item: str | None = Field(
        default=None, description="checklist item id this check verifies (default: id)"
    )
    section: str = Field(min_length=1, description="checklist section, e.g. '2.2'")
    title: str = Field(min_length=1)
    severity: Severity = Severity.WARNING
    kind: str
    interval: IntervalDuration = Field(default=60.0, gt=0)
    timeout: TimeoutDuration = Field(default=10.0, gt=0)
    enabled: bool = True
    disabled_reason: str | None = Field(
        default=None, description="why the check is disabled (shown on the board)"
    )
    description: str | None = None

    @field_validator("section")
    @classmethod
    def _section_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]+(\.[0-9x]+)*", value):
            raise ValueError("a section is a dotted checklist number such as '2.2' or '10.1'")
        return value

    @property
    def item_id(self) -> str:
        """The checklist item this check belongs to."""
        return self.item or self.id


class ConnectionSpec(BaseModel):
    """A connection declared once under `connections:` and referred to by name."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A family metric a probe kind may emit (documented, bounded labels).

    `check` is always added as the first label by the exporter, so two checks of the
    same kind never collide.
    """

    name: str
    help: str
    labels: tuple[str, ...] = ()
    type: str = "gauge"  # gauge | counter


@dataclass(frozen=True, slots=True)
class Measurement:
    """One sample of a family metric."""

    family: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one run of a check found."""

    status: Status
    message: str
    measurements: tuple[Measurement, ...] = ()
    reason: Reason | None = None

    @classmethod
    def passed(cls, message: str, measurements: tuple[Measurement, ...] = ()) -> Outcome:
        return cls(Status.PASS, message, measurements)

    @classmethod
    def failed(cls, message: str, measurements: tuple[Measurement, ...] = ()) -> Outcome:
        return cls(Status.FAIL, message, measurements)

    @classmethod
    def errored(
        cls, reason: Reason, message: str, measurements: tuple[Measurement, ...] = ()
    ) -> Outcome:
        return cls(Status.ERROR, message, measurements, reason)

    @classmethod
    def skipped(cls, message: str, measurements: tuple[Measurement, ...] = ()) -> Outcome:
        return cls(Status.SKIPPED, message, measurements)

    @classmethod
    def disabled(cls, message: str) -> Outcome:
        return cls(Status.DISABLED, message)


class ProbeError(Exception):
    """Raised inside a probe to end the run as `error` with a bounded reason.

    The message must not contain a secret value.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class CheckView:
    """Read-only view of another check's latest result (for `aggregate`)."""

    id: str
    section: str
    severity: Severity
    enabled: bool
    status: Status | None  # None: not run yet
    last_run: float | None


class ProbeContext(Protocol):
    """What a probe may use: shared clients, a thread pool, a state dir, other results."""

    @property
    def http(self) -> aiohttp.ClientSession:
        """One shared aiohttp session (no cookies kept between runs)."""

    @property
    def executor(self) -> Executor:
        """Thread pool for blocking or CPU-heavy work."""

    @property
    def state_dir(self) -> Path:
        """A directory that persists across restarts (for results that must survive)."""

    async def connection(self, name: str) -> Any:
        """The shared client of connection `name` (opened on first use, then reused)."""

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run `func(*args)` in the thread pool and await its result."""

    @property
    def release(self) -> str | None:
        """The release being deployed (`settings.release`), if configured."""

    def checks(self) -> list[CheckView]:
        """The latest result of every configured check."""

    def now(self) -> float:
        """Wall-clock time (seconds since the epoch)."""


T = TypeVar("T")
S = TypeVar("S", bound=CheckSpec)
C = TypeVar("C", bound=ConnectionSpec)


@dataclass(frozen=True, slots=True)
class ProbeKind(Generic[S]):
    """A probe kind: its configuration model and its async run function."""

    name: str
    spec: type[S]
    run: Callable[[S, ProbeContext], Awaitable[Outcome]]
    summary: str
    metrics: tuple[MetricFamily, ...] = ()
    shutdown: Callable[[], Awaitable[None]] | None = None
    """Called once when the exporter stops, for kinds that keep background work."""


@dataclass(frozen=True, slots=True)
class ConnectionKind(Generic[C]):
    """A shared connection type: its configuration model and how to open and close it."""

    name: str
    spec: type[C]
    open: Callable[[C], Awaitable[Any]]
    close: Callable[[Any], Awaitable[None]]
    summary: str
