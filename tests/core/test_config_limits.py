"""Malformed and hostile configurations: every one ends as exit 2 with a message naming
where the problem is, within bounded time and memory, never as a traceback."""

from __future__ import annotations

import contextlib
import io
import os
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from exporter import cli, config, yamlload
from exporter.config import ConfigError
from exporter.model import SecretRef, parse_duration

EXE = Path(sys.executable).parent / "readiness-exporter"
MEMORY_LIMIT = 1 << 30  # a child that tries to expand a bomb dies instead of the machine

CHECK = """
  - id: jwt
    section: "2.1"
    title: JWT secret strong
    kind: secret_strength
    env: JWT_SECRET
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(path: Path, *extra: str) -> tuple[int, str]:
    """`validate` in-process: exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["validate", "--config.file", str(path), *extra])
    return code, err.getvalue()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real console script, with 1 GiB of address space."""
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_memory, env={**os.environ, "JWT_SECRET": "x" * 40})


# --------------------------------------------------------------------------- finding 1


@pytest.mark.parametrize(("text", "expected"), [
    ("? [a, b]\n: 1\n", "a key must be a plain value"),
    ("checks:\n  - {? {a: 1} : 1}\n", "a key must be a plain value"),
    ("connections: [1, 2]\ninclude: [qbitel-production]\n", "connections: must be a mapping"),
    ("checks:\n  - id: [1]\n    kind: env\n", "checks[0].id"),
    ("checks:\n  - id: a\n    kind: [env]\n    section: '1'\n    title: t\n",
     "checks[0] (id a).kind: unknown probe kind ['env']"),
    ("connections:\n  db: {kind: [postgres]}\n", "connections.db.kind: unknown connection kind"),
    ("connections:\n  7: {kind: postgres}\n", "connections.7: a connection name is text"),
    ("include: [qbitel-production]\nchecks:\n  - id: [2.1.1]\n", "checks"),
    ('checks:\n  - id: x\n    section: "1.2"\n    title: t\n    kind: file\n    path: "a\\0b"\n',
     "checks[0].path: contains a NUL character"),
    ('include: ["a/\\0b.yaml"]\n', "include[0]: contains a NUL character"),
    ("include: [" + "x" * 5000 + "]\n", "no preset or file named"),
    ("include: [" + "x" * 5000 + ".yaml]\n", "the path is too long"),
    ("settings: 5\n", "settings: input should be a valid dictionary"),
    ("checks: {a: 1}\n", "checks: must be a list"),
    ("a: " + "9" * 5000 + "\n", "a value cannot be read"),
    ("[" * 5000, "nest"),
], ids=lambda value: value if len(value) < 40 else f"{value[:30]}...")
def test_malformed_shapes_exit_2_with_a_path(tmp_path: Path, text: str, expected: str) -> None:
    code, stderr = validate(write(tmp_path, text))
    assert code == 2, stderr
    assert expected in stderr
    assert "Traceback" not in stderr


def test_include_merge_with_mismatched_shapes(tmp_path: Path) -> None:
    write(tmp_path, "connections: [1]\nsettings: [2]\n", "base.yaml")
    path = write(tmp_path, "include: [base.yaml]\nconnections: {}\nsettings: {jitter: 0.2}\n")
    assert validate(path) == (0, "")  # the including file replaces what it cannot merge
    write(tmp_path, "checks:\n  - {id: [1], kind: env}\n  - [2]\n", "base.yaml")
    path = write(tmp_path, "include: [base.yaml]\nchecks:\n  - {id: [1], title: t}\n")
    code, stderr = validate(path)
    assert code == 2 and "checks[0].id: input should be a valid string" in stderr, stderr
    assert "checks[1]: must be a mapping" in stderr


@pytest.mark.usefixtures("behaviour_kind")
def test_binary_secret_file_is_a_warning_and_a_strict_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\xff\xfe\x00\x81binary")
    ref = SecretRef(file=secret)
    with pytest.raises(LookupError, match="is not UTF-8 text"):
        ref.resolve()
    path = write(tmp_path, f"""
