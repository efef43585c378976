"""The per-cycle cluster snapshot: one paginated LIST per resource kind, shared.

Every check of a cycle asks the `Cluster` for what it needs; a LIST is made once per
(resource, namespace, selector) and kept for `snapshot_ttl` seconds, and concurrent
callers await the same in-flight request. Responses are read as raw JSON (no model
classes), so the cost grows with kinds and pages, never with the number of workloads.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from exporter.model import ProbeError, Reason
from exporter.probes.kubernetes.resources import Resource, slimmer

if TYPE_CHECKING:
    from exporter.probes.kubernetes.connection import KubernetesConnection


METADATA_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_PARSE_IN_THREAD_BYTES = 256 * 1024


@dataclass(slots=True)
class Listing:
    """The items of one resource kind, or `served=False` when the API has no such kind."""

    items: list[dict[str, Any]]
    served: bool = True
    pages: int = 1
    derived: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Entry:
    task: asyncio.Future[Any]
    expires: float = float("inf")


@dataclass(slots=True)
class RequestStats:
    """API requests made through this client (for tests, the bench and a metric)."""

    total: int = 0
    by_path: dict[str, int] = field(default_factory=dict)

    def add(self, path: str) -> None:
        self.total += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1


class Cluster:
    """A Kubernetes API client plus the per-cycle snapshot cache (the connection object)."""

    def __init__(self, spec: KubernetesConnection, name: str = "kubernetes") -> None:
        self.spec = spec
        self.name = name
        self.stats = RequestStats()
        self._api: Any = None
        self._opening = asyncio.Lock()
        self._cache: dict[tuple[Any, ...], _Entry] = {}
        self._pages = asyncio.Semaphore(spec.max_connections)

    # -- client

    async def _client(self) -> Any:
        if self._api is not None:
            return self._api
        async with self._opening:
            if self._api is None:
                self._api = await _new_api_client(self.spec)
        return self._api

    async def close(self) -> None:
        """Close the HTTP session and forget the cache."""
        self._cache.clear()
        if self._api is not None:
            api, self._api = self._api, None
            await api.close()

    def invalidate(self) -> None:
        """Drop every cached listing (the next call lists again)."""
        self._cache.clear()

    # -- cache

    async def _shared(self, key: tuple[Any, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._cache.get(key)
        if entry is not None and (not entry.task.done() or entry.expires > loop.time()):
            return await asyncio.shield(entry.task)
        task: asyncio.Future[Any] = asyncio.ensure_future(make())
        entry = _Entry(task)
        self._cache[key] = entry

        def _done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                if self._cache.get(key) is entry:
                    del self._cache[key]
            else:
                entry.expires = loop.time() + self.spec.snapshot_ttl

        task.add_done_callback(_done)
        return await asyncio.shield(task)

    # -- reads

    async def version(self) -> dict[str, Any]:
        """`GET /version`."""
        async def make() -> dict[str, Any]:
            data = await self._get_json("/version", [], "get", "version (/version)", None)
            return data if data is not None else {}
        result: dict[str, Any] = await self._shared(("version",), make)
        return result

    async def discover(self, group: str) -> bool:
        """Whether the API serves `group` (e.g. `security.istio.io`)."""
        async def make() -> bool:
            data = await self._get_json(f"/apis/{group}", [], "get", f"API group {group}", None)
            return data is not None
        served: bool = await self._shared(("group", group), make)
        return served

    async def get(self, resource: Resource, name: str,
                  namespace: str | None = None) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        path = f"{resource.path(namespace)}/{name}"

        async def make() -> dict[str, Any] | None:
            return await self._get_json(path, [], "get", f"{resource.name}/{name}", namespace)
        result: dict[str, Any] | None = await self._shared(("get", path), make)
        return result

    async def list_all(self, resource: Resource, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   metadata_only: bool = False, keep: bool = True) -> Listing:
        """Every object of `resource` (cluster-wide when namespace is None), all pages.

        `keep=False` bypasses the shared cache (Secret data is never kept).
        """
        key = ("list", resource, namespace, label_selector, field_selector, metadata_only)
        if not keep:
            return await self._list_pages(resource, namespace, label_selector,
                                          field_selector, metadata_only)

        async def make() -> Listing:
            return await self._list_pages(resource, namespace, label_selector,
                                          field_selector, metadata_only)
        listing: Listing = await self._shared(key, make)
        return listing

    async def list_scoped(self, resource: Resource, namespaces: list[str] | None,
                          **kwargs: Any) -> Listing:
        """Cluster-wide when `namespaces` is None, else one LIST per namespace, merged."""
        if namespaces is None or not resource.namespaced:
            return await self.list_all(resource, None, **kwargs)
        parts = await asyncio.gather(*(self.list_all(resource, ns, **kwargs) for ns in namespaces))
        items = [item for part in parts for item in part.items]
        return Listing(items, served=all(p.served for p in parts),
                       pages=sum(p.pages for p in parts))

    async def _list_pages(self, resource: Resource, namespace: str | None,
                          label_selector: str | None, field_selector: str | None,
                          metadata_only: bool) -> Listing:
        path = resource.path(namespace)
        items: list[dict[str, Any]] = []
        token: str | None = None
        pages = 0
        restarted = False
        while True:
            query: list[tuple[str, str]] = [("limit", str(self.spec.page_size))]
            if token:
                query.append(("continue", token))
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            try:
                async with self._pages:  # bounds pages being read and decoded at once
                    data = await self._get_json(path, query, "list", resource.name,
                                                namespace,
                                                METADATA_ACCEPT if metadata_only else None,
                                                decode=functools.partial(decode_page, resource))
                if data is not None:
                    items.extend(data["items"])
                    token = data["continue"]
                    del data
                    pages += 1
                    if not token:
                        return Listing(items, pages=pages)
                    continue
            except _Gone:
                if restarted or not token:
                    raise ProbeError(Reason.PROTOCOL, f"list {resource.name}: continue token "
                                     "expired twice; the collection changes too fast") from None
                restarted, token, items, pages = True, None, [], 0
                continue
            return Listing([], served=False, pages=pages + 1)

    # -- HTTP

    async def _get_json(self, path: str, query: list[tuple[str, str]], verb: str,
                        what: str, namespace: str | None, accept: str | None = None,
                        decode: Callable[[bytes], Any] = json.loads,
                        ) -> dict[str, Any] | None:
        """GET `path`; None on 404; ProbeError with a bounded reason otherwise."""
        api = await self._client()
        headers = {"Accept": accept or "application/json"}
        where = f"in namespace {namespace}" if namespace else "cluster-wide"
        self.stats.add(path)
        timeout = self.spec.request_timeout
        try:
            async with asyncio.timeout(timeout):
                response = await api.call_api(
                    path, "GET", query_params=query, header_params=headers,
                    auth_settings=["BearerToken"], _preload_content=False,
                    _request_timeout=timeout)
                try:
                    status = response.status
                    body = await response.read()
                finally:
                    response.release()
        except TimeoutError:
            raise ProbeError(Reason.TIMEOUT, f"{verb} {what} {where}: the API server did not "
                             f"answer within {timeout:g}s") from None
        except aiohttp.ClientConnectorCertificateError:
            raise ProbeError(Reason.TLS, "the API server's certificate is not trusted "
                             f"(connection {self.name})") from None
        except aiohttp.ClientSSLError:
            raise ProbeError(Reason.TLS, "TLS handshake with the API server failed "
                             f"(connection {self.name})") from None
        except aiohttp.ClientConnectorDNSError:
            raise ProbeError(Reason.DNS, "the API server's host name does not resolve "
                             f"(connection {self.name})") from None
        except aiohttp.ClientConnectorError as exc:
            raise ProbeError(Reason.CONNECT, f"cannot connect to the API server "
                             f"{exc.host}:{exc.port} (connection {self.name})") from None
        except aiohttp.ClientError as exc:
            raise ProbeError(Reason.PROTOCOL, f"{verb} {what} {where}: the connection "
                             f"failed ({type(exc).__name__})") from None
        if status == 404:
            return None
        if status == 410:
            raise _Gone()
        if status == 401:
            raise ProbeError(Reason.AUTH, "the API server rejected the credentials (401) "
                             f"of connection {self.name}")
        if status == 403:
            raise ProbeError(Reason.AUTH, f"forbidden: missing RBAC permission to {verb} "
                             f"{what} {where}")
        if not 200 <= status < 300:
            raise ProbeError(Reason.PROTOCOL, f"{verb} {what} {where}: the API server "
                             f"answered HTTP {status}")
        try:
            if len(body) >= _PARSE_IN_THREAD_BYTES:
                data = await asyncio.to_thread(decode, body)
            else:
                data = decode(body)
        except ValueError:
            raise ProbeError(Reason.PROTOCOL, f"{verb} {what} {where}: the answer is not "
                             "JSON") from None
        if not isinstance(data, dict):
            raise ProbeError(Reason.PROTOCOL, f"{verb} {what} {where}: unexpected answer")
        return data


def decode_page(resource: Resource, body: bytes) -> dict[str, Any]:
    """Decode one LIST page and slim its items: `{"items": [...], "continue": token}`.

    The cyclic garbage collector is paused meanwhile: decoding allocates hundreds of
    thousands of acyclic containers (freed by reference counting), and letting it run
    would rescan the whole snapshot many times over (half of the CPU on a 20,000-pod
    cluster).
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise ProbeError(Reason.PROTOCOL, f"list {resource.name}: the answer has no "
                             "items (not a Kubernetes API server?)")
        token = (data.get("metadata") or {}).get("continue") or None
        slim = slimmer(resource)
        items = [slim(item) for item in data["items"] if isinstance(item, dict)]
        return {"items": items, "continue": token}
    finally:
        if paused:
            gc.enable()


class _Gone(Exception):
    """HTTP 410: the continue token expired."""


async def _new_api_client(spec: KubernetesConnection) -> Any:
    """Build an ApiClient from in-cluster config or a kubeconfig; ProbeError(config)."""
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.config.config_exception import ConfigException

    configuration = k8s_client.Configuration()
    try:
        if spec.kubeconfig is None:
            if not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise ProbeError(Reason.CONFIG, "in-cluster config unavailable: the exporter "
                                 "is not running in a pod (KUBERNETES_SERVICE_HOST unset); "
                                 "set kubeconfig on the kubernetes connection")
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        else:
            if not spec.kubeconfig.is_file():
                raise ProbeError(Reason.CONFIG, f"kubeconfig {spec.kubeconfig} does not exist")
            await k8s_config.load_kube_config(config_file=str(spec.kubeconfig),
                                              context=spec.context,
                                              client_configuration=configuration,
                                              persist_config=False)
    except ConfigException as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ProbeError(Reason.CONFIG, f"Kubernetes client configuration invalid: "
                         f"{detail}") from None
    configuration.connection_pool_maxsize = spec.max_connections
    return k8s_client.ApiClient(configuration)
