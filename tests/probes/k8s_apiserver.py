"""A small fake Kubernetes API server (aiohttp) for the kubernetes probe tests and bench.

It answers the REST paths the real client uses (`/version`, `/api/v1/namespaces`,
`/apis/apps/v1/deployments`, `/apis/apps/v1/namespaces/{ns}/deployments`, single
objects, API group discovery) from objects shaped like `kubectl get -o json` output,
with `limit`/`continue` pagination, `labelSelector` (equality and existence) and
`fieldSelector` (equality) filtering, PartialObjectMetadataList answers, and injected
403, 500 and slow responses. Every request is recorded so tests can count them.
Collections can be watched (`?watch=1`): a stream of JSON lines `{type, object}` replaying
the changes made with `put`/`delete` after the requested `resourceVersion`, then live ones,
`BOOKMARK` events every `bookmark_interval` seconds with `allowWatchBookmarks=true`, the
stream ended after `timeoutSeconds` (or by `break_watches`), and an `ERROR` event with a
410 Status when the version is older than the last `compact()` (or `expire_watches`). `token_check` accepts
tokens besides `token` (tokens that expire, for the credential refresh tests).
It also stores coordination.k8s.io/v1 Leases (GET/POST/PUT, one namespace at a time)
with resourceVersion conflicts (a PUT with a stale resourceVersion answers 409), and
`forbidden_lease_verbs` (get, create, update) answer 403.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "k8s_fixtures"

PLURALS = {
    "ConfigMap": "configmaps",
    "Namespace": "namespaces", "Pod": "pods", "Service": "services", "Secret": "secrets",
    "ResourceQuota": "resourcequotas", "Deployment": "deployments",
    "StatefulSet": "statefulsets", "DaemonSet": "daemonsets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets", "NetworkPolicy": "networkpolicies",
    "Role": "roles", "RoleBinding": "rolebindings", "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings", "PeerAuthentication": "peerauthentications",
    "DestinationRule": "destinationrules", "ExternalSecret": "externalsecrets",
    "Ingress": "ingresses",
}
CLUSTER_SCOPED = {"namespaces", "clusterroles", "clusterrolebindings"}
METADATA_AS = "as=PartialObjectMetadataList"
BUILTIN_VERSIONS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1",
                    "rbac.authorization.k8s.io/v1"}


@dataclass
class Recorded:
    """One request the server answered."""

    path: str
    query: dict[str, str]
    accept: str
    status: int


@dataclass
class FakeApiServer:
    """Serves objects by (apiVersion, plural); configure failures with the sets below."""

    version: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    forbidden: set[tuple[str, str | None]] = field(default_factory=set)
    forbidden_get: set[str] = field(default_factory=set)
    fail_500: set[str] = field(default_factory=set)
    slow: dict[str, float] = field(default_factory=dict)
    unserved: set[str] = field(default_factory=set)
    expire_continue: int = 0
    # (namespace, pod, container) -> [(written at, line)]: served by `pod_log` below
    pod_logs: dict[tuple[str, str, str], list[tuple[float, str]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    forbidden_lease_verbs: set[str] = field(default_factory=set)
    token_check: Callable[[str], bool] | None = None
    bookmark_interval: float = 0.5
    forbidden_watch: set[str] = field(default_factory=set)
    """Plurals whose WATCH answers 403 (RBAC with list but not watch)."""
    expire_watches: int = 0
    """The next N watch requests that give a resourceVersion answer 410 Gone."""
    _resource_version: int = 1000
    _events: list[tuple[int, str, tuple[str, str], dict[str, Any]]] = field(
        default_factory=list)
    _oldest_rv: int = 0
    _watchers: set[asyncio.Queue[tuple[int, str, tuple[str, str], dict[str, Any]] | None]] = \
        field(default_factory=set)
    _store: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    _by_ns: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = field(
        default_factory=dict)
    _kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    _json: dict[int, str] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0

    # -- data

    def add(self, objects: Iterable[dict[str, Any]]) -> None:
        """Add objects (each with apiVersion and kind), as `kubectl get -o json` shows them."""
        for obj in objects:
            api_version, kind = obj["apiVersion"], obj["kind"]
            plural = PLURALS[kind]
            key = (api_version, plural)
            self._kinds[key] = kind
            item = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
            self._store.setdefault(key, []).append(item)
            namespace = item.get("metadata", {}).get("namespace", "")
            self._by_ns.setdefault(key, defaultdict(list))[namespace].append(item)

    def load_fixtures(self, directory: Path = FIXTURES) -> None:
        """Load every `<plural>.json` List and `version.json` from the fixtures directory."""
        for path in sorted(directory.glob("*.json")):
            data = json.loads(path.read_text())
            if path.stem == "version":
                self.version = data
            else:
                self.add(data["items"])

    def remove(self, kind: str, namespace: str | None, name: str) -> None:
        for key, items in self._store.items():
            if self._kinds.get(key) != kind:
                continue
            keep = [i for i in items if not (i["metadata"]["name"] == name and
                    i["metadata"].get("namespace") in (namespace, None))]
            self._store[key] = keep
            index: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for item in keep:
                index[item["metadata"].get("namespace", "")].append(item)
            self._by_ns[key] = index

    # -- changes seen by watches

    def put(self, obj: dict[str, Any]) -> int:
        """Create or replace an object (matched by namespace and name); emits ADDED or
        MODIFIED to watches. Returns its new resourceVersion."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        key = (api_version, PLURALS[kind])
        self._kinds[key] = kind
        item = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        self._resource_version += 1
        item.setdefault("metadata", {})["resourceVersion"] = str(self._resource_version)
        namespace = item["metadata"].get("namespace", "")
        pool = self._by_ns.setdefault(key, defaultdict(list))[namespace]
        items = self._store.setdefault(key, [])
        old = next((i for i in pool if i["metadata"]["name"] == item["metadata"]["name"]), None)
        if old is None:
            pool.append(item)
            items.append(item)
            event = "ADDED"
        else:
            self._json.pop(id(old), None)
            pool[pool.index(old)] = item
            items[next(n for n, i in enumerate(items) if i is old)] = item
            event = "MODIFIED"
        self._emit(event, key, item)
        return self._resource_version

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        """Delete an object; emits DELETED to watches."""
        for key in [k for k, v in self._kinds.items() if v == kind]:
            pool = self._by_ns.get(key, {}).get(namespace or "", [])
            old = next((i for i in pool if i["metadata"]["name"] == name), None)
            if old is None:
                continue
            self.remove(kind, namespace, name)
            self._json.pop(id(old), None)
            self._resource_version += 1
            gone = {**old, "metadata": {**old["metadata"],
                                        "resourceVersion": str(self._resource_version)}}
            self._emit("DELETED", key, gone)

    def _emit(self, event: str, key: tuple[str, str], item: dict[str, Any]) -> None:
        entry = (self._resource_version, event, key, item)
        self._events.append(entry)
        for queue in self._watchers:
            queue.put_nowait(entry)

    def compact(self) -> None:
        """Forget the change history (as etcd compaction): older versions answer 410."""
        self._events.clear()
        self._oldest_rv = self._resource_version

    def break_watches(self) -> None:
        """End every open watch stream (the client must resume)."""
        for queue in self._watchers:
            queue.put_nowait(None)

    def open_watches(self) -> int:
        """Watch streams open right now."""
        return len(self._watchers)

    def watch_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.query.get("watch") in ("1", "true")]

    def list_requests(self) -> list[Recorded]:
        """LIST requests (pages): collection reads that are not watches."""
        return [r for r in self.requests if "limit" in r.query and "watch" not in r.query]

    def warm(self) -> None:
        """Serialise every stored item now, so serving costs no encoding (bench)."""
        for items in self._store.values():
            for item in items:
                self._encoded(item)

    def count(self, fragment: str = "") -> int:
        """Requests whose path contains `fragment`."""
        return sum(1 for r in self.requests if fragment in r.path)

    # -- HTTP

    async def start(self, port: int, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on 127.0.0.1:port (HTTPS with `ssl_context`); returns the base URL."""
        app = web.Application()
        app.router.add_get(POD_LOG_ROUTE, PodLogRoute(self).handle)
        app.router.add_get("/{tail:.*}", self._handle)
        app.router.add_post("/{tail:.*}", self._handle)
        app.router.add_put("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ssl_context).start()
        self.port = port
        scheme = "https" if ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.break_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}
        return web.json_response(body, status=code)

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.token}":
            return True
        return (self.token_check is not None and header.startswith("Bearer ")
                and self.token_check(header[len("Bearer "):]))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("1", "true") and self._authorized(request):
            self.requests.append(Recorded(request.path, dict(request.query),
                                          request.headers.get("Accept", ""), 200))
            return await self._answer(request)
        response = await self._answer(request)
        self.requests.append(Recorded(request.path, dict(request.query),
                                      request.headers.get("Accept", ""), response.status))
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._status(401, "Unauthorized", "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        if parts[:4] == ["apis", "coordination.k8s.io", "v1", "namespaces"] and \
                len(parts) in (6, 7) and parts[5] == "leases":
            return await self._lease(request, parts[4], parts[6] if len(parts) == 7 else None)
        if request.method != "GET":
            return self._status(405, "MethodNotAllowed", "the server does not allow this "
                                "method on the requested resource")
        if parts == ["version"]:
            return web.json_response(self.version)
        if len(parts) == 2 and parts[0] == "apis":
            groups = {key[0].split("/")[0] for key in self._store
                      if "/" in key[0] and key[1] not in self.unserved}
            if parts[1] in groups:
                return web.json_response({"kind": "APIGroup", "apiVersion": "v1",
                                          "name": parts[1], "versions": []})
            return self._status(404, "NotFound", "the server could not find the resource")
        if parts[:1] == ["api"] and len(parts) >= 2:
            api_version, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return self._status(404, "NotFound", "the server could not find the resource")
        namespace: str | None = None
        name: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, plural = rest[1], rest[2]
            name = rest[3] if len(rest) > 3 else None
        elif len(rest) == 2 and rest[0] == "namespaces":
            plural, name = "namespaces", rest[1]
        elif len(rest) in (1, 2):
            plural = rest[0]
            name = rest[1] if len(rest) == 2 else None
        else:
            return self._status(404, "NotFound", "the server could not find the resource")
        group = api_version.split("/")[0] if "/" in api_version else ""
        resource = f"{plural}.{group}" if group else plural
        if plural in self.slow:
            await asyncio.sleep(self.slow[plural])
        if plural in self.fail_500:
            return self._status(500, "InternalError", "etcdserver: request timed out")
        denied = plural in self.forbidden_get if name else (
            (plural, namespace) in self.forbidden or (plural, "*") in self.forbidden)
        if denied:
            verb = "get" if name else "list"
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            return self._status(403, "Forbidden", f'{resource} is forbidden: User '
                                f'"system:serviceaccount:readiness:exporter" cannot {verb} '
                                f'resource "{plural}" in API group "{group}" {scope}')
        key = (api_version, plural)
        builtin = api_version in BUILTIN_VERSIONS and plural in PLURALS.values()
        if plural in self.unserved or not (builtin or key in self._store):
            return self._status(404, "NotFound", "the server could not find the resource")
        metadata_only = "as=PartialObjectMetadata" in request.headers.get("Accept", "")
        if name is None and request.query.get("watch") in ("1", "true"):
            if plural in self.forbidden_watch:
                return self._status(403, "Forbidden", f'{resource} is forbidden: cannot '
                                    f'watch resource "{plural}" in API group "{group}"')
            return await self._watch(request, key, namespace, metadata_only)
        if name is not None:
            pool = self._by_ns.get(key, {}).get(namespace or "", [])
            for item in pool:
                if item["metadata"]["name"] == name:
                    return web.json_response(self._shape(item, key, metadata_only, False))
            return self._status(404, "NotFound", f'{resource} "{name}" not found')
        if namespace is None:
            items = self._store.get(key, [])
        else:
            items = self._by_ns.get(key, {}).get(namespace, [])
        items = self._filter(items, request.query.get("labelSelector"),
                             request.query.get("fieldSelector"))
        start = 0
        token = request.query.get("continue")
        if token and self.expire_continue > 0:
            self.expire_continue -= 1
            return self._status(410, "Expired", "The provided continue parameter is too old "
                                "to display a consistent list result.")
        if token:
            start = json.loads(base64.b64decode(token))["start"]
        limit = int(request.query.get("limit") or 0)
        end = len(items) if limit <= 0 else min(len(items), start + limit)
        page = items[start:end]
        list_meta: dict[str, Any] = {"resourceVersion": str(self._resource_version)}
        if end < len(items):
            list_meta["continue"] = base64.b64encode(
                json.dumps({"start": end, "rv": 424242}).encode()).decode()
            list_meta["remainingItemCount"] = len(items) - end
        kind = self._kinds.get(key, plural.capitalize())
        head = {"kind": "PartialObjectMetadataList" if metadata_only else f"{kind}List",
                "apiVersion": "meta.k8s.io/v1" if metadata_only else api_version,
                "metadata": list_meta}
        if metadata_only:
            encoded = [json.dumps(self._shape(item, key, True, True)) for item in page]
        else:
            encoded = [self._encoded(item) for item in page]
        body = json.dumps(head)[:-1] + ', "items": [' + ",".join(encoded) + "]}"
        return web.Response(body=body.encode(), content_type="application/json")

    async def _watch(self, request: web.Request, key: tuple[str, str], namespace: str | None,
                     metadata_only: bool) -> web.StreamResponse:
        """Stream changes after `resourceVersion` as JSON lines, then live ones."""
        since = int(request.query.get("resourceVersion") or 0)
        labels, fields = request.query.get("labelSelector"), request.query.get("fieldSelector")
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        deadline = time.monotonic() + float(request.query.get("timeoutSeconds") or 1800)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        def wanted(entry_key: tuple[str, str], item: dict[str, Any]) -> bool:
            if entry_key != key:
                return False
            if namespace is not None and item["metadata"].get("namespace") != namespace:
                return False
            return bool(self._filter([item], labels, fields))

        async def send(event: str, item: dict[str, Any]) -> None:
            obj = self._shape(item, key, metadata_only, False)
            await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")

        expired = since and (since < self._oldest_rv or self.expire_watches > 0)
        if expired:
            self.expire_watches = max(0, self.expire_watches - 1)
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": "Expired", "code": 410,
                      "message": f"too old resource version: {since} ({self._oldest_rv})"}
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode()
                                 + b"\n")
            return response
        queue: asyncio.Queue[tuple[int, str, tuple[str, str], dict[str, Any]] | None] = \
            asyncio.Queue()
        self._watchers.add(queue)
        try:
            if not since:  # no version: the current objects as ADDED first
                items = self._store.get(key, []) if namespace is None else \
                    self._by_ns.get(key, {}).get(namespace, [])
                for item in self._filter(items, labels, fields):
                    await send("ADDED", item)
            for rv, event, entry_key, item in list(self._events):
                if rv > since and wanted(entry_key, item):
                    await send(event, item)
            while (remaining := deadline - time.monotonic()) > 0:
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    entry = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks:
                        mark = {"kind": self._kinds.get(key, ""), "apiVersion": key[0],
                                "metadata": {"resourceVersion": str(self._resource_version)}}
                        await response.write(json.dumps({"type": "BOOKMARK", "object": mark})
                                             .encode() + b"\n")
                    continue
                if entry is None:
                    break
                _, event, entry_key, item = entry
                if wanted(entry_key, item):
                    await send(event, item)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(queue)
        return response

    async def _lease(self, request: web.Request, namespace: str,
                     name: str | None) -> web.Response:
        """GET/PUT one Lease, POST a new one; PUT needs the current resourceVersion."""
        verb = {"GET": "get", "POST": "create", "PUT": "update"}.get(request.method)
        if verb is None or (verb == "create") != (name is None):
            return self._status(405, "MethodNotAllowed", "method not allowed")
        if verb in self.forbidden_lease_verbs:
            return self._status(403, "Forbidden", f'leases.coordination.k8s.io is forbidden: '
                                f'User "system:serviceaccount:readiness:exporter" cannot '
                                f'{verb} resource "leases" in API group "coordination.k8s.io" '
                                f'in the namespace "{namespace}"')
        if verb == "get":
            found = self.leases.get((namespace, name or ""))
            if found is None:
                return self._status(404, "NotFound",
                                    f'leases.coordination.k8s.io "{name}" not found')
            return web.json_response(found)
        body = await request.json()
        meta = body.setdefault("metadata", {})
        name = name or meta.get("name", "")
        current = self.leases.get((namespace, name))
        if verb == "create" and current is not None:
            return self._status(409, "AlreadyExists",
                                f'leases.coordination.k8s.io "{name}" already exists')
        if verb == "update":
            if current is None:
                return self._status(404, "NotFound",
                                    f'leases.coordination.k8s.io "{name}" not found')
            if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", f'Operation cannot be fulfilled on '
                                    f'leases.coordination.k8s.io "{name}": the object has been '
                                    "modified; please apply your changes to the latest "
                                    "version and try again")
        self._resource_version += 1
        meta.update(name=name, namespace=namespace,
                    resourceVersion=str(self._resource_version))
        body.update(apiVersion="coordination.k8s.io/v1", kind="Lease")
        self.leases[(namespace, name)] = body
        return web.json_response(body, status=201 if verb == "create" else 200)

    def _encoded(self, item: dict[str, Any]) -> str:
        """An item's JSON, serialised once (the bench serves 20,000 pods many times)."""
        text = self._json.get(id(item))
        if text is None:
            text = self._json[id(item)] = json.dumps(item, separators=(",", ":"))
        return text

    def _shape(self, item: dict[str, Any], key: tuple[str, str], metadata_only: bool,
               in_list: bool) -> dict[str, Any]:
        if metadata_only:
            return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"]}
        if in_list:
            return item
        return {"apiVersion": key[0], "kind": self._kinds.get(key, ""), **item}

    @staticmethod
    def _filter(items: list[dict[str, Any]], label_selector: str | None,
                field_selector: str | None) -> list[dict[str, Any]]:
        if label_selector:
            for term in label_selector.split(","):
                if "!=" in term:
                    k, v = term.split("!=", 1)
                    items = [i for i in items
                             if (i["metadata"].get("labels") or {}).get(k) != v]
                elif "=" in term:
                    k, v = term.replace("==", "=").split("=", 1)
                    items = [i for i in items
                             if (i["metadata"].get("labels") or {}).get(k) == v]
                else:
                    items = [i for i in items if term in (i["metadata"].get("labels") or {})]
        if field_selector:
            for term in field_selector.split(","):
                path, value = term.split("=", 1)
                items = [i for i in items if _field(i, path) == value]
        return items


def _field(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def write_kubeconfig(path: Path, server: str, token: str, context: str = "test",
                     ca_pem: bytes | None = None) -> Path:
    """A kubeconfig with one cluster, one token user and context `context`."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    data: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": cluster}],
        "users": [{"name": "exporter", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "fake", "user": "exporter"}},
                     {"name": "other", "context": {"cluster": "fake", "user": "nobody"}}],
    }
    data["users"].append({"name": "nobody", "user": {"token": "wrong-token"}})
    path.write_text(json.dumps(data))
    return path


# -- pod logs (`GET /api/v1/namespaces/{ns}/pods/{name}/log`), for the `logs` probe

POD_LOG_ROUTE = "/api/v1/namespaces/{namespace}/pods/{name}/log"


def _rfc3339nano(epoch: float) -> str:
    """`2026-11-28T10:00:00.123456789Z`, as the kubelet writes `timestamps=true`."""
    import datetime as dt  # local: keeps this appended section self-contained

    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


@dataclass
class PodLogRoute:
    """Serves a pod's log from `server.pod_logs`, with the API server's query semantics:
    `container` (required when the pod has several), `tailLines` (last N lines),
    `timestamps=true` (RFC3339Nano prefix) and `limitBytes` (the first N bytes of the
    answer, so the last line may be cut). 403 when `"pods/log"` is in `forbidden_get`;
    `slow["pods/log"]` delays the answer."""

    server: FakeApiServer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        response = await _pod_log_answer(self.server, request, namespace, name)
        self.server.requests.append(Recorded(request.path, dict(request.query),
                                             request.headers.get("Accept", ""),
                                             response.status))
        return response


async def _pod_log_answer(server: FakeApiServer, request: web.Request, namespace: str,
                          name: str) -> web.StreamResponse:
    if not server._authorized(request):
        return server._status(401, "Unauthorized", "Unauthorized")
    if "pods/log" in server.slow:
        await asyncio.sleep(server.slow["pods/log"])
    if "pods/log" in server.forbidden_get:
        return server._status(403, "Forbidden", f'pods "{name}" is forbidden: User '
                              '"system:serviceaccount:readiness:exporter" cannot get '
                              f'resource "pods/log" in API group "" in the namespace '
                              f'"{namespace}"')
    pods = server._by_ns.get(("v1", "pods"), {}).get(namespace, [])
    pod = next((p for p in pods if p["metadata"]["name"] == name), None)
    if pod is None:
        return server._status(404, "NotFound", f'pods "{name}" not found')
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers", [])]
    container = request.query.get("container")
    if container is None:
        if len(containers) != 1:
            return server._status(400, "BadRequest", "a container name must be specified "
                                  f"for pod {name}, choose one of: [{' '.join(containers)}]")
        container = containers[0]
    elif container not in containers:
        return server._status(400, "BadRequest",
                              f"container {container} is not valid for pod {name}")
    entries = server.pod_logs.get((namespace, name, container), [])
    tail = request.query.get("tailLines")
    if tail is not None:
        entries = entries[-int(tail):] if int(tail) > 0 else []
    stamped = request.query.get("timestamps") == "true"
    body = "".join((f"{_rfc3339nano(at)} " if stamped else "") + line + "\n"
                   for at, line in entries).encode()
    limit = request.query.get("limitBytes")
    if limit is not None:
        body = body[:int(limit)]
    return web.Response(body=body, content_type="text/plain")
