"""The configuration file's JSON Schema (`readiness-exporter schema`), for editor completion.

Built from the same pydantic models the loader validates with: `checks` entries are a
union discriminated on `kind`; an entry without `kind` is an override of an included
check by `id` (only the common fields are known for it). Durations accept `30s`-style
strings and secret references `${ENV}` strings, as the loader does. Rules that pydantic
checks in code (cross-field validators, connection references, secrets resolving) are
not in the schema: `validate` remains the authority.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from exporter import registry
from exporter.config import Defaults, Settings
from exporter.model import CheckSpec, parse_duration

SCHEMA_ID = "https://readiness-exporter.invalid/schema/config.json"
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d|w))+)\s*$"
ENV_REFERENCE_PATTERN = r"^\s*\$\{[A-Za-z_][A-Za-z0-9_]*\}\s*$"
# YAML 1.1 reads `1.0e9` as a string, which the loader (pydantic, lax mode) takes as a number.
NUMBER_STRING_PATTERN = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
# `${inputs.NAME}`, `${VAR}`, `${VAR:-default}`: expanded by the loader before validation
EXPANSION = {"type": "string", "pattern": r"\$\{[^}]+\}",
             "description": "expanded when the file loads (docs/inputs.md)"}


class _LoaderLikeSchema(GenerateJsonSchema):
    """Describe what the loader accepts before its validators normalise it."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        function = schema["function"].get("function")
        inner = self.generate_inner(schema["schema"])
        if function is parse_duration:
            return {"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": DURATION_PATTERN}],
                    "description": "seconds, or a duration such as 30s, 5m, 6h, 1d, 1h30m"}
        if getattr(function, "__name__", "") == "_secret_ref_before":
            return {"anyOf": [{"type": "string", "pattern": ENV_REFERENCE_PATTERN}, inner],
                    "description": "a secret by reference: ${ENV_NAME}, {env: NAME} or "
                                   "{file: PATH}; never an inline value"}
        return inner

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        number = super().float_schema(schema)
        return {"anyOf": [number, {"type": "string", "pattern": NUMBER_STRING_PATTERN},
                          EXPANSION]}

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return {"anyOf": [super().int_schema(schema), EXPANSION]}

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        union = super().tagged_union_schema(schema)
        discriminator = schema.get("discriminator")
        if isinstance(discriminator, str) and discriminator in _variant_keys():
            return union  # checks, connections and a kind's variants: never one string
        return {"anyOf": [union, EXPANSION]}


def _variant_keys() -> set[str]:
    """`kind` and the fields that pick a kind's variant: unions on them are never one
    `${...}` string."""
    keys = {"kind"}
    for name in registry.probe_kind_names():
        key = getattr(registry.probe_kind(name).spec, "variant_key", None)
        if isinstance(key, str):
            keys.add(key)
    return keys


def _variants(model: type[BaseModel]) -> Any:
    """A kind whose options depend on one field (`kubernetes`'s `assert`): the union of its
    per-value models, discriminated on that field; any other kind: its model."""
    variants = getattr(model, "variants", None)
    key = getattr(model, "variant_key", None)
    if not callable(variants) or not isinstance(key, str):
        return model
    return Annotated[Union[tuple(variants())], Field(discriminator=key)]  # noqa: UP007


def _union(models: list[type[BaseModel]]) -> Any:
    if len(models) == 1:
        return _variants(models[0])
    members = tuple(_variants(m) for m in models)
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007


class _CheckOverride(BaseModel):
    """An entry without `kind`: changes the named fields of an included check."""

    model_config = ConfigDict(extra="allow", title="CheckOverride")

    id: str = Field(description="id of the included check to override")
    section: str | None = None
    title: str | None = None
    severity: Literal["critical", "warning", "info"] | None = None
    interval: Annotated[float, Field(gt=0)] | str | None = None
    timeout: Annotated[float, Field(gt=0)] | str | None = None
    enabled: bool | None = None
    disabled_reason: str | None = None
    description: str | None = None
    item: str | None = None


def inputs_model() -> type[BaseModel]:
    """The `inputs:` block: every documented input, optional."""
    from exporter.inputs import INPUTS

    fields: dict[str, Any] = {
        d.name: (str | int | dict[str, Any] | None, Field(default=None, description=d.help))
        for d in INPUTS
    }
    model: type[BaseModel] = create_model(
        "Inputs", __config__=ConfigDict(extra="forbid"), **fields)
    return model


def document_model() -> type[BaseModel]:
    """A pydantic model of one YAML document as written (before includes are merged)."""
    checks = [registry.probe_kind(n).spec for n in registry.probe_kind_names()]
    connections = [registry.connection_kind(n).spec for n in registry.connection_kind_names()]
    check_entry: Any = Union[_union(checks), _CheckOverride]  # noqa: UP007
    connection: Any = _union(connections)
    inputs_type: Any = inputs_model()
    model: type[BaseModel] = create_model(
        "ReadinessExporterConfig",
        __config__=ConfigDict(extra="forbid"),
        include=(list[str] | str | None, Field(
            default=None, description="bundled presets by name, or paths to other files")),
        settings=(Settings | None, None),
        inputs=(inputs_type | None, Field(
            default=None, description="the preset's targets, declared once (docs/inputs.md)")),
        defaults=(Defaults | None, None),
        connections=(dict[str, connection] | None, None),
        checks=(list[check_entry] | None, None),
    )
    return model


def _split_checks_on_kind(schema: dict[str, Any]) -> None:
    """`kind` present: the discriminated union; absent: an override of an included check."""
    items = schema["properties"]["checks"]["anyOf"][0]["items"]
    full, override = items["anyOf"]
    items.clear()
    items.update({"if": {"type": "object", "required": ["kind"]}, "then": full,
                  "else": override})


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a configuration document."""
    schema = document_model().model_json_schema(schema_generator=_LoaderLikeSchema)
    _split_checks_on_kind(schema)
    base_fields = ", ".join(CheckSpec.model_fields)
    schema.update({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "readiness-exporter configuration",
        "description": "Checks by probe kind (discriminated on `kind`); fields every check "
                       f"has: {base_fields}. `readiness-exporter validate` is the authority.",
    })
    return schema
