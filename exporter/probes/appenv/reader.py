"""Reads of the application's objects through the connection's Kubernetes transport client.

Workloads and pods are listed by the workload's label selector in its namespace,
ConfigMaps are read whole; Secrets give their owners as PartialObjectMetadata (connection
`secrets: metadata` or `data`) and, only with `secrets: data`, their key names and the
one value a check asks for. Secret
values are decoded inside `_secret_value` and never kept, cached or logged.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from exporter.model import ProbeContext, ProbeError, Reason
from exporter.probes.appenv.podspec import PodTemplate, template
from exporter.probes.appenv.workload import AppWorkload
from exporter.probes.kubernetes.connection import cluster_of
from exporter.probes.kubernetes.snapshot import Cluster, check_status, decode_object
from exporter.transport.kubernetes import KubeClient

_PAGE = "500"
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_WORKLOADS = (("Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
              ("StatefulSet", "/apis/apps/v1/namespaces/{ns}/statefulsets"))


@dataclass(frozen=True, slots=True)
class SecretKeys:
    """What is known of a Secret's keys: nothing (`readable=False`), absent, or its keys."""

    readable: bool
    exists: bool = False
    keys: frozenset[str] = frozenset()


@dataclass(slots=True)
class AppReader:
    """One run's reads of the application's objects (ConfigMaps read once per run)."""

    workload: AppWorkload
    cluster: Cluster
    client: KubeClient
    _maps: dict[str, dict[str, str] | None] = field(default_factory=dict)
    _keys: dict[str, SecretKeys] = field(default_factory=dict)

    @property
    def secrets_policy(self) -> str:
        """The connection's `secrets:` setting (none, metadata, data)."""
        return str(self.cluster.spec.secrets)

    @property
    def option(self) -> str:
        """`connections.kubernetes.secrets`: the option that opts in to Secret reads."""
        return f"connections.{self.workload.connection}.secrets"

    async def _get(self, path: str, what: str, query: list[tuple[str, str]] | None = None
                   ) -> dict[str, Any] | None:
        timeout = float(self.cluster.spec.request_timeout)
        where = f"in namespace {self.workload.namespace}"
        try:
            answer = await self.client.request(path, query=query or [], budget=timeout)
        except ProbeError as exc:
            if exc.reason is Reason.TIMEOUT:
                raise ProbeError(Reason.TIMEOUT, f"get {what} {where}: the API server did "
                                 f"not answer within {timeout:g}s") from None
            raise
        if answer.status == 404:
            return None
        check_status(answer.status, "list" if query else "get", what, where)
        return await decode_object(answer.body, "get", what, where)

    async def _list(self, path: str, what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("labelSelector", self.workload.selector), ("limit", _PAGE)]
            if token:
                query.append(("continue", token))
            data = await self._get(path, what, query)
            if data is None:
                return items
            items += [i for i in data.get("items") or [] if isinstance(i, dict)]
            token = str((data.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    async def templates(self, source: str) -> list[PodTemplate]:
        """The pod templates of the matching workloads, or of the running pods (one per
        owner); ProbeError(config) when nothing matches (never "all 0 comply")."""
        namespace, only = self.workload.namespace, self.workload.containers
        skip = self.workload.exclude_containers
        found: list[PodTemplate] = []
        if source == "workloads":
            for kind, path in _WORKLOADS:
                for item in await self._list(path.format(ns=namespace), f"{kind}s"):
                    spec = ((item.get("spec") or {}).get("template") or {}).get("spec") or {}
                    name = (item.get("metadata") or {}).get("name", "?")
                    found.append(template(f"{kind}/{name}", namespace, spec, only, skip))
            what = "Deployment or StatefulSet"
        else:
            owners: set[str] = set()
            for pod in await self._list(f"/api/v1/namespaces/{namespace}/pods", "pods"):
                meta = pod.get("metadata") or {}
                phase = (pod.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
                    continue
                owner = _owner(meta)
                if owner not in owners:
                    owners.add(owner)
                    found.append(template(owner, namespace, pod.get("spec") or {}, only,
                                          skip))
            what = "running pod"
        if not found:
            raise ProbeError(Reason.CONFIG, f"no {what} matches {self.workload.where()}: "
                             "nothing to check (a misspelled namespace or selector?)")
        if only and not any(t.containers for t in found):
            raise ProbeError(Reason.CONFIG, f"no container named {', '.join(only)} in the "
                             f"workloads of {self.workload.where()}")
        return found

    async def config_map(self, name: str) -> dict[str, str] | None:
        """A ConfigMap's data (binaryData keys with an empty value), None when absent."""
        if name not in self._maps:
            data = await self._get(
                f"/api/v1/namespaces/{self.workload.namespace}/configmaps/{name}",
                f"configmaps/{name}")
            self._maps[name] = None if data is None else _config_data(data)
        return self._maps[name]

    async def labelled_config_maps(self) -> list[str]:
        """Names of the ConfigMaps that carry the workload's labels."""
        items = await self._list(f"/api/v1/namespaces/{self.workload.namespace}/configmaps",
                                 "configmaps")
        names = []
        for item in items:
            name = (item.get("metadata") or {}).get("name")
            if isinstance(name, str):
                self._maps.setdefault(name, _config_data(item))
                names.append(name)
        return names

    async def secret_keys(self, name: str) -> SecretKeys:
        """A Secret's key names. The API gives no key names without the values, so they
        are read only with the connection's `secrets: data` (the values are dropped as
        the answer is parsed); `readable=False` otherwise."""
        if self.secrets_policy != "data":
            return SecretKeys(readable=False)
        if name not in self._keys:
            answer = await self._secret(self.workload.namespace, name)
            self._keys[name] = SecretKeys(True, False) if answer is None else \
                SecretKeys(True, True, frozenset(_keys_of(answer)))
        return self._keys[name]

    async def secret_owners(self, name: str) -> list[str] | None:
        """The kinds owning a Secret (`ExternalSecret`...), read as PartialObjectMetadata
        (no data crosses the wire; connection `secrets: metadata` or `data`). None when
        the Secret does not exist; ProbeError(config) with `secrets: none`."""
        if self.secrets_policy == "none":
            raise ProbeError(Reason.CONFIG, f"who manages Secret {name} cannot be read: "
                             f"{self.option} is none (set metadata)")
        timeout = float(self.cluster.spec.request_timeout)
        namespace = self.workload.namespace
        answer = await self.client.request(f"/api/v1/namespaces/{namespace}/secrets/{name}",
                                           accept=METADATA_ACCEPT, budget=timeout)
        if answer.status == 404:
            return None
        check_status(answer.status, "get", f"secrets/{name}", f"in namespace {namespace}")
        meta = _decode(answer.body).get("metadata") or {}
        return [str(ref.get("kind")) for ref in meta.get("ownerReferences") or []
                if isinstance(ref, dict)]

    async def secret_value(self, name: str, key: str) -> str | None:
        """One value of a Secret of the namespace (only with `secrets: data`)."""
        return await secret_value(self.cluster, self.client, self.workload.connection,
                                  self.workload.namespace, name, key)

    async def _secret(self, namespace: str, name: str) -> bytes | None:
        return await _fetch_secret(self.cluster, self.client, namespace, name)


async def _fetch_secret(cluster: Cluster, client: KubeClient, namespace: str,
                        name: str) -> bytes | None:
    timeout = float(cluster.spec.request_timeout)
    answer = await client.request(f"/api/v1/namespaces/{namespace}/secrets/{name}",
                                  budget=timeout)
    if answer.status == 404:
        return None
    check_status(answer.status, "get", f"secrets/{name}", f"in namespace {namespace}")
    return answer.body


async def secret_value(cluster: Cluster, client: KubeClient, connection: str,
                       namespace: str, name: str, key: str) -> str | None:
    """One value of a Secret (only with the connection's `secrets: data`); None when the
    Secret or the key is absent. The value is neither kept nor logged here."""
    policy = str(cluster.spec.secrets)
    if policy != "data":
        raise ProbeError(Reason.CONFIG, f"reading Secret {namespace}/{name} needs "
                         f"connections.{connection}.secrets: data (opt-in; it is {policy})")
    answer = await _fetch_secret(cluster, client, namespace, name)
    return None if answer is None else _secret_value(answer, name, key)


async def open_secret_value(ctx: ProbeContext, connection: str, namespace: str, name: str,
                            key: str) -> str | None:
    """`secret_value` on connection `connection` (the runtime's transport client)."""
    cluster = await cluster_of(ctx, connection)
    return await secret_value(cluster, await cluster.client(), connection, namespace, name,
                              key)


async def open_reader(ctx: ProbeContext, workload: AppWorkload) -> AppReader:
    """A reader on the workload's connection (the runtime's Kubernetes transport client)."""
    cluster = await cluster_of(ctx, workload.connection)
    return AppReader(workload, cluster, await cluster.client())


def _owner(meta: dict[str, Any]) -> str:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return f"{ref.get('kind', '?')}/{ref.get('name', '?')}"
    return f"Pod/{meta.get('name', '?')}"


def _config_data(item: dict[str, Any]) -> dict[str, str]:
    data = {str(k): v for k, v in (item.get("data") or {}).items() if isinstance(v, str)}
    data.update({str(k): "" for k in (item.get("binaryData") or {}) if k not in data})
    return data


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ProbeError(Reason.PROTOCOL, "get secret: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ProbeError(Reason.PROTOCOL, "get secret: unexpected answer")
    return data


def _keys_of(body: bytes) -> list[str]:
    data = _decode(body)
    return [str(k) for k in {**(data.get("data") or {}), **(data.get("stringData") or {})}]


def _secret_value(body: bytes, name: str, key: str) -> str | None:
    data = _decode(body)
    encoded = (data.get("data") or {}).get(key)
    if not isinstance(encoded, str):
        plain = (data.get("stringData") or {}).get(key)
        return plain if isinstance(plain, str) else None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ProbeError(Reason.PROTOCOL, f"Secret {name} key {key} is not base64 of "
                         "UTF-8 text") from None
