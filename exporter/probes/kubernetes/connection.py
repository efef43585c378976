"""`kind: kubernetes` connection: in-cluster config or a kubeconfig path and context.

`open` returns a `Cluster`: the ApiClient plus the per-cycle snapshot cache. The client
configuration is loaded on first use, so a preset that names an in-cluster connection
loads anywhere; outside a cluster its checks end as `error/config` with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from exporter.model import ConnectionKind, ConnectionSpec, Duration
from exporter.probes.kubernetes.snapshot import Cluster


class KubernetesConnection(ConnectionSpec):
    """Options of a `kind: kubernetes` connection."""

    kind: Literal["kubernetes"]
    kubeconfig: Path | None = Field(
        default=None, description="kubeconfig file; unset = in-cluster service account")
    context: str | None = Field(default=None, description="kubeconfig context (default: "
                                "the file's current-context)")
    page_size: int = Field(default=500, gt=0, le=10_000,
                           description="LIST page size (`limit`); `continue` fetches the rest")
    snapshot_ttl: Duration = Field(
        default=15.0, ge=0, description="how long one LIST is shared by checks; keep it a "
        "fraction of the shortest check interval")
    request_timeout: Duration = Field(default=8.0, gt=0,
                                      description="per API request (each page)")
    max_connections: int = Field(default=4, gt=0, le=256, description="concurrent API "
                                 "requests (and pages parsed at once)")
    secrets: Literal["none", "metadata", "data"] = Field(
        default="none", description="what the exporter may read of Secrets: none; "
        "metadata (names, labels: Helm history, required Secrets); data (TLS Secrets)")

    @field_validator("kubeconfig")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


async def open_cluster(spec: KubernetesConnection) -> Cluster:
    """The shared client for this connection (configuration is loaded on first request)."""
    return Cluster(spec)


async def api_client(cluster: Cluster) -> Any:
    """The connection's kubernetes-asyncio ApiClient, for requests the snapshot does not
    make (pod logs); created on first use, ProbeError(config) when it cannot be."""
    return await cluster._client()


async def close_cluster(cluster: Cluster) -> None:
    """Close the client's HTTP session."""
    await cluster.close()


CONNECTION = ConnectionKind(
    name="kubernetes",
    spec=KubernetesConnection,
    open=open_cluster,
    close=close_cluster,
    summary="A Kubernetes API client (in-cluster or kubeconfig) with a per-cycle snapshot.",
)
