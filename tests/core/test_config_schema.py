"""`readiness-exporter schema`: the JSON Schema agrees with the real configuration loader."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter import config
from exporter.config_schema import config_json_schema
from exporter.inputs import INPUTS
from tests.core.conftest import EXE, REPO

TARGET_VARIABLES = {d.env for d in INPUTS if d.env}


class EveryVariableSet(Mapping[str, str]):
    """An environment in which every secret reference resolves (to a dummy value).

    Variables that set a preset input's target (DATABASE_PORT, QBITEL_URL...) stay unset:
    a dummy value there is not a host or a port, and the inputs' defaults apply.
    """

    def __getitem__(self, key: str) -> str:
        if key in TARGET_VARIABLES:
            raise KeyError(key)
        return "x" * 40

    def __contains__(self, key: object) -> bool:
        return key not in TARGET_VARIABLES

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def bundled_documents() -> list[Path]:
    """Every example and every preset file of the package."""
    presets = Path(str(resources.files(config.PRESET_PACKAGE)))
    return sorted(REPO.glob("examples/*.yaml")) + sorted(presets.rglob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def loader_accepts(path: Path) -> bool:
    try:
        config.load(path, environ=EveryVariableSet())
    except config.ConfigError:
        return False
    return True


def schema_errors(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(document)]


def test_schema_accepts_every_document_the_loader_accepts(
        validator: jsonschema.Draft202012Validator) -> None:
    accepted = [p for p in bundled_documents() if loader_accepts(p)]
    assert len(accepted) >= 10, accepted  # examples, the default and the preset's files
    for path in accepted:
        document = yaml.safe_load(path.read_text()) or {}
        assert schema_errors(validator, document) == [], path


def test_schema_accepts_an_override_of_an_included_check(
        validator: jsonschema.Draft202012Validator, tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text('include: [qbitel-production]\nchecks:\n  - id: "2.2.2"\n'
                    "    url: https://app.example/health\n    interval: 5m\n")
    assert loader_accepts(path)
    assert schema_errors(validator, yaml.safe_load(path.read_text())) == []


BASE = {"id": "x", "section": "2.1", "title": "t", "kind": "secret_strength",
        "env": "JWT_SECRET"}
REJECTED = {
    "unknown top-level key": {"chekcs": []},
    "unknown kind": {"checks": [{**BASE, "kind": "no_such_kind"}]},
    "field of another kind": {"checks": [{**BASE, "url": "https://x"}]},
    "severity not allowed": {"checks": [{**BASE, "severity": "urgent"}]},
    "title missing": {"checks": [{k: v for k, v in BASE.items() if k != "title"}]},
    "bad duration": {"checks": [{**BASE, "interval": "soon"}]},
    "negative duration": {"checks": [{**BASE, "timeout": -1}]},
    "inline secret": {"connections": {"db": {"kind": "postgres", "host": "h",
                                             "password": "hunter2-inline"}}},
    "unknown setting": {"settings": {"max_concurency": 4}},
    "wrong type": {"checks": [{**BASE, "min_length": "long"}]},
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_schema_rejects_what_the_loader_rejects(
        validator: jsonschema.Draft202012Validator, tmp_path: Path, case: str) -> None:
    document = REJECTED[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    assert not loader_accepts(path)
    assert schema_errors(validator, document) != []


def test_schema_command_prints_the_schema() -> None:
    result = subprocess.run([str(EXE), "schema"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads(json.dumps(config_json_schema()))
    mapping = printed["properties"]["checks"]["anyOf"][0]["items"]["then"]["discriminator"]
    assert mapping["propertyName"] == "kind" and "tls_endpoint" in mapping["mapping"]