checks:
  - id: redis
    section: "3.2"
    title: t
    kind: test_behaviour
    token: {{file: {secret}}}
""")
    code, stderr = validate(path)
    assert code == 0 and "warning: " in stderr and "not UTF-8 text" in stderr, stderr
    code, stderr = validate(path, "--strict")
    assert code == 2 and "not UTF-8 text" in stderr, stderr


def test_unexpected_exception_while_loading_is_exit_2_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise TypeError("value-from-the-file")

    monkeypatch.setattr(config, "build", broken)
    code, stderr = validate(write(tmp_path, "checks:\n" + CHECK))
    assert code == 2
    assert "cannot be loaded: unexpected TypeError" in stderr
    assert "value-from-the-file" not in stderr  # exception text may carry a value


@pytest.mark.parametrize("command", ["validate", "check", "serve"])
def test_every_command_exits_2_on_a_malformed_file(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, "? [a, b]\n: 1\nchecks:\n  - id: {? [x] : 1}\n")
    result = run_cli(command, "--config.file", str(path))
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and "a key must be a plain value" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- finding 2


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e309", "99999999999d", "nan",
                                   "9" * 400, "32d", 10**400],
                         ids=lambda value: str(value)[:20])
def test_unbounded_intervals_are_rejected(tmp_path: Path, value: object) -> None:
    path = write(tmp_path, f"checks:\n{CHECK}    interval: {value}\n")
    code, stderr = validate(path)
    assert code == 2, stderr
    assert "checks[0] (id jwt).interval" in stderr


@pytest.mark.parametrize(("field", "value", "message"), [
    ("timeout", "2h", "a timeout must be at most 1h"),
    ("interval", "32d", "an interval must be at most 31d"),
    ("interval", "31d", None),
    ("timeout", "1h", None),
])
def test_interval_and_timeout_bounds(tmp_path: Path, field: str, value: str,
                                     message: str | None) -> None:
    path = write(tmp_path, f"checks:\n{CHECK}    {field}: {value}\n")
    if message is None:
        assert validate(path)[0] == 0
    else:
        code, stderr = validate(path)
        assert code == 2 and f"checks[0] (id jwt).{field}: {message}" in stderr, stderr


def test_defaults_and_settings_are_bounded(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  interval: .inf\n  timeout: 1e309\nsettings:\n"
                 "  first_round_spread: 99999999999d\n  stale_after_intervals: .inf\n")
    code, stderr = validate(path)
    assert code == 2
    for where in ("defaults.interval", "defaults.timeout", "settings.first_round_spread",
                  "settings.stale_after_intervals"):
        assert where in stderr
    path = write(tmp_path, "defaults:\n  interval: 32d\n  timeout: 2h\n")
    code, stderr = validate(path)
    assert "defaults.interval: an interval must be at most 31d" in stderr
    assert "defaults.timeout: a timeout must be at most 1h" in stderr


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400, "1e400", "inf"],
                         ids=lambda value: str(value)[:20])
def test_parse_duration_refuses_non_finite(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_probe_float_options_refuse_infinity(tmp_path: Path) -> None:
    path = write(tmp_path, """
checks:
  - id: rpo
    section: "10.1"
    title: t
    kind: secret_strength
    env: JWT_SECRET
    min_entropy_bits: .inf
""")
    code, stderr = validate(path)
    assert code == 2 and "min_entropy_bits" in stderr, stderr


# --------------------------------------------------------------------------- finding 3

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_alias_bomb_in_a_free_form_field_is_refused_quickly(tmp_path: Path) -> None:
    path = write(tmp_path, BOMB + f"checks:\n{CHECK}    severity: *i\n")
    result = run_cli("validate", "--config.file", str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "aliases are expanded" in result.stderr


def test_self_referring_alias_is_refused(tmp_path: Path) -> None:
    code, stderr = validate(write(tmp_path, "a: &a [*a]\n"))
    assert code == 2 and "an alias refers to a node that contains it" in stderr


def test_aliases_and_merge_keys_within_limits_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, """
base: &base {section: "2.1", kind: env, required: [HOME], interval: 30s}
checks:
  - {<<: *base, id: a, title: first}
  - {<<: *base, id: b, title: second}
