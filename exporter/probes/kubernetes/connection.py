"""`kind: kubernetes` connection: in-cluster config or a kubeconfig path and context.

`open` returns a `Cluster`: the snapshot (and watch) cache of the connection. Its API
client is the runtime's Kubernetes transport client (`exporter.transport.kubernetes`),
made on first use, so a preset that names an in-cluster connection loads anywhere;
outside a cluster its checks end as `error/config` with the reason.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from exporter.model import (
    ConnectionKind,
    ConnectionSpec,
    Duration,
    ProbeContext,
    ProbeError,
    Reason,
)
from exporter.probes.kubernetes.snapshot import Cluster, kube_options
from exporter.transport.kubernetes import KUBERNETES


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
    watch: bool = Field(
        default=True, description="in a running `serve`, keep every collection current by "
        "WATCH from its first LIST instead of listing it again each cycle; `check` lists "
        "each once and never watches")
    watch_timeout: Duration = Field(
        default=300.0, ge=10, le=3600, description="how long one WATCH request may last "
        "before it is resumed from its last resourceVersion (`timeoutSeconds`)")
    secrets: Literal["none", "metadata", "data"] = Field(
        default="none", description="what the exporter may read of Secrets: none; "
        "metadata (names, labels: Helm history, required Secrets); data (TLS Secrets)")

    @field_validator("kubeconfig")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


async def open_cluster(spec: KubernetesConnection) -> Cluster:
    """The connection's snapshot cache (its client comes from the runtime: `cluster_of`)."""
    return Cluster(spec)


async def close_cluster(cluster: Cluster) -> None:
    """Stop the watches and drop the cache."""
    await cluster.close()


async def cluster_of(ctx: ProbeContext, name: str) -> Cluster:
    """The `Cluster` of connection `name`, taking its API client from the runtime's
    Kubernetes transport; ProbeError(config) when `name` is not a kubernetes connection."""
    try:
        cluster = await ctx.connection(name)
    except KeyError:
        raise ProbeError(Reason.CONFIG, f"connection {name!r} is not declared") from None
    if not isinstance(cluster, Cluster):
        raise ProbeError(Reason.CONFIG, f"connection {name!r} is not a kubernetes connection")
    if cluster.name != name or not cluster.bound:
        options = kube_options(cluster.spec, name)
        cluster.bind(name, functools.partial(ctx.client, KUBERNETES, options))
    cluster.repeating = ctx.repeats
    return cluster


async def api_client(cluster: Cluster) -> Any:
    """The connection's kubernetes-asyncio ApiClient, for requests the snapshot does not
    make (leases); ProbeError(config) when it cannot be created."""
    return (await cluster.client()).api


CONNECTION = ConnectionKind(
    name="kubernetes",
    spec=KubernetesConnection,
    open=open_cluster,
    close=close_cluster,
    summary="A Kubernetes API client (in-cluster or kubeconfig) with a per-cycle snapshot.",
)
