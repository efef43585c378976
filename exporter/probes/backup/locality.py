"""Whether a recovery-point source survives the loss of the whole cluster (10.2).

A source is in the cluster when its data lives on a node or behind the cluster's own
network: a local path (directory or WAL archive directory, a pgBackRest repository read
through the local `pgbackrest` or an info file), the production database itself
(`pg_stat_archiver`, synchronous standbys), or an S3 endpoint that is a Kubernetes
service name (`*.svc`, `*.cluster.local`, a single-label name), a loopback address, or
one of the configured cluster hosts (e.g. the production database's host).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from exporter.probes.backup.sources import DirectorySource, PgBackRestSource, S3Source

_CLUSTER_SUFFIXES = (".svc", ".cluster.local")


def _host_reason(host: str, cluster_hosts: Iterable[str]) -> str | None:
    """Why an endpoint host is inside the cluster, or None."""
    name = host.lower().rstrip(".")
    if name in {h.lower().rstrip(".") for h in cluster_hosts if h}:
        return f"{host} is a host of the cluster (cluster_hosts)"
    if name == "localhost":
        return f"{host} is this node"
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return f"{host} is this node" if address.is_loopback else None
    if name.endswith(_CLUSTER_SUFFIXES) or ".svc." in name:
        return f"{host} is an in-cluster service name"
    if "." not in name:
        return f"{host} is a single-label name (an in-cluster service)"
    return None


def backup_reason(source: DirectorySource | PgBackRestSource | S3Source,
                  cluster_hosts: Iterable[str]) -> str | None:
    """Why a backup source is lost with the cluster, or None when it is off-cluster."""
    if isinstance(source, DirectorySource):
        return f"{source.path} is a local path on the node"
    if isinstance(source, PgBackRestSource):
        return ("pgBackRest info does not say where its repository is; point an s3 source "
                "at the repository's bucket")
    if source.endpoint_url is None:
        return None  # AWS S3
    host = urlsplit(source.endpoint_url).hostname
    if host is None:
        return f"endpoint_url {source.endpoint_url} has no host"
    return _host_reason(host, cluster_hosts)
