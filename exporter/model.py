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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Protocol,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

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
    "ConnectionOf",
    "ConnectionReference",
    "ConnectionSpec",
    "Connector",
    "Duration",
    "FileReadError",
    "Findings",
    "IntervalDuration",
    "KubernetesConnectionName",
    "Lifespan",
    "Measurement",
    "MetricFamily",
    "Outcome",
    "PostgresConnectionName",
    "ProbeContext",
    "ProbeError",
    "ProbeKind",
    "Reason",
    "RedisConnectionName",
    "SecretRef",
    "SecretReference",
    "Severity",
    "Status",
    "TimeoutDuration",
    "connection_references",
    "parse_duration",
    "read_file_bounded",
    "walk_options",
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


_RESOLVED_HOOKS: list[Callable[[str, str], None]] = []
"""Called after each successful `SecretRef.resolve` (see `SecretRef.on_resolved`)."""


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
    def coerce(cls, value: object) -> object:
        """Turn the `${ENV_NAME}` string form into `{env: NAME}`; refuse inline values."""
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

    @classmethod
    def on_resolved(cls, hook: Callable[[str, str], None]) -> None:
        """Call `hook(value, reference)` after every successful `resolve` (the secret
        scrubber learns values first readable after start-up this way)."""
        _RESOLVED_HOOKS.append(hook)

    def resolve(self, environ: Mapping[str, str] | None = None, *,
                notify: bool = True) -> SecretStr:
        """Read the secret now. Raises `LookupError` naming the reference, never the value.

        `notify=False` skips the `on_resolved` hooks (the scrubber reading every secret
        of a configuration it is being built from)."""
        value = self._read(environ)
        for hook in _RESOLVED_HOOKS if notify else ():
            hook(value.get_secret_value(), self.describe())
        return value

    def _read(self, environ: Mapping[str, str] | None) -> SecretStr:
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
    return SecretRef.coerce(value)


SecretReference = Annotated[SecretRef, BeforeValidator(_secret_ref_before)]


# --------------------------------------------------------------------------- walking


