"""The last line of defence: configured secret values scrubbed from what the exporter says.

Every secret reference of the loaded configuration (`${ENV}` or `{file: PATH}`, in
checks and connections, enabled or not), every variable named by a `password_env` or
`key_env` option and the secret a `secret_strength` check judges, when it resolves,
gives a value (and a username/password pair its `Authorization: Basic` form); wherever such a
value appears in an outcome message, a measurement label or a log line, it is replaced
by a placeholder naming the reference: `<redacted ${JWT_SECRET}>`.

Also caught: the value as `repr()`, JSON and URL encodings write it, the password of a
URL-shaped secret (a DSN), each long line of a multi-line secret (a PEM key), and a
secret cut short by a message that truncates (its first `PREFIX_LENGTH` characters or
more). Values shorter than `MIN_LENGTH` characters are not scrubbed: they would blank
out ordinary words.

The daemon and the `check` command install the scrubber of their configuration with
`install()` (again on every reload); the runner and the JSON log formatter use
`active()`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

import ahocorasick
from pydantic import BaseModel

from exporter.model import Measurement, Outcome, SecretRef

if TYPE_CHECKING:
    from exporter.config import Config

__all__ = ["MIN_LENGTH", "PREFIX_LENGTH", "Scrubber", "active", "from_config", "install"]

MIN_LENGTH = 6
"""Shorter secret values are not scrubbed (too likely to match ordinary text)."""

PREFIX_LENGTH = 16
"""A run of at least this many leading characters of a longer secret is scrubbed too."""

_MAX_SECRET_FILE_BYTES = 64 * 1024


def _variants(value: str) -> set[str]:
    """The forms in which `value` may appear in a message or a log line."""
    found = {value, repr(value)[1:-1], json.dumps(value)[1:-1],
             quote(value, safe=""), quote_plus(value, safe="")}
    try:
        password = urlsplit(value).password
    except ValueError:
        password = None
    if password:
        found |= {password, unquote(password), quote(unquote(password), safe="")}
    if "\n" in value:
        found |= {line.strip() for line in value.splitlines()
                  if len(line.strip()) >= PREFIX_LENGTH}
    return {v for v in found if len(v) >= MIN_LENGTH and v.strip()}


class Scrubber:
    """Replaces known secret values in text by `<redacted REFERENCE>`.

    One Aho-Corasick pass (`pyahocorasick`) finds every secret's first `PREFIX_LENGTH`
    characters (the whole value when shorter), so a message costs the same whatever
    the number of secrets; each hit is then extended as far as the secret goes on.
    """

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        """`secrets` maps each secret value to the description of its reference."""
        self.secrets: dict[str, str] = dict(secrets or {})
        """The secret values this scrubber replaces, each with its reference."""
        needles: dict[str, str] = {}
        for value, where in self.secrets.items():
            for variant in _variants(value):
                needles.setdefault(variant, f"<redacted {where}>")
        by_prefix: dict[str, list[tuple[str, str]]] = {}
        # Longest first, so a secret that contains another one is replaced whole.
        for text, placeholder in sorted(needles.items(), key=lambda item: -len(item[0])):
            by_prefix.setdefault(text[:PREFIX_LENGTH], []).append((text, placeholder))
        self._count = len(needles)
        self._automaton: Any = None
        if by_prefix:
            self._automaton = ahocorasick.Automaton()
            for prefix, group in by_prefix.items():
                self._automaton.add_word(prefix, (len(prefix), tuple(group)))
            self._automaton.make_automaton()

    def __len__(self) -> int:
        return self._count

    def _spans(self, text: str) -> list[tuple[int, int, str]]:
        spans = []
        for last, (length, group) in self._automaton.iter(text):
            start = last + 1 - length
            best: tuple[int, int, str] | None = None
            for needle, placeholder in group:  # the secrets sharing this prefix
                end = start + length
                limit = min(len(text), start + len(needle))
                while end < limit and text[end] == needle[end - start]:
                    end += 1
                if best is None or end > best[1]:
                    best = (start, end, placeholder)
            if best is not None:
                spans.append(best)
        return spans

    def scrub(self, text: str) -> str:
        """`text` with every occurrence of a secret replaced by its placeholder."""
        if self._automaton is None or not text:
            return text
        spans = self._spans(text)
        if not spans:
            return text
        spans.sort(key=lambda span: (span[0], -span[1]))
        out: list[str] = []
        position = 0
        for start, end, placeholder in spans:
            if end <= position:
                continue  # inside a span already replaced
            if start >= position:
                out.append(text[position:start])
                out.append(placeholder)
            position = end
        out.append(text[position:])
        return "".join(out)

    def value(self, data: Any) -> Any:
        """`data` (a log field: text, or mappings and lists of it) with secrets scrubbed."""
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, Mapping):
            return {self.value(k): self.value(v) for k, v in data.items()}
        if isinstance(data, list | tuple | set | frozenset):
            return [self.value(item) for item in data]
        return data

    def outcome(self, outcome: Outcome) -> Outcome:
        """`outcome` with its message and measurement labels scrubbed."""
        if self._automaton is None:
            return outcome
        measurements = tuple(
            Measurement(m.family, m.value, {k: self.scrub(v) for k, v in m.labels.items()})
            for m in outcome.measurements)
        return dataclasses.replace(outcome, message=self.scrub(outcome.message),
                                   measurements=measurements)


# --------------------------------------------------------------------------- building


def _read(ref: SecretRef, environ: Mapping[str, str] | None) -> str | None:
    """The secret's value, or None when it does not resolve (or is no small file)."""
    if ref.file is not None:
        try:
            info = ref.file.stat()
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_SECRET_FILE_BYTES:
            return None
    try:
        return ref.resolve(environ, notify=False).get_secret_value()
    except (LookupError, UnicodeDecodeError, ValueError):
        return None


