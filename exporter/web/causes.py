"""Failing and erroring checks grouped by shared cause, for the board's summary.

Two checks share a cause when their messages reduce to the same template (numbers,
quoted values, URLs, hosts, paths and environment variable names replaced by
placeholders, a short leading context such as `PING: ` dropped), or when they end
with the same reason (`fail` counts as one) on the same target: a host, a connection,
a path or an environment variable named in the message, or a connection or URL host
of the check's own configuration when the error is a network one. Groups are the
connected components of that relation, so a chain of shared targets joins them.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from exporter.model import CheckSpec, Reason, Severity, Status, connection_references
from exporter.store import CheckState

NETWORK_REASONS = frozenset({Reason.DNS, Reason.CONNECT, Reason.TIMEOUT, Reason.TLS})

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s,;()'\"]+", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"(?<![\w<])(?:~|\.{1,2})?/?(?:[\w.*-]+/)+[\w.*-]*|(?<![\w<])/[\w.-]+"
                   r"|(?<![\w<.])\.[\w-]+(?:\.[\w-]+)*")
_HOST = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"
                   r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?::\d+)?\b"
                   r"|\b[a-z0-9.-]+:\d{2,5}\b", re.IGNORECASE)
_RESOLVE = re.compile(r"\b(resolve|reach|connect to) ([\w.-]+)", re.IGNORECASE)
_CONNECTION = re.compile(r"\bconnection ([\w.-]+)")
_VAR = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")
_NUMBER = re.compile(r"(?<![<\w])\d+(?:\.\d+)?(?![\w>])")
_CONTEXT = re.compile(r"^(?:[\w<>.-]+ ){0,2}[\w<>.-]+: (?=\S)")
_LABELLED_PATH = re.compile(r"(^|\()(?:[a-z-]+ ){1,2}<path>")
_LIST = re.compile(r"(<(\w+)>)(?:, <\2>)+")
_SET_HINT = re.compile(r"\bset ([\w.\[\]-]+(?: on the [\w ]+? connection)?)")
# message placeholders that are targets: what a shared cause is "on"
_TARGET_KINDS = ("url", "path", "host", "connection", "var")


@dataclass(frozen=True, slots=True)
class Target:
    """Something a message or a spec names: a host, a path, a connection, a variable."""

    kind: str
    value: str


@dataclass(slots=True)
class Normalised:
    """A message reduced to its template, with the targets it named."""

    template: str
    display: str
    """The template before the leading context is dropped (what the board shows)."""
    targets: list[Target]


def normalise(message: str) -> Normalised:
    """Reduce `message` to a template and collect the targets it names."""
    targets: list[Target] = []

    def keep(kind: str, group: int = 0) -> Callable[[re.Match[str]], str]:
        """A substitution that records the matched target and leaves `<kind>`."""
        def replace(match: re.Match[str]) -> str:
            value = match.group(group)
            targets.append(Target(kind, value.rstrip(".:")))
            return match.group(0).replace(value, f"<{kind}>")
        return replace

    text = message.strip()
    text = _SET_HINT.sub(keep("option", 1), text)
    text = _URL.sub(keep("url"), text)
    text = _QUOTED.sub("<value>", text)
    text = _CONNECTION.sub(keep("connection", 1), text)
    text = _RESOLVE.sub(keep("host", 2), text)
    text = _PATH.sub(keep("path"), text)
    text = _HOST.sub(keep("host"), text)
    text = _VAR.sub(keep("var"), text)
    text = _LIST.sub(r"\1…", _NUMBER.sub("<n>", text))
    display = text
    text = _CONTEXT.sub("", text, count=1)
    text = _LABELLED_PATH.sub(r"\1<path>", text)
    return Normalised(text, display, targets)


@dataclass(slots=True)
class Blocked:
    """A check a cause blocks."""

    id: str
    title: str
    severity: str
    status: str


@dataclass(slots=True)
class CauseTarget:
    """One target of a cause and the checks that name it."""

    kind: str
    value: str
    checks: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    """Where it is set: `connections.NAME`, a check option, an environment variable."""


@dataclass(slots=True)
class Cause:
    """Failing or erroring checks that share a cause."""

    summary: str
    example: str
    """The message of one of its checks, as written."""
    reasons: list[str]
    checks: list[Blocked]
    targets: list[CauseTarget]
    fixes: list[str]

    @property
    def critical(self) -> int:
        """How many enabled critical checks it blocks."""
        return sum(1 for c in self.checks if c.severity == Severity.CRITICAL.value)


class _Components:
    """Union-find over check ids."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.parent = {i: i for i in ids}

    def find(self, item: str) -> str:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def _strings(value: object, name: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, f"{name}.{key}" if name else str(key))
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            yield from _strings(inner, f"{name}[{index}]")


