"""A configuration fuzzer: `validate` exits 0 or 2 for any input, never with a traceback,
within a time and memory bound per input.

Three generators: schema-aware (every probe and connection kind's own fields, filled with
plausible or hostile values), and mutation of the bundled examples and presets, as data
and as text. All are deterministic (`derandomize=True`, a fixed number of examples), so
CI sees the same inputs every run. Inputs that would exhaust the machine on a regression (alias bombs,
`/dev/zero`) are tested in a memory-limited child process in test_config_limits.py.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from exporter import cli, registry
from exporter.model import SecretRef

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "readiness-exporter"
SECONDS_PER_INPUT = 10.0  # generous: the slowest seed (the whole preset) takes ~0.3 s
PEAK_BYTES_PER_INPUT = 256 * 1024 * 1024

FUZZ = settings(derandomize=True, max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seed_files() -> list[Path]:
    files = sorted((REPO / "examples").glob("*.yaml"))
    return files + sorted((REPO / "exporter" / "presets").rglob("*.yaml"))


SEED_TEXTS = [p.read_text(encoding="utf-8") for p in _seed_files()]
SEEDS = [(str(p.relative_to(REPO)), yaml.safe_load(text))
         for p, text in zip(_seed_files(), SEED_TEXTS, strict=True)]

HOSTILE_TEXT = [
    "", " ", "\x00", "a\x00b", "\ud800", "x" * 3000, "../../etc/passwd", "/dev/zero",
    "${NOT_SET}", "${}", "qbitel-production", "default", "99999999999d", ".inf", "1e309",
    "nan", "-1s", "0", "1h30m", "250ms", "2.1", "critical", "env", "postgres", "true",
    "http://127.0.0.1:1/", "*", "{{ x }}", "\u202e", "日本語",
]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_TEXT),
    st.text(st.characters(codec=None, exclude_categories=["Cs"]), max_size=20),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
)
hostile = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none(),
                                  st.booleans()), inner, max_size=4),
        st.builds(lambda v: {"file": v}, inner), st.builds(lambda v: {"env": v}, inner),
    ),
    max_leaves=12,
)

# Text that `yaml.safe_dump` cannot produce: complex keys, tags, anchors, escapes.
SNIPPETS = [
    "? [a, b]\n: 1\n", "? {a: 1}\n: 2\n", "x: !!binary aGVsbG8=\n", "x: !!set {a, b}\n",
    "x: !!python/object:os.system ls\n", "x: &a [*a]\n", "x: &x {y: 1}\nz: *x\n",
    'x: "\\0"\n', 'x: "\\uD800"\n', "x: " + "[" * 200 + "]" * 200 + "\n", "include: 5\n",
    "include: [[qbitel-production]]\n", "include: [{a: 1}]\n", "include: [./]\n",
    "include: [missing.yaml]\n", "include: [qbitel-production, qbitel-production]\n",
    "<<: {checks: 1}\n", "settings: &s {jitter: 0.1}\ndefaults: *s\n", "\ufeffchecks: []\n",
    "x: 1\nx: 2\n", "x: 0x_FF\n", "x: 1_000\n", "x: 2001-12-14t21:59:43.10-05:00\n",
    "x: " + "9" * 5000 + "\n",
]


def _paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*here, index))


def _set(document: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


@st.composite
def mutated_seeds(draw: st.DrawFn) -> str:
    """A bundled example or preset with a few values replaced, removed or wrapped."""
    _, seed = draw(st.sampled_from(SEEDS))
    document = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(document))))
        operation = draw(st.sampled_from(["replace", "delete", "list", "mapping"]))
        if operation == "delete" and path:
            document = _set(document, path, None, delete=True)
        elif operation == "list":
            document = _set(document, path, [_get(document, path)])
        elif operation == "mapping":
            document = _set(document, path, {"value": _get(document, path)})
        else:
            document = _set(document, path, draw(hostile))
    text = _dump(document)
    if draw(st.booleans()):
        snippet = draw(st.sampled_from(SNIPPETS))
        text = snippet + text if draw(st.booleans()) else text + "\n" + snippet
    return text


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _dump(document: Any) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=False, sort_keys=False)
    except yaml.YAMLError:
        return yaml.safe_dump(repr(document))


SPLICE_PIECES = [
    ":", "-", "[", "]", "{", "}", "&a ", "*a", "!", "!!str ", "!!float ", "?", "|", ">",
    "\t", "%", "@", "`", '"', "'", "#", "\n", "\n  ", "\n- ", "\\", ",", "<<: ", "~",
    "\ufeff", "\x85", "\u2028", ".inf", "1e400", "null",
]


@st.composite
def spliced_seeds(draw: st.DrawFn) -> str:
    """A bundled example or preset with characters inserted, removed or repeated."""
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(text)))
        operation = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if operation == "insert":
            text = text[:at] + draw(st.sampled_from(SPLICE_PIECES)) + text[at:]
        elif operation == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        else:
            start = draw(st.integers(0, len(text)))
            text = text[:at] + text[start:start + draw(st.integers(1, 200))] + text[at:]
    return text


def _annotation_values(annotation: Any) -> st.SearchStrategy[Any]:
    """Plausible values for a field of this type (hostile ones are mixed in by the caller)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_annotation_values(a) for a in args)) if args else st.none()
    if origin is typing.Annotated:
        return _annotation_values(args[0])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (list, tuple, set, frozenset):
        return st.lists(_annotation_values(args[0]) if args else scalars, max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8),
                               _annotation_values(args[1]) if len(args) > 1 else scalars,
                               max_size=3)
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return st.booleans()
        if issubclass(annotation, Enum):
            return st.sampled_from([m.value for m in annotation])
        if issubclass(annotation, int):
            return st.integers(-5, 10**6)
        if issubclass(annotation, float):
            return st.one_of(st.floats(0.5, 3000), st.sampled_from(["30s", "5m", "1h"]))
        if issubclass(annotation, SecretRef):
            return st.sampled_from(["${HOME}", {"env": "HOME"}, {"file": "/etc/hostname"}])
        if issubclass(annotation, Path):
            return st.sampled_from(["/etc/hostname", "relative/file", "/nonexistent"])
        if issubclass(annotation, BaseModel):
            return _model_values(annotation)
    return st.one_of(st.text(max_size=12), st.sampled_from(HOSTILE_TEXT))