# Options that name the environment variable holding a secret (read at run time).
_SECRET_ENV_FIELDS = frozenset({"password_env", "key_env"})


def _named_secrets(model: BaseModel) -> Iterator[SecretRef]:
    """Secrets a model names without a `SecretRef`: `password_env: NAME`, and the secret
    a `secret_strength` check judges (`env:` or `file:`)."""
    for name in _SECRET_ENV_FIELDS & set(type(model).model_fields):
        value = getattr(model, name)
        if isinstance(value, str):
            yield SecretRef(env=value)
    if getattr(model, "kind", None) == "secret_strength":
        env, file = getattr(model, "env", None), getattr(model, "file", None)
        if isinstance(env, str):
            yield SecretRef(env=env)
        elif isinstance(file, Path):
            yield SecretRef(file=file)


def _basic_auth_pairs(value: Any) -> Iterator[tuple[str, SecretRef]]:
    """(username, password reference) of every `basic_auth`-like block in `value`."""
    if isinstance(value, BaseModel):
        username, password = getattr(value, "username", None), getattr(value, "password", None)
        if isinstance(username, str) and isinstance(password, SecretRef):
            yield username, password
        for name in type(value).model_fields:
            yield from _basic_auth_pairs(getattr(value, name))


def from_config(cfg: Config, environ: Mapping[str, str] | None = None) -> Scrubber:
    """A scrubber of every secret `cfg` refers to (checks and connections), including
    the `Authorization: Basic` value of each username/password pair."""
    from exporter.config import iter_secret_refs

    models: list[tuple[str, BaseModel]] = [
        (f"connections.{name}", conn) for name, conn in sorted(cfg.connections.items())]
    models += [(f"checks (id {spec.id})", spec) for spec in cfg.checks]
    secrets: dict[str, str] = {}
    for where, model in models:
        refs = [ref for _, ref in iter_secret_refs(model, where)]
        for ref in [*refs, *_named_secrets(model)]:
            value = _read(ref, environ)
            if value is not None:
                secrets.setdefault(value, ref.describe())
        for username, ref in _basic_auth_pairs(model):
            value = _read(ref, environ)
            if value is not None:
                pair = base64.b64encode(f"{username}:{value}".encode()).decode("ascii")
                secrets.setdefault(pair, ref.describe())
    return Scrubber(secrets)


_active = Scrubber()
_installed: dict[str, str] = {}
_learning = threading.Lock()
MAX_LEARNED = 256
"""Values learned since the last `install` that are kept (a token file rotated every
hour would otherwise grow the scrubber until the next reload); the oldest go first."""


def install(scrubber: Scrubber) -> None:
    """Make `scrubber` the one the runner and the log formatter use."""
    global _active, _installed
    with _learning:
        _active, _installed = scrubber, scrubber.secrets


def learn(value: str, where: str) -> None:
    """Add a secret resolved after the scrubber was built (secrets are resolved at run
    time: a variable set or a file mounted after start-up) to the installed scrubber.

    Called for every resolution, so the common case (already known, or too short to
    be a secret) is one dictionary lookup; a new value rebuilds the scrubber once.
    """
    global _active
    if value in _active.secrets or not _variants(value):
        return
    with _learning:
        if value in _active.secrets:
            return
        learned = [item for item in _active.secrets.items() if item[0] not in _installed]
        learned = [*learned[-(MAX_LEARNED - 1):], (value, where)]
        _active = Scrubber({**_installed, **dict(learned)})


SecretRef.on_resolved(learn)


def active() -> Scrubber:
    """The installed scrubber (one that changes nothing before `install`)."""
    return _active
