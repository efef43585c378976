"""Issue 15: `kind: kubernetes` has one model per assertion. An option of another
assertion is an error naming the assertion (it used to be accepted and ignored); the
JSON Schema and `list` show each assertion's own options; valid configs still load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from exporter import config
from exporter.config_schema import config_json_schema
from exporter.describe import kind_option_lines
from exporter.probes.kubernetes.spec import (
    VARIANTS,
    EtcdEncryptionCheck,
    HpaCheck,
    KubernetesCheck,
    ServerVersionCheck,
    WorkloadCheck,
)

Assertion = str


def raw(assertion: Assertion, **kw: Any) -> dict[str, Any]:
    return {"id": "4.9.9", "section": "4.9", "title": "t", "kind": "kubernetes",
            "assert": assertion, **kw}


def test_each_assertion_validates_to_its_own_model() -> None:
    for assertion, model in VARIANTS.items():
        extra = {"namespaces_exist": {"required_namespaces": ["a"]},
                 "resource_baseline": {"components": [
                     {"name": "c", "selector": "app=c", "cpu_request": "1", "cpu_limit": "1",
                      "memory_request": "1Gi", "memory_limit": "1Gi"}]}}.get(assertion, {})
        spec = KubernetesCheck.model_validate(raw(assertion, **extra))
        assert type(spec) is model and isinstance(spec, KubernetesCheck)
        assert spec.assertion == assertion


def test_an_option_of_another_assertion_names_the_assertion() -> None:
    """`min_replicas` on `server_version` used to be accepted and ignored."""
    with pytest.raises(pydantic.ValidationError) as caught:
        KubernetesCheck.model_validate(raw("server_version", min_replicas=3))
    (error,) = caught.value.errors()
    assert error["loc"] == ("min_replicas",)
    assert error["msg"] == ("does not apply to assert: server_version (an option of hpa, "
                            "pdb_coverage, anti_affinity)")
    ok = KubernetesCheck.model_validate(raw("hpa", min_replicas=3))
    assert isinstance(ok, HpaCheck) and ok.min_replicas == 3


def test_scope_options_only_where_a_scope_is_read() -> None:
    with pytest.raises(pydantic.ValidationError, match="does not apply to assert: "
                       "server_version"):
        KubernetesCheck.model_validate(raw("server_version", namespaces=["qbitel"]))
    with pytest.raises(pydantic.ValidationError, match="does not apply to assert: "
                       "mtls_strict"):
        KubernetesCheck.model_validate(raw("mtls_strict", workloads=["api"]))
    assert isinstance(KubernetesCheck.model_validate(raw("hpa", workloads=["api"])),
                      WorkloadCheck)


def test_unknown_keys_and_assertions_still_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        KubernetesCheck.model_validate(raw("hpa", min_replica=3))
    with pytest.raises(pydantic.ValidationError, match="'server_version'"):
        KubernetesCheck.model_validate(raw("server_versoin"))


def test_required_options_per_assertion() -> None:
    with pytest.raises(pydantic.ValidationError, match="required_namespaces"):
        KubernetesCheck.model_validate(raw("namespaces_exist"))
    with pytest.raises(pydantic.ValidationError, match="components"):
        KubernetesCheck.model_validate(raw("resource_baseline"))


def test_config_error_names_the_check_option_and_assertion(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "connections": {"kubernetes": {"kind": "kubernetes"}},
        "checks": [raw("server_version", id="4.1.1", min_replicas=2)]}))
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, environ={})
    text = "\n".join(caught.value.errors)
    assert ("checks[0] (id 4.1.1).min_replicas: does not apply to assert: server_version "
            "(an option of hpa, pdb_coverage, anti_affinity)") in text


def test_relative_encryption_config_file_resolves_against_the_config(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "connections": {"kubernetes": {"kind": "kubernetes"}},
        "checks": [raw("etcd_encryption", id="4.4.2", encryption_config_file="enc.yaml")]}))
    cfg = config.load(path, environ={})
    (spec,) = cfg.checks
    assert isinstance(spec, EtcdEncryptionCheck)
    assert spec.encryption_config_file == tmp_path / "conf" / "enc.yaml"


def test_schema_is_discriminated_on_assert() -> None:
    schema = config_json_schema()
    defs = schema["$defs"]
    assert "min_replicas" in defs["HpaCheck"]["properties"]
    assert "min_replicas" not in defs["ServerVersionCheck"]["properties"]
    assert "namespaces" not in defs["ServerVersionCheck"]["properties"]
    validator = jsonschema.Draft202012Validator(schema)
    good = {"checks": [raw("hpa", min_replicas=3)]}
    bad = {"checks": [raw("server_version", min_replicas=3)]}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors(bad))


def test_list_shows_per_assertion_options() -> None:
    lines = kind_option_lines(KubernetesCheck)
    text = "\n".join(lines)
    start = text.index("assert: server_version")
    end = text.index("assert: namespaces_exist")
    assert "min_version" in text[start:end] and "min_replicas" not in text[start:end]
    hpa = text[text.index("assert: hpa"):text.index("assert: pdb_coverage")]
    assert "min_replicas: int (default 2)" in hpa
    assert len([line for line in lines if line.startswith("      assert: ")]) == len(VARIANTS)
    assert isinstance(VARIANTS["server_version"](**raw("server_version")),
                      ServerVersionCheck)
