"""Configuration loading: includes, overrides, and an error with its path for every mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import config
from exporter.config import ConfigError
from exporter.model import Severity, parse_duration

EXE = Path(sys.executable).parent / "readiness-exporter"

VALID_CHECK = """
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


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(path, environ or {})
    return info.value.errors


def test_embedded_default_is_the_section_6_1_contract() -> None:
    cfg = config.load(None, {})
    ids = {c.id for c in cfg.checks}
    assert {"6.1", "1.2.3", "2.1.1", "6.1-encryption-key"} <= ids
    required = cfg.check("6.1")
    assert "JWT_SECRET" in required.required  # type: ignore[attr-defined]
    assert cfg.check("6.1-encryption-key").exact_bytes == 32  # type: ignore[attr-defined]
    assert cfg.source == "embedded default"


@pytest.mark.parametrize(("text", "expected"), [
    ("30", 30.0), ("1.5", 1.5), ("30s", 30.0), ("5m", 300.0), ("6h", 21600.0), ("1d", 86400.0),
    ("1h30m", 5400.0), ("250ms", 0.25),
])
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "5x", "h", "-1", "1h 30m", True])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:\n  - id: a\n    title: [unclosed\n")
    (error,) = errors_of(path)
    assert str(path) in error and "line" in error and "YAML syntax error" in error


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "settings:\n  jitter: 0.1\n  jitter: 0.2\n")
    (error,) = errors_of(path)
    assert "duplicate key 'jitter'" in error


def test_every_error_is_reported_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, """
checks:
  - id: a
    section: "2.1"
    title: wrong type
    kind: secret_strength
    env: JWT_SECRET
    min_length: many
  - id: b
    section: "2.1"
    title: unknown key
    kind: env
    requried: [X]
  - id: c
    section: "2.1"
    title: unknown kind
    kind: telepathy
  - id: a
    section: "2.1"
    title: duplicate
    kind: env
  - id: d
    section: "2.1"
    title: missing field
    kind: file
  - id: e
    section: "1.2"
    title: negative interval
    kind: env
    interval: -5
bogus_top_level: 1
""")
    errors = errors_of(path)
    text = "\n".join(errors)
    assert "checks[0] (id a).min_length: input should be a valid integer" in text
    assert "checks[1] (id b).requried: unknown key" in text
    assert "checks[2] (id c).kind: unknown probe kind 'telepathy'" in text
    assert "checks[3] (id a).id: duplicate check id (also checks[0])" in text
    assert "checks[4] (id d).path: required" in text
    assert "checks[5] (id e).interval" in text
    assert "bogus_top_level: unknown key" in text
    assert len(errors) == 7


def test_threshold_constraint_message(tmp_path: Path) -> None:
    path = write(tmp_path, """
checks:
  - id: f
    section: "10.3"
    title: runbook
    kind: file
    path: /nonexistent
    max_age: 0
""")
    (error,) = errors_of(path)
    assert error == "checks[0] (id f).max_age: input should be greater than 0"


@pytest.mark.usefixtures("behaviour_kind")
def test_missing_secret_reference_loads_and_is_a_warning(tmp_path: Path) -> None:
    """Secrets are resolved at run time: an unset one is a warning naming what to set
    (docs/configuration.md "Secrets"), not an invalid configuration."""
    from exporter import lint

    path = write(tmp_path, f"""
checks:
  - id: s
    section: "2.1"
    title: env reference
    kind: test_behaviour
    token: ${{NOT_SET_ANYWHERE}}
  - id: t
    section: "2.1"
    title: file reference
    kind: test_behaviour
    token: {{file: {tmp_path}/missing-secret}}
""")
    loaded = config.load(path, {})
    assert lint.config_warnings(loaded, {}) == [
        "checks (id s).token: secret reference ${NOT_SET_ANYWHERE} cannot be resolved now: "
        "environment variable NOT_SET_ANYWHERE is not set; the check ends as error/config "
        "until it can (resolved at each run)",
        f"checks (id t).token: secret reference file {tmp_path}/missing-secret cannot be "
        f"resolved now: secret file {tmp_path}/missing-secret cannot be read: No such file "
        "or directory; the check ends as error/config until it can (resolved at each run)",
    ]
    (tmp_path / "missing-secret").write_text("s3cr3t-value\n")
    environ = {"NOT_SET_ANYWHERE": "tok-value"}
    loaded = config.load(path, environ)
    assert lint.config_warnings(loaded, environ) == []
    token = loaded.check("t").token  # type: ignore[attr-defined]
    assert token.resolve().get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(loaded)


def test_inline_secret_values_are_refused() -> None:
    from pydantic import TypeAdapter, ValidationError

    from exporter.model import SecretReference

    adapter = TypeAdapter(SecretReference)
    assert adapter.validate_python("${DB_PASSWORD}").env == "DB_PASSWORD"
    assert adapter.validate_python({"file": "/run/secrets/pw"}).file == Path("/run/secrets/pw")
    with pytest.raises(ValidationError) as info:
        adapter.validate_python("hunter2-literal")
    assert "hunter2-literal" not in str(info.value).split("input_value")[0]
    assert "by reference only" in str(info.value)


def test_include_preset_and_override_by_id(tmp_path: Path) -> None:
    path = write(tmp_path, """
include: [qbitel-production]
settings:
  release: "2.1.0"
checks:
  - id: "2.1.1"
    severity: warning
    min_length: 48
  - id: extra
    section: "1.2"
    title: added by the file
    kind: env
    required: [HOME]
""")
    cfg = config.load(path, {})
    jwt = cfg.check("2.1.1")
    assert jwt.severity is Severity.WARNING
    assert jwt.min_length == 48  # type: ignore[attr-defined]
    assert jwt.env == "JWT_SECRET"  # type: ignore[attr-defined]  (kept from the preset)
    assert cfg.check("extra").title == "added by the file"
    assert cfg.settings.release == "2.1.0"
    assert {"6.1", "9.3", "10.3.3"} <= {c.id for c in cfg.checks}


def test_include_relative_file_and_cycle(tmp_path: Path) -> None:
    write(tmp_path, "include: [main.yaml]\n", "other.yaml")
    path = write(tmp_path, "include: [other.yaml]\nchecks:\n" + VALID_CHECK, "main.yaml")
    errors = errors_of(path)
    assert any("includes itself" in e for e in errors)
    write(tmp_path, "checks:\n" + VALID_CHECK, "base.yaml")
    path = write(tmp_path, "include: [base.yaml]\n", "top.yaml")
    assert [c.id for c in config.load(path, {}).checks] == ["jwt"]


def test_unknown_preset(tmp_path: Path) -> None:
    path = write(tmp_path, "include: [no-such-preset]\n")
    (error,) = errors_of(path)
    assert "no preset or file named 'no-such-preset'" in error


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, "checks:\n" + VALID_CHECK, "good.yaml")
    result = subprocess.run([str(EXE), "validate", "--config.file", str(good)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK: 1 checks" in result.stdout
    bad = write(tmp_path, "checks:\n  - id: x\n    kind: env\n    nope: 1\n", "bad.yaml")
    result = subprocess.run([str(EXE), "validate", "--config.file", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "checks[0] (id x).nope: unknown key" in result.stderr
    assert "checks[0] (id x).section: required" in result.stderr
    assert "checks[0] (id x).title: required" in result.stderr
    missing = subprocess.run([str(EXE), "validate", "--config.file", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