def spec_targets(spec: CheckSpec) -> list[tuple[Target, str]]:
    """Connections and URL hosts the check's own configuration points at, with the option."""
    found: list[tuple[Target, str]] = []
    for ref in connection_references(spec):
        found.append((Target("connection", ref.name), f"connections.{ref.name}"))
    data = spec.model_dump(mode="json", exclude=set(CheckSpec.model_fields))
    for option, text in _strings(data, ""):
        if "://" in text:
            host = urlsplit(text).hostname
            if host:
                found.append((Target("host", host), option))
    return found


def _option_for(spec: CheckSpec, value: str) -> str | None:
    """The option of `spec` whose value is (or contains) `value`."""
    data = spec.model_dump(mode="json", exclude=set(CheckSpec.model_fields))
    for option, text in _strings(data, ""):
        if text == value or (len(value) > 3 and value in text):
            return option
    return None


def _unsatisfied_skip(state: CheckState, fresh: Callable[[CheckState], bool]) -> bool:
    """A critical check skipped by its probe, whose `any_of` alternatives do not stand in
    for it: it blocks go-live, and the alternatives are what to fix."""
    return (state.spec.severity is Severity.CRITICAL and bool(state.spec.any_of)
            and state.status is Status.SKIPPED and state.satisfied_by(fresh) is None)


def _problem_rows(states: Iterable[CheckState],
                  fresh: Callable[[CheckState], bool]) -> list[CheckState]:
    return [s for s in states if s.spec.enabled and s.outcome is not None
            and (s.outcome.status in (Status.FAIL, Status.ERROR)
                 or _unsatisfied_skip(s, fresh))]


def alternatives_message(state: CheckState, fresh: Callable[[CheckState], bool]) -> str:
    """Why none of a skipped check's `any_of` alternatives stands in for it."""
    held = {other.spec.id: other for other in state.alternatives}
    parts: list[str] = []
    for check_id in state.spec.any_of:
        other = held.get(check_id)
        if other is None:
            parts.append(f"{check_id} runs elsewhere (another shard, or not selected): "
                         "not assumed")
        elif not other.spec.enabled:
            parts.append(f"{check_id} is disabled")
        elif other.status is None:
            parts.append(f"{check_id} has not run yet")
        elif other.status is Status.PASS and not fresh(other):
            parts.append(f"{check_id} passed, but its result is stale")
        else:
            parts.append(f"{check_id} is {other.status.value}")
    return "no alternative passes: " + "; ".join(parts)


def _message(state: CheckState, fresh: Callable[[CheckState], bool]) -> str:
    assert state.outcome is not None
    if state.outcome.status is Status.SKIPPED:
        return f"{state.outcome.message} ({alternatives_message(state, fresh)})"
    return state.outcome.message


def _reason(state: CheckState) -> str:
    assert state.outcome is not None
    if state.outcome.status is Status.FAIL:
        return "fail"
    if state.outcome.status is Status.SKIPPED:
        return "skipped"
    return state.outcome.reason.value if state.outcome.reason else "internal"