def walk_options(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every node of a configuration object with its option path, outermost first.

    Models, lists, tuples and dicts are entered (`checks (id x).tls.ca_file`,
    `.secret_headers.X-Key`, `.items[0]`); a `SecretRef` is a leaf (a reference is not
    entered). Used to find secret references, old option spellings, URLs...
    """
    yield path, value
    if isinstance(value, SecretRef):
        return
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from walk_options(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from walk_options(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk_options(item, f"{path}.{key}")


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
    any_of: tuple[Annotated[str, Field(pattern=_ID_RE)], ...] = Field(
        default=(), max_length=16,
        description="ids of alternative checks: while this check is skipped, a fresh pass "
                    "of one of them keeps it from blocking go-live (docs/configuration.md)",
    )

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


# --------------------------------------------------------------------------- connection names


@dataclass(frozen=True, slots=True)
class ConnectionOf:
    """Marks a `str` option as the name of a declared connection of `kind`.

    Write `connection: PostgresConnectionName` (or `Annotated[str, ConnectionOf("redis")]`)
    anywhere in a check's model, nested models and lists included: `validate` finds every
    such option by walking the model (`connection_references`) and checks that the name is
    declared under `connections:` with that kind.
    """

    kind: str


PostgresConnectionName = Annotated[str, ConnectionOf("postgres")]
"""The name of a `kind: postgres` connection."""
KubernetesConnectionName = Annotated[str, ConnectionOf("kubernetes")]
"""The name of a `kind: kubernetes` connection."""
RedisConnectionName = Annotated[str, ConnectionOf("redis")]
"""The name of a `kind: redis` connection."""


@dataclass(frozen=True, slots=True)
class ConnectionReference:
    """One connection name found in a configuration: where, which name, which kind."""

    path: str
    name: str
    kind: str


def _marked_kind(annotation: Any, metadata: Iterable[Any] = ()) -> str | None:
    for item in metadata:
        if isinstance(item, ConnectionOf):
            return item.kind
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _marked_kind(inner, extra)
    if get_origin(annotation) in (Union, UnionType):
        for member in get_args(annotation):
            found = _marked_kind(member)
            if found is not None:
                return found
    return None


def _items_annotation(annotation: Any, position: int) -> Any:
    """The annotation of a container's items (`list[X]` -> X; dict values: position 1)."""
    if get_origin(annotation) is Annotated:
        return _items_annotation(get_args(annotation)[0], position)
    if get_origin(annotation) in (Union, UnionType):
        for member in get_args(annotation):
            if member is not type(None) and get_args(member):
                return _items_annotation(member, position)
        return Any
    args = get_args(annotation)
    if not args:
        return Any
    return args[min(position, len(args) - 1)]


def _references_in(value: Any, annotation: Any, metadata: Iterable[Any],
                   path: str) -> Iterator[ConnectionReference]:
    if value is None:
        return
    if isinstance(value, str):
        kind = _marked_kind(annotation, metadata)
        if kind is not None:
            yield ConnectionReference(path, value, kind)
    elif isinstance(value, BaseModel):
        yield from connection_references(value, path)
    elif isinstance(value, list | tuple):
        inner = _items_annotation(annotation, 0)
        for index, item in enumerate(value):
            yield from _references_in(item, inner, (), f"{path}[{index}]")
    elif isinstance(value, dict):
        inner = _items_annotation(annotation, 1)
        for key, item in value.items():
            yield from _references_in(item, inner, (), f"{path}.{key}")


def connection_references(model: BaseModel, path: str = "") -> Iterator[ConnectionReference]:
    """Every connection name inside `model` (fields typed with `ConnectionOf`, in nested
    models, lists and dicts too), with its option path.

    A model's legacy `connection_fields = {"field": "kind"}` class variable is honoured
    for kinds not yet typed.
    """
    legacy: Mapping[str, str] = getattr(type(model), "connection_fields", {})
    for name, info in type(model).model_fields.items():
        where = f"{path}.{name}" if path else name
        value = getattr(model, name)
        if name in legacy and isinstance(value, str):
            yield ConnectionReference(where, value, legacy[name])
            continue
        yield from _references_in(value, info.annotation, info.metadata, where)


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

    The message must not contain a secret value. `measurements` taken before the error
    (a status code, the objective) are kept on the error outcome.
    """

    def __init__(self, reason: Reason, message: str,
                 measurements: Iterable[Measurement] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.measurements = tuple(measurements)

    def with_measurements(self, measurements: Iterable[Measurement]) -> ProbeError:
        """The same error carrying `measurements` before its own."""
        return ProbeError(self.reason, self.message, (*measurements, *self.measurements))

    def outcome(self) -> Outcome:
        """This error as an `error` outcome (measurements kept)."""
        return Outcome.errored(self.reason, self.message, self.measurements)


@dataclass
class Findings:
    """What one run found, with one meaning for every probe.

    - a *problem* makes the check fail (the target answered and is not ready);
    - a *note* is shown in the message but never fails the check;
    - a *measurement* is a family metric sample, kept whatever the status.

    `outcome()` is `fail` with the problems when there are any, else `pass` with the
    notes; `error(exc)` keeps the measurements on an error outcome.
    """

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)

    def problem(self, message: str) -> None:
        """Record a problem: the check fails."""
        self.problems.append(message)

    def note(self, message: str) -> None:
        """Record a fact shown in the message (does not fail the check)."""
        self.notes.append(message)

    def measure(self, family: MetricFamily | str, value: float, **labels: str) -> None:
        """Record one sample of a declared family."""
        name = family if isinstance(family, str) else family.name
        self.measurements.append(Measurement(name, float(value), labels))

    def add(self, measurement: Measurement) -> None:
        """Record an already built measurement."""
        self.measurements.append(measurement)

    @property
    def failed(self) -> bool:
        """Whether any problem was recorded."""
        return bool(self.problems)

    def summary(self, limit: int = 3) -> str:
        """The problems, or else the notes, as one short message."""
        items = self.problems or self.notes
        text = "; ".join(items[:limit])
        if len(items) > limit:
            text += f" (+{len(items) - limit} more)"
        return text

    def outcome(self, default: str = "ok") -> Outcome:
        """`fail` with the problems, else `pass` with the notes (or `default`)."""
        measurements = tuple(self.measurements)
        if self.problems:
            return Outcome.failed(self.summary(), measurements)
        return Outcome.passed(self.summary() or default, measurements)

    def error(self, exc: ProbeError) -> Outcome:
        """`exc` as an error outcome keeping every measurement recorded so far."""
        return exc.with_measurements(self.measurements).outcome()


@dataclass(frozen=True, slots=True)
class CheckView:
    """Read-only view of another check's latest result (for `aggregate`)."""

    id: str
    section: str
    severity: Severity
    enabled: bool
    status: Status | None  # None: not run yet
    last_run: float | None
    elsewhere: bool = False  # configured, but run by another shard: no result here
    stood_in_by: str | None = None
    """Skipped, and this `any_of` alternative passes (fresh): go-live treats it as met."""


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

    @property
    def repeats(self) -> bool:
        """True in a running `serve` (every check runs again), False in a one-shot `check`:
        a connection may keep state current between runs (Kubernetes watches) only then."""

    def checks(self) -> list[CheckView]:
        """The latest result of every configured check."""

    def now(self) -> float:
        """Wall-clock time (seconds since the epoch)."""

    async def client(self, transport: Connector[OptT, H], options: OptT) -> H:
        """The runtime's client of `transport` for `options` (opened once, then reused)."""

    async def refresh_client(self, transport: Connector[OptT, H], options: OptT) -> None:
        """Drop the client for `options` so the next use reconnects with fresh credentials
        (after a 401 or an expired token)."""

    async def kind_state(self, lifespan: Lifespan[T]) -> T:
        """What `lifespan` yields, entered on first use and exited when the runtime stops."""


T = TypeVar("T")
S = TypeVar("S", bound=CheckSpec)
C = TypeVar("C", bound=ConnectionSpec)
OptT = TypeVar("OptT")
H = TypeVar("H")
OptT_contra = TypeVar("OptT_contra", contravariant=True)
H_co = TypeVar("H_co", covariant=True)


class Connector(Protocol[OptT_contra, H_co]):
    """A transport as a probe names it: `await ctx.client(HTTP, options)` gives its typed
    handle. The implementations live in `exporter.transport`."""

    @property
    def name(self) -> str:
        """The transport's name (http, postgres, redis, kubernetes, s3)."""

    async def open(self, options: OptT_contra, runtime: Any) -> H_co:
        """Open a client for `options` (called by the runtime, never by a probe)."""


@dataclass(frozen=True, slots=True)
class Lifespan(Generic[T]):
    """Background state of a probe kind, owned by the runtime instead of module globals.

    `enter(ctx)` is an async context manager: the runtime enters it the first time a
    probe asks for `await ctx.kind_state(LIFESPAN)` and exits it when it stops (cancel
    background tasks, release leases there).
    """

    name: str
    enter: Callable[[ProbeContext], AbstractAsyncContextManager[T]]


@dataclass(frozen=True, slots=True)
class ProbeKind(Generic[S]):
    """A probe kind: its configuration model and its async run function."""

    name: str
    spec: type[S]
    run: Callable[[S, ProbeContext], Awaitable[Outcome]]
    summary: str
    metrics: tuple[MetricFamily, ...] = ()
    lifespan: Lifespan[Any] | None = None
    """The kind's background state, owned by the runtime (see `Lifespan`)."""
    shutdown: Callable[[], Awaitable[None]] | None = None
    """Deprecated (use `lifespan`): called once when the exporter stops. Kept for one
    release for kinds that still keep background work in module state."""


@dataclass(frozen=True, slots=True)
class ConnectionKind(Generic[C]):
    """A shared connection type: its configuration model and how to open and close it."""

    name: str
    spec: type[C]
    open: Callable[[C], Awaitable[Any]]
    close: Callable[[Any], Awaitable[None]]
    summary: str