""".replace("base: &base", "x-base: &base"))
    with pytest.raises(ConfigError) as info:  # x-base is not a known top-level key...
        config.load(path, {})
    assert info.value.errors == ["x-base: unknown key (expected one of checks, connections, "
                                 "defaults, inputs, settings)"]
    data = yamlload.parse(path.read_text())
    assert data["checks"][1]["interval"] == "30s"  # ...but the merge keys were expanded


def test_diamond_of_includes_loads_each_file_once(tmp_path: Path) -> None:
    levels = 22
    write(tmp_path, f"checks:\n{CHECK}", "d0.yaml")
    for level in range(1, levels + 1):
        below = f"d{level - 1}.yaml"
        write(tmp_path, f"include: [{below}]\n", f"l{level}.yaml")
        write(tmp_path, f"include: [{below}]\n", f"r{level}.yaml")
        write(tmp_path, f"include: [l{level}.yaml, r{level}.yaml]\n", f"d{level}.yaml")
    top = write(tmp_path, f"include: [d{levels}.yaml]\n", "top.yaml")
    result = run_cli("validate", "--config.file", str(top), timeout=60)
    # 22 diamonds nest 44 includes deep: refused by the depth bound, not expanded.
    assert result.returncode == 2 and "includes nest more than 8 levels deep" in result.stderr

    shallow = write(tmp_path, "include: [d3.yaml]\n", "shallow.yaml")
    reads: list[str] = []
    original = config.read_file

    def counting(path: Path) -> str:
        reads.append(path.name)
        return original(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "read_file", counting)
        assert [c.id for c in config.load(shallow, {"JWT_SECRET": "x"}).checks] == ["jwt"]
    assert sorted(reads) == sorted(set(reads))  # every file read once
    assert len(reads) == 1 + 3 * 3 + 1


def test_too_many_included_files(tmp_path: Path) -> None:
    names = [f"part{i}.yaml" for i in range(70)]
    for name in names:
        write(tmp_path, "settings: {jitter: 0.1}\n", name)
    path = write(tmp_path, f"include: [{', '.join(names)}]\n")
    code, stderr = validate(path)
    assert code == 2 and "more than 64 files included in all" in stderr


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_include_of_a_device_is_refused_without_reading_it(tmp_path: Path, target: str) -> None:
    path = write(tmp_path, f"include: [{target}]\n")
    result = run_cli("validate", "--config.file", str(path), timeout=30)
    assert result.returncode == 2
    assert f"{target}: not a regular file" in result.stderr


def test_include_of_a_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    code, stderr = validate(write(tmp_path, "include: [pipe.yaml]\n"))
    assert code == 2 and "not a regular file" in stderr


@pytest.mark.usefixtures("behaviour_kind")
def test_secret_file_from_a_device_or_too_large(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="not a regular file"):
        SecretRef(file=Path("/dev/zero")).resolve()
    big = tmp_path / "big.secret"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(LookupError, match="larger than 64 KiB"):
        SecretRef(file=big).resolve()
    big.write_bytes(b"x" * (64 * 1024))
    assert len(SecretRef(file=big).resolve().get_secret_value()) == 64 * 1024
    path = write(tmp_path, """
checks:
  - id: s
    section: "2.1"
    title: t
    kind: test_behaviour
    token: {file: /dev/zero}