@st.composite
def _model_values(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    """Plausible values for the model's fields (required ones always), then up to two
    fields made hostile."""
    fields = {name: _annotation_values(info.annotation)
              for name, info in model.model_fields.items()}
    required = {n: fields[n] for n, info in model.model_fields.items() if info.is_required()}
    optional = {n: f for n, f in fields.items() if n not in required}
    values: dict[str, Any] = draw(st.fixed_dictionaries(required, optional=optional))
    if fields:
        for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
            values[name] = draw(hostile)
    return values


@st.composite
def schema_configs(draw: st.DrawFn) -> str:
    """A configuration built from the kinds' own models: right names, any values."""
    checks = []
    for index in range(draw(st.integers(1, 3))):
        kind_name = draw(st.sampled_from(sorted(registry.PROBE_KINDS)))
        spec = registry.probe_kind(kind_name).spec
        check = draw(_model_values(spec))
        base = {"id": f"c{index}", "section": "1.2", "title": "t", "kind": kind_name}
        check = {**base, **check} if draw(st.booleans()) else {**check, **base}
        checks.append(check)
    connections = {}
    for name in draw(st.lists(st.sampled_from(["db", "cache", "k8s"]), max_size=2, unique=True)):
        kind_name = draw(st.sampled_from(sorted(registry.CONNECTION_KINDS)))
        connections[name] = {**draw(_model_values(registry.connection_kind(kind_name).spec)),
                             "kind": kind_name}
    document: dict[str, Any] = {"checks": checks}
    if connections:
        document["connections"] = connections
    if draw(st.booleans()):
        document["settings"] = draw(_model_values(_settings_model()))
    if draw(st.booleans()):
        document["defaults"] = {"interval": draw(st.one_of(scalars, st.just("1m"))),
                                "timeout": draw(st.one_of(scalars, st.just("5s")))}
    return _dump(document)


def _settings_model() -> type[BaseModel]:
    from exporter.config import Settings

    return Settings


def validate_in_process(text: str) -> tuple[int, str, float, int]:
    """Run `validate` on `text`: exit code, stderr, seconds and peak traced bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        err = io.StringIO()
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(["validate", "--config.file", str(path)])
        finally:
            took = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    return code, err.getvalue(), took, peak


def assert_clean(text: str) -> None:
    code, stderr, took, peak = validate_in_process(text)
    assert code in (0, 2), stderr
    assert "Traceback" not in stderr
    if code == 2:
        assert stderr.startswith("configuration error:\n  "), stderr
        assert "cannot be loaded: unexpected" not in stderr, stderr  # a cause left unfixed
    assert took < SECONDS_PER_INPUT, f"{took:.1f} s for one input"
    assert peak < PEAK_BYTES_PER_INPUT, f"{peak / 2**20:.0f} MiB for one input"


@pytest.fixture(autouse=True)
def _no_secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/root")


@FUZZ
@given(mutated_seeds())
def test_mutated_examples_and_presets(text: str) -> None:
    assert_clean(text)


@FUZZ
@given(schema_configs())
def test_schema_aware_configurations(text: str) -> None:
    assert_clean(text)


@FUZZ
@given(spliced_seeds())
def test_spliced_examples_and_presets(text: str) -> None:
    assert_clean(text)


@settings(derandomize=True, max_examples=4, deadline=None, database=None)
@given(st.one_of(mutated_seeds(), schema_configs(), spliced_seeds()))
def test_the_real_console_script(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = subprocess.run([str(EXE), "validate", "--config.file", str(path)],
                                capture_output=True, text=True, timeout=60,
                                env={"PATH": os.environ["PATH"], "HOME": "/root"})
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
