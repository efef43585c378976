"""`workload:`: which application's pods the env, secret_scan and secret_strength kinds read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from exporter.model import KubernetesConnectionName
from exporter.probes.kubernetes.selectors import SelectorError, parse_selector


class AppWorkload(BaseModel):
    """The application's workloads: a namespace and a label selector on one connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: KubernetesConnectionName = Field(
        default="kubernetes", description="a kubernetes connection")
    namespace: str = Field(min_length=1, description="the application's namespace")
    selector: str = Field(min_length=1, description="label selector of its Deployments, "
                          "StatefulSets and pods, e.g. 'app.kubernetes.io/part-of=qbitel'")
    containers: list[str] = Field(default=[], description="container names read (default: "
                                  "every container; init containers are never read)")
    exclude_containers: list[str] = Field(
        default=["istio-proxy", "linkerd-proxy"], description="containers not read (the "
        "service mesh's injected sidecars carry the mesh's variables, not the application's)")
    source: Literal["pods", "workloads"] | None = Field(
        default=None, description="read the running pods or the Deployments' and "
        "StatefulSets' pod templates (default: pods for env, workloads for secret_scan)")

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        try:
            parse_selector(value)
        except SelectorError as exc:
            raise ValueError(str(exc)) from None
        return value

    def where(self) -> str:
        """`namespace qbitel, selector app=api` for messages."""
        return f"namespace {self.namespace}, selector {self.selector}"


WorkloadOption = Annotated[AppWorkload | None, WithJsonSchema({
    "anyOf": [AppWorkload.model_json_schema(), {"type": "null"},
              {"type": "string", "pattern": r"\$\{[^}]+\}",
               "description": "expanded when the file loads (`${inputs.app_workload}`)"}]})]
"""A `workload:` option: the workload, null, or (in the JSON Schema) the `${inputs...}`
reference the loader expands before validation."""