""")
    code, stderr = validate(path)
    assert code == 0  # resolved at each run: a warning, refused by --strict
    assert "checks (id s).token: secret reference file /dev/zero cannot be resolved now: " \
        "secret file /dev/zero cannot be read: not a regular file" in stderr
    code, stderr = validate(path, "--strict")
    assert code == 2 and "refused by --strict" in stderr


@pytest.mark.usefixtures("behaviour_kind")
def test_environment_variable_names_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
checks:
  - id: s
    section: "2.1"
    title: t
    kind: test_behaviour
    token: {{env: "{'A' * 300}"}}
""")
    from pydantic import TypeAdapter, ValidationError

    from exporter.model import SecretReference

    with pytest.raises(ValidationError, match="environment variable name"):
        TypeAdapter(SecretReference).validate_python({"env": "A" * 300})
    with pytest.raises(ValidationError, match="environment variable name"):
        TypeAdapter(SecretReference).validate_python({"env": "A B"})
    code, stderr = validate(path)
    assert code == 2 and "checks[0] (id s).token: 'env' must be an environment variable" in stderr


# --------------------------------------------------------------------------- finding 4


@pytest.mark.parametrize("loader", ["c", "python"])
def test_lone_surrogate_is_rejected_at_load(tmp_path: Path, loader: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    if loader == "python":  # the pure-Python parser reads the escape; the text check stops it
        monkeypatch.setattr(yamlload, "_StrictLoader", _python_loader())
    path = write(tmp_path, f'checks:\n{CHECK}    enabled: false\n    disabled_reason: "\\uD800"\n')
    code, stderr = validate(path)
    assert code == 2, stderr
    if loader == "python":
        assert "checks[0].disabled_reason: contains a lone surrogate" in stderr
    else:
        assert "line 9 column 25" in stderr and "invalid Unicode" in stderr


def _python_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                           yamlload._construct_mapping)
    return Loader


# --------------------------------------------------------------------------- finding 5


def test_oversized_configuration_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    line = "# " + "x" * 1000 + "\n"
    path.write_text("checks:\n" + CHECK + line * 50_000, encoding="utf-8")  # ~50 MB
    tracemalloc.start()
    try:
        code, stderr = validate(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 2 and "larger than 4 MiB" in stderr  # refused before parsing
    assert peak < 16 * 1024 * 1024  # read up to the limit, not all 50 MB (33 s before)


def test_error_messages_do_not_repeat_huge_input(tmp_path: Path) -> None:
    huge = "y" * 1_000_000
    path = write(tmp_path, f"""
? {huge}
: 1
checks:
  - id: a
    section: "2.1"
    title: t
    kind: {huge}
  - id: {huge}
    section: "2.1"
    title: t
    kind: env
    interval: "{huge}"
""")
    code, stderr = validate(path)
    assert code == 2
    assert len(stderr) < 5_000, len(stderr)
    assert "more characters" in stderr


def test_many_errors_are_capped(tmp_path: Path) -> None:
    checks = "".join(f"  - {{id: c{i}, kind: nope}}\n" for i in range(500))
    code, stderr = validate(write(tmp_path, "checks:\n" + checks))
    assert code == 2
    assert "... and 400 more errors" in stderr
    assert stderr.count("unknown probe kind") == 100


def test_include_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    for ref in ("./", "folder.yaml"):
        code, stderr = validate(write(tmp_path, f"include: [{ref}]\n"))
        assert code == 2 and "not a regular file" in stderr, stderr


def test_control_characters_in_echoed_input_are_escaped(tmp_path: Path) -> None:
    code, stderr = validate(write(tmp_path, '"\\e[2J\\e[31mred": 1\n'))
    assert code == 2
    assert "\x1b" not in stderr
    assert "\\x1b[2J\\x1b[31mred: unknown key" in stderr


def test_include_depth_bound_is_exactly_eight_levels(tmp_path: Path) -> None:
    write(tmp_path, f"checks:\n{CHECK}", "level8.yaml")
    for level in range(7, -1, -1):
        write(tmp_path, f"include: [level{level + 1}.yaml]\n", f"level{level}.yaml")
    assert validate(tmp_path / "level0.yaml")[0] == 0  # includes 8 levels deep
    write(tmp_path, "include: [level0.yaml]\n", "top.yaml")
    code, stderr = validate(tmp_path / "top.yaml")
    assert code == 2 and "includes nest more than 8 levels deep" in stderr
