"""`validate` messages that say what to change: unknown ids, misspellings, failed includes."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import config
from exporter.config import ConfigError


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path, {})
    return info.value.errors


def test_overriding_an_id_in_no_included_preset_says_so(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, 'include: [qbitel-production]\nchecks:\n  - {id: "3.1.33", '
                                 "enabled: true}\n")
    assert [e.split(" ", 1)[1] for e in errors] == ["(id 3.1.33): 3.1.33 is in no included preset; a new check "
                      "needs kind, section, title (did you mean '3.1.3'?)"]
    assert not any("unknown probe kind None" in e for e in errors)


def test_misspelled_kind_key_and_preset_get_a_suggestion(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, """
include: [qbitel-prodution]
setings: {}
checks:
  - {id: a, section: "1.1", title: a, kind: htpt, url: "https://a.test"}
  - {id: b, section: "1.1", title: b, kind: http, ulr: "https://a.test"}
  - {id: c, section: "1.1", title: c, kind: http, url: "https://a.test",
     hsts: {min_max_ag: 1}}
""")
    text = "\n".join(errors)
    assert "no preset or file named 'qbitel-prodution' (did you mean 'qbitel-production'?)" in text
    assert "setings: unknown key (did you mean 'settings'?)" in text
    assert "unknown probe kind 'htpt' (did you mean 'http'?)" in text
    assert "checks[1] (id b).ulr: unknown key (did you mean 'url'?)" in text
    assert "checks[2] (id c).hsts.min_max_ag: unknown key (did you mean 'min_max_age'?)" in text


def test_every_error_is_reported_even_when_an_include_fails(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, """
include: [missing.yaml, qbitel-production]
checks:
  - {id: "2.2.2", timeout: -1}
""")
    assert any("missing.yaml: no such file" in e for e in errors)
    assert any(e.startswith("checks[") and "(id 2.2.2).timeout" in e for e in errors)
