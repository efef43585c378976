"""`WatchedCollection`: one collection kept current by LIST then WATCH (an informer).

The pattern client-go's informers and kube-state-metrics use: a paginated LIST gives
the objects and a `resourceVersion`; a WATCH from that version streams every change
(`ADDED`, `MODIFIED`, `DELETED`) and, with `allowWatchBookmarks`, `BOOKMARK` events that
only advance the version. When the stream ends (the server's `timeoutSeconds`, a broken
connection) the watch resumes from the last version seen; when the server no longer has
that version (`410 Gone`, as an HTTP status or an `ERROR` event) the collection is listed
again. Each event's object is decoded straight into its record (`records.py`: only what
the assertions read), metadata-only collections are watched as `PartialObjectMetadata`.

While the watch cannot be re-established, readers get the error (checks end as
`error` with its reason) instead of an ever older copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from exporter.model import ProbeError, Reason
from exporter.probes.kubernetes.records import Event, Record, Version, ident
from exporter.probes.kubernetes.resources import finish, record_type

if TYPE_CHECKING:
    from exporter.probes.kubernetes.snapshot import Cluster, Listing, ListKey

__all__ = ["WatchedCollection"]

log = logging.getLogger("readiness.kubernetes")

WATCH_METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 10.0


class Gone(Exception):
    """The server no longer has the requested resourceVersion (410): list again."""


class _NotWatchable(Exception):
    """The API refuses WATCH on this collection (403, 404, 405): LIST per cycle instead."""


class WatchedCollection:
    """The objects of one (resource, namespace, selectors) kept current by WATCH."""

    def __init__(self, cluster: Cluster, key: ListKey) -> None:
        self.cluster = cluster
        self.key = key
        resource, namespace, _, _, _ = key
        self.path = resource.path(namespace)
        self.what = resource.name
        self.where = f"in namespace {namespace}" if namespace else "cluster-wide"
        self._decode = msgspec.json.Decoder(record_type(resource)).decode
        self._objects: dict[str, dict[str, Any]] = {}
        """namespace -> name -> object (no key object per item)."""
        self.resource_version: str | None = None
        self.lists = 0
        """LISTs made (the first sync and every re-list after 410 Gone)."""
        self.watches = 0
        """WATCH requests made (each resume is one)."""
        self.events = 0
        self.bookmarks = 0
        self._changes = 0
        self._snapshot: Listing | None = None
        self._snapshot_at = -1
        self._served = True
        self._error: ProbeError | None = None
        self._synced: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle

    def start(self) -> None:
        """Start the LIST + WATCH loop (the first `listing()` waits for the LIST)."""
        loop = asyncio.get_running_loop()
        self._synced = loop.create_future()
        self._task = loop.create_task(self._run(), name=f"watch {self.what} {self.where}")

    async def stop(self) -> None:
        """Cancel the watch."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._synced is not None and not self._synced.done():
            self._synced.cancel()

    # -- reading

    async def listing(self) -> Listing:
        """The current objects (one shared list per change), or the watch's error."""
        from exporter.probes.kubernetes.snapshot import Listing

        assert self._synced is not None, "start() first"
        await asyncio.shield(self._synced)
        if self._error is not None:
            raise self._error
        if self._snapshot is None or self._snapshot_at != self._changes:
            items: list[Any] = [o for names in self._objects.values() for o in names.values()]
            self._snapshot = Listing(items, served=self._served,
                                     resource_version=self.resource_version)
            self._snapshot_at = self._changes
        return self._snapshot

    # -- the loop

    def _settle(self, error: ProbeError | None) -> None:
        self._error = error
        if self._synced is not None and not self._synced.done():
            self._synced.set_result(None)

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            try:
                if self.resource_version is None:
                    await self._relist()
                    if not self._served:
                        self.cluster.forget_watch(self.key)
                        return
                opened = asyncio.get_running_loop().time()
                await self._watch_once()
                if asyncio.get_running_loop().time() - opened < 1.0:
                    await asyncio.sleep(backoff)  # a stream that ends at once: no hot loop
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                else:
                    backoff = _BACKOFF_FIRST
            except Gone:
                self.resource_version = None
            except _NotWatchable as exc:
                log.warning("WATCH refused; listing every cycle instead",
                            extra={"resource": self.what, "status": exc.args[0]})
                self.cluster.forget_watch(self.key)
                return
            except asyncio.CancelledError:
                raise
            except ProbeError as exc:
                self._settle(exc)
                if exc.reason is Reason.AUTH and self.resource_version is None:
                    self.cluster.forget_watch(self.key)  # LIST refused: once per cycle
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            except Exception as exc:  # never let the loop die silently
                self._settle(ProbeError(Reason.INTERNAL, f"watch {self.what} {self.where}: "
                                        f"unexpected {type(exc).__name__}"))
                log.exception("watch failed", extra={"resource": self.what})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _relist(self) -> None:
        resource, namespace, labels, fields, metadata_only = self.key
        self.lists += 1
        listing = await self.cluster.list_pages(resource, namespace, labels, fields,
                                                 metadata_only)
        self._served = listing.served
        objects: dict[str, dict[str, Any]] = {}
        for item in listing.items:
            namespace, name = ident(item)
            objects.setdefault(namespace, {})[name] = item
        self._objects = objects
        self.resource_version = listing.resource_version
        self._changes += 1
        self._settle(None)

    async def _watch_once(self) -> None:
        """One WATCH request, applying its events until the server ends the stream."""
        _, _, labels, fields, metadata_only = self.key
        spec = self.cluster.spec
        query = [("watch", "1"), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(int(spec.watch_timeout)))]
        if self.resource_version:
            query.append(("resourceVersion", self.resource_version))
        if labels:
            query.append(("labelSelector", labels))
        if fields:
            query.append(("fieldSelector", fields))
        accept = WATCH_METADATA_ACCEPT if metadata_only else "application/json"
        client = await self.cluster.client()
        self.cluster.stats.add(self.path + "?watch")
        self.watches += 1
        timeout = float(spec.request_timeout)
        try:
            async with client.stream(self.path, query=query, accept=accept,
                                     connect_timeout=timeout,
                                     read_timeout=float(spec.watch_timeout) + timeout) as resp:
                if resp.status == 410:
                    raise Gone()
                if resp.status in (403, 404, 405):
                    raise _NotWatchable(resp.status)
                if not 200 <= resp.status < 300:
                    raise ProbeError(Reason.PROTOCOL, f"watch {self.what} {self.where}: the "
                                     f"API server answered HTTP {resp.status}")
                self._settle(None)
                await self._read_events(resp.content)
        except ProbeError as exc:
            raise ProbeError(exc.reason, f"watch {self.what} {self.where}: {exc.message}"
                             ) from None
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise ProbeError(Reason.CONNECT, f"watch {self.what} {self.where}: the stream "
                             f"broke ({type(exc).__name__})") from None

    async def _read_events(self, content: Any) -> None:
        import aiohttp

        pending = b""
        try:
            async for chunk in content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._apply(line)
        except aiohttp.ClientPayloadError:
            return  # the server cut the stream: resume from the last version seen
        except aiohttp.ClientError as exc:
            raise ProbeError(Reason.CONNECT, f"the stream broke ({type(exc).__name__})"
                             ) from None
        if pending.strip():
            self._apply(pending)

    @property
    def objects(self) -> dict[tuple[str, str], Record]:
        """(namespace, name) -> object, as kept now (tests)."""
        return {(ns, name): obj for ns, names in self._objects.items()
                for name, obj in names.items()}

    def _apply(self, line: bytes) -> None:
        try:
            event = _EVENT(line)
        except ValueError:
            raise ProbeError(Reason.PROTOCOL, f"watch {self.what} {self.where}: an event "
                             "is not JSON {type, object}") from None
        kind, raw = event.type, event.object
        if kind == "ERROR":
            code = _status(raw).code
            if code == 410:
                raise Gone()
            raise ProbeError(Reason.PROTOCOL, f"watch {self.what} {self.where}: the API "
                             f"server sent an error event (code {code})")
        if kind == "BOOKMARK":
            self.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            try:
                item = finish(self._decode(raw))
            except ValueError:
                raise ProbeError(Reason.PROTOCOL, f"watch {self.what} {self.where}: an "
                                 "event's object is not a Kubernetes object") from None
            namespace, name = ident(item)
            if kind == "DELETED":
                names = self._objects.get(namespace)
                if names is not None:
                    names.pop(name, None)
                    if not names:
                        del self._objects[namespace]
            else:
                self._objects.setdefault(namespace, {})[name] = item
            self._changes += 1
        self.events += 1
        try:
            version = _VERSION(raw).metadata
        except ValueError:
            version = None
        if version is not None and version.resourceVersion:
            self.resource_version = str(version.resourceVersion)


class _Status(msgspec.Struct, gc=False):
    code: int | None = None


_EVENT = msgspec.json.Decoder(Event).decode
_VERSION = msgspec.json.Decoder(Version).decode


def _status(raw: bytes) -> _Status:
    """An ERROR event's Status (its code), empty when it is not one."""
    try:
        return msgspec.json.decode(raw, type=_Status)
    except ValueError:
        return _Status()