UNREACHABLE_REASONS = frozenset({Reason.DNS, Reason.CONNECT, Reason.TIMEOUT})
"""A target that does not resolve, refuses or never answers is one cause ("cannot reach
it"), whichever of these a given run happened to see (a slow resolver times out)."""


def _target_reason(state: CheckState, reason: str) -> str:
    assert state.outcome is not None
    return "unreachable" if state.outcome.reason in UNREACHABLE_REASONS else reason


def group_causes(states: Iterable[CheckState], now: float | None = None,
                 stale_after_intervals: float = 3.0) -> list[Cause]:
    """Failing/erroring enabled checks grouped by shared cause, biggest first.

    A critical check skipped by its probe whose `any_of` alternatives do not stand in
    for it (none passes with a result fresh at `now`) is a problem too: its cause says
    what each alternative is.
    """
    at = time.time() if now is None else now
    fresh: Callable[[CheckState], bool] = \
        lambda other: other.is_fresh(at, stale_after_intervals)  # noqa: E731
    rows = _problem_rows(states, fresh)
    by_id = {s.spec.id: s for s in rows}
    components = _Components(by_id)
    normalised: dict[str, Normalised] = {}
    options: dict[tuple[str, Target], str] = {}
    first_with: dict[tuple[str, ...], str] = {}

    def link(key: tuple[str, ...], check_id: str) -> None:
        other = first_with.setdefault(key, check_id)
        components.join(other, check_id)

    messages = {check_id: _message(state, fresh) for check_id, state in by_id.items()}
    for check_id, state in by_id.items():
        assert state.outcome is not None
        norm = normalise(messages[check_id])
        reason = _reason(state)
        if state.outcome.reason in NETWORK_REASONS:
            for target, option in spec_targets(state.spec):
                norm.targets.append(target)
                options[(check_id, target)] = option
        normalised[check_id] = norm
        link(("template", reason if reason != "fail" else "", norm.template), check_id)
        for target in norm.targets:
            link(("target", _target_reason(state, reason), target.kind, target.value), check_id)

    members: dict[str, list[str]] = {}
    for check_id in by_id:
        members.setdefault(components.find(check_id), []).append(check_id)
    causes = [_cause([by_id[i] for i in ids], normalised, options, messages)
              for ids in members.values()]
    causes.sort(key=lambda c: (-c.critical, -len(c.checks), c.summary))
    return causes


def _cause(states: list[CheckState], normalised: dict[str, Normalised],
           options: dict[tuple[str, Target], str], messages: dict[str, str]) -> Cause:
    templates = Counter(normalised[s.spec.id].display for s in states)
    summary = templates.most_common(1)[0][0]
    targets: dict[Target, CauseTarget] = {}
    fixes: list[str] = []
    for state in states:
        assert state.outcome is not None
        for target in normalised[state.spec.id].targets:
            if target.kind == "option" and target.value not in fixes:
                fixes.append(target.value)
            if target.kind not in _TARGET_KINDS:
                continue
            entry = targets.setdefault(target, CauseTarget(target.kind, target.value))
            if state.spec.id not in entry.checks:
                entry.checks.append(state.spec.id)
            option = options.get((state.spec.id, target))
            if option is None and target.kind in ("path", "url"):
                option = _option_for(state.spec, target.value)
            if option is None and target.kind == "var":
                option = f"environment variable {target.value}"
            if option is not None and option not in entry.options:
                entry.options.append(option)
    blocked = [Blocked(s.spec.id, s.spec.title, s.spec.severity.value,
                       s.outcome.status.value if s.outcome else "pending")
               for s in sorted(states, key=_severity_order)]
    reasons = sorted({_reason(s) for s in states})
    ordered = sorted(targets.values(), key=lambda t: (-len(t.checks), t.value))
    example = messages[states[0].spec.id]
    return Cause(summary, example, reasons, blocked, ordered, fixes)


def _severity_order(state: CheckState) -> tuple[int, str]:
    rank = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return rank[state.spec.severity], state.spec.id
