"""The cluster snapshot: one paginated LIST per resource kind, shared, kept fresh by WATCH.

Every check of a cycle asks the `Cluster` for what it needs; a LIST is made once per
(resource, namespace, selector) and kept for `snapshot_ttl` seconds, and concurrent
callers await the same in-flight request. In a running `serve` (`repeating`) every
collection is handed to a `WatchedCollection` (informer.py) on its first read: its LIST
is the first sync, then a WATCH from that LIST's resourceVersion keeps it current, so
every later cycle makes no LIST. A collection asked for again after its listing expired
is watched the same way when `repeating` was not set. A one-shot `check` reads each
collection once and never watches. Responses are read as
raw JSON (no model classes) and trimmed to what the assertions read, so the cost grows
with kinds and pages, never with the number of workloads.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from exporter.model import ProbeError, Reason
from exporter.probes.kubernetes.resources import Resource, decode_list
from exporter.transport.kubernetes import KUBERNETES, KubeClient, KubeOptions

if TYPE_CHECKING:
    from exporter.probes.kubernetes.connection import KubernetesConnection
    from exporter.probes.kubernetes.informer import WatchedCollection


METADATA_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_PARSE_IN_THREAD_BYTES = 256 * 1024

ClientSource = Callable[[], Awaitable[KubeClient]]
"""Gives the connection's transport client (the runtime's `ctx.client(KUBERNETES, ...)`)."""
ListKey = tuple[Resource, str | None, str | None, str | None, bool]
"""(resource, namespace, label selector, field selector, metadata only)."""


@dataclass(slots=True)
class Listing:
    """The items of one resource kind, or `served=False` when the API has no such kind."""

    items: list[dict[str, Any]]
    served: bool = True
    pages: int = 1
    derived: dict[str, Any] = field(default_factory=dict)
    resource_version: str | None = None


@dataclass(slots=True)
class _Entry:
    task: asyncio.Future[Any]
    expires: float = float("inf")
    waiters: int = 0
    """Callers awaiting `task`: when the last one is cancelled (its check timed out), the
    request is cancelled too, so a later run starts afresh instead of joining it."""


@dataclass(slots=True)
class RequestStats:
    """API requests made through this client (for tests, the bench and a metric)."""

    total: int = 0
    by_path: dict[str, int] = field(default_factory=dict)

    def add(self, path: str) -> None:
        self.total += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1


class _Standalone:
    """What the transport may use when a `Cluster` is used outside a runtime (bench)."""

    @property
    def http_session(self) -> Any:
        raise RuntimeError("the Kubernetes transport uses its own ApiClient session")

    async def run_blocking(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)

    async def ssl_context(self, options: Any, option_path: str) -> Any:
        raise RuntimeError("the Kubernetes transport takes TLS from the kubeconfig")


def kube_options(spec: KubernetesConnection, name: str) -> KubeOptions:
    """The transport options of a `kind: kubernetes` connection named `name`."""
    return KubeOptions(kubeconfig=spec.kubeconfig, context=spec.context,
                       max_connections=spec.max_connections,
                       option_path=f"connections.{name}.kubeconfig")


class Cluster:
    """The snapshot cache of one `kind: kubernetes` connection (the connection object).

    Its API client comes from the runtime's transport registry once `bind` gave it a
    source; a `Cluster` used on its own (tests, the bench) opens and closes its own.
    """

    def __init__(self, spec: KubernetesConnection, name: str = "kubernetes",
                 clients: ClientSource | None = None) -> None:
        self.spec = spec
        self.name = name
        self.stats = RequestStats()
        self._source = clients
        self._own: KubeClient | None = None
        self._opening = asyncio.Lock()
        self._cache: dict[tuple[Any, ...], _Entry] = {}
        self._watched: dict[ListKey, WatchedCollection] = {}
        self._pages = asyncio.Semaphore(spec.max_connections)
        self.repeating = False
        """Set by a running `serve` (`ctx.repeats`): every collection is watched from its
        first read. Otherwise only a collection read again after its listing expired."""

    @property
    def options(self) -> KubeOptions:
        """The transport options of this connection."""
        return kube_options(self.spec, self.name)

    @property
    def bound(self) -> bool:
        """Whether the client comes from a runtime."""
        return self._source is not None

    def bind(self, name: str, clients: ClientSource) -> None:
        """Take the API client from the runtime (`clients`) under connection `name`."""
        self.name = name
        self._source = clients

    # -- client

    async def client(self) -> KubeClient:
        """The connection's transport client; ProbeError(config) when it cannot be made."""
        if self._source is not None:
            return await self._source()
        async with self._opening:
            if self._own is not None and KUBERNETES.is_stale(self._own):
                await KUBERNETES.close(self._own)
                self._own = None
            if self._own is None:
                self._own = await KUBERNETES.open(self.options, _Standalone())
            return self._own

    async def close(self) -> None:
        """Stop the watches, forget the cache and close an own client."""
        watched, self._watched = list(self._watched.values()), {}
        for collection in watched:
            await collection.stop()
        self._cache.clear()
        if self._own is not None:
            own, self._own = self._own, None
            await KUBERNETES.close(own)

    def invalidate(self) -> None:
        """Drop every cached listing (the next call lists again)."""
        self._cache.clear()

    # -- cache

    async def _shared(self, key: tuple[Any, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._cache.get(key)
        if entry is None or (entry.task.done() and entry.expires <= loop.time()):
            task: asyncio.Future[Any] = asyncio.ensure_future(make())
            entry = _Entry(task)
            self._cache[key] = entry
            task.add_done_callback(functools.partial(self._settled, key, entry))
        entry.waiters += 1
        try:
            return await asyncio.shield(entry.task)
        finally:
            entry.waiters -= 1
            if not entry.waiters and not entry.task.done():
                # Every caller gave up (their checks timed out): stop the request, and
                # forget it at once, so nobody joins it while it unwinds.
                entry.task.cancel()
                if self._cache.get(key) is entry:
                    del self._cache[key]

    def _settled(self, key: tuple[Any, ...], entry: _Entry, task: asyncio.Future[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            if self._cache.get(key) is entry:
                del self._cache[key]
        else:
            entry.expires = asyncio.get_running_loop().time() + self.spec.snapshot_ttl

    def _expired(self, key: tuple[Any, ...]) -> bool:
        """Whether `key` was listed before and its listing has expired (a later cycle)."""
        entry = self._cache.get(key)
        if entry is None or not entry.task.done():
            return False
        return entry.expires <= asyncio.get_running_loop().time()

    def _watch(self, key: ListKey) -> WatchedCollection:
        from exporter.probes.kubernetes.informer import WatchedCollection

        watched = WatchedCollection(self, key)
        self._watched[key] = watched
        self._cache.pop(("list", *key), None)
        watched.start()
        return watched

    def watched(self) -> list[WatchedCollection]:
        """The collections kept current by WATCH (tests, the bench)."""
        return list(self._watched.values())

    def forget_watch(self, key: ListKey) -> None:
        """Stop treating `key` as watched (the API refused WATCH: LIST per cycle again)."""
        self._watched.pop(key, None)

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
            return await self.list_pages(resource, namespace, label_selector,
                                          field_selector, metadata_only)
        list_key: ListKey = (resource, namespace, label_selector, field_selector,
                             metadata_only)
        watched = self._watched.get(list_key)
        if watched is None and self.spec.watch and (self.repeating or self._expired(key)):
            watched = self._watch(list_key)
        if watched is not None:
            return await watched.listing()

        async def make() -> Listing:
            return await self.list_pages(resource, namespace, label_selector,
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

    async def list_pages(self, resource: Resource, namespace: str | None,
                          label_selector: str | None, field_selector: str | None,
                          metadata_only: bool) -> Listing:
        """Every page of one collection (`continue` until the end), with the cyclic
        collector paused from the first page to the last (`collector_paused`)."""
        with collector_paused:
            return await self._list_pages(resource, namespace, label_selector,
                                          field_selector, metadata_only)

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
                    version = data["resourceVersion"]
                    del data
                    pages += 1
                    if not token:
                        return Listing(items, pages=pages, resource_version=version)
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
        client = await self.client()
        where = f"in namespace {namespace}" if namespace else "cluster-wide"
        self.stats.add(path)
        timeout = float(self.spec.request_timeout)
        try:
            answer = await client.request(path, query=query,
                                          accept=accept or "application/json", budget=timeout)
        except ProbeError as exc:
            if exc.reason is Reason.TIMEOUT:
                raise ProbeError(Reason.TIMEOUT, f"{verb} {what} {where}: the API server "
                                 f"{client.target} did not answer within {timeout:g}s"
                                 ) from None
            raise ProbeError(exc.reason, f"{exc.message} (connection {self.name})") from None
        status, body = answer.status, answer.body
        if status == 404:
            return None
        if status == 410:
            raise _Gone()
        check_status(status, verb, what, where)
        return await decode_object(body, verb, what, where, decode)


async def decode_object(body: bytes, verb: str, what: str, where: str,
                        decode: Callable[[bytes], Any] = json.loads) -> dict[str, Any]:
    """The JSON object an API answer holds (a large one parsed in a thread);
    ProbeError(protocol) when it is not JSON or not an object."""
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


def check_status(status: int, verb: str, what: str, where: str) -> None:
    """ProbeError for an answer that is neither 2xx nor handled by the caller."""
    if status == 403:
        raise ProbeError(Reason.AUTH, f"forbidden: missing RBAC permission to {verb} "
                         f"{what} {where}")
    if not 200 <= status < 300:
        raise ProbeError(Reason.PROTOCOL, f"{verb} {what} {where}: the API server "
                         f"answered HTTP {status}")


class _CollectorPause:
    """Pauses the cyclic garbage collector while any paginated LIST is being read (from
    its first page to its last, pages decoded in worker threads included: the pause is
    process-wide), and lets it run again when the last one ends.

    A LIST allocates hundreds of thousands of long-lived, acyclic containers (label maps,
    resources, item lists): with the collector running, every 25 % of growth of the
    long-lived objects starts a full collection of all of them (10 in the first sync of
    50,000 workloads). Paused, their allocation is collected once, after the LIST.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if not self._holders:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if not self._holders and self._was_enabled:
                gc.enable()


collector_paused = _CollectorPause()


def decode_page(resource: Resource, body: bytes) -> dict[str, Any]:
    """Decode one LIST page straight into records: `{"items": [...], "continue": token,
    "resourceVersion": version}`.

    The fields no assertion reads are skipped by the decoder, never built. `list_pages`,
    its caller, holds `collector_paused` over the whole LIST, this page's decoding
    included.
    """
    try:
        page = decode_list(resource, body)
    except msgspec.ValidationError as exc:
        raise ProbeError(Reason.PROTOCOL, f"list {resource.name}: the answer is not a "
                         f"Kubernetes list ({exc})") from None
    if page.items is None:
        raise ProbeError(Reason.PROTOCOL, f"list {resource.name}: the answer has no "
                         "items (not a Kubernetes API server?)")
    list_meta = page.metadata
    return {"items": page.items,
            "continue": (list_meta.continue_ or None) if list_meta else None,
            "resourceVersion": list_meta.resourceVersion if list_meta else None}


class _Gone(Exception):
    """HTTP 410: the continue token expired."""
