"""The Kubernetes transport: one kubernetes-asyncio ApiClient per kubeconfig (or in-cluster
configuration) and runtime, with credentials that are refreshed when they expire.

`await ctx.client(KUBERNETES, KubeOptions(kubeconfig=..., context=...))` gives a
`KubeClient`. Its `request` sends one GET/PUT/POST with the current bearer token and
reads the answer; `stream` opens a long request (a WATCH) whose body is read line by
line. Every failure becomes a `ProbeError` through `KUBE_ERRORS`:

- a missing, unreadable, empty or malformed kubeconfig (or an unknown context, an
  exec plugin that cannot run) is `error/config` naming the option;
- a token that the API server refuses (401) is fetched again once (the kubeconfig is
  re-read, the exec plugin run again, the token file read again) and the request
  retried; only a second 401 is `error/auth`;
- tokens with an expiry (exec plugins' `expirationTimestamp`) are refreshed shortly
  before it, token files (projected service account tokens) are re-read every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import aiohttp
import yaml

from exporter.model import ProbeError, Reason
from exporter.transport.base import Transport, TransportRuntime
from exporter.transport.credentials import Expiring, RefreshingCredential
from exporter.transport.errors import CredentialsRejected, ErrorRow, ErrorTable
from exporter.transport.http import HTTP_ERRORS

__all__ = [
    "KUBERNETES",
    "KUBE_ERRORS",
    "KubeClient",
    "KubeOptions",
    "KubeResponse",
    "KubernetesTransport",
    "yaml_line",
]

TOKEN_FILE_REREAD = 60.0
"""Seconds a token read from a file is used before the file is read again (as client-go)."""
IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class _HasStatus(Protocol):
    @property
    def status(self) -> int: ...


_Answer = TypeVar("_Answer", bound=_HasStatus)


class KubeconfigInvalid(Exception):
    """The kubeconfig cannot be used; the argument is a secret-free detail."""


KUBE_ERRORS = HTTP_ERRORS.extend([
    ErrorRow(KubeconfigInvalid, Reason.CONFIG, "{detail}",
             lambda exc: str(exc.args[0]) if exc.args else "kubeconfig invalid"),
])
"""aiohttp's rows plus the kubeconfig's."""


@dataclass(frozen=True, slots=True)
class KubeOptions:
    """What selects a Kubernetes client: a kubeconfig and context, or in-cluster config."""

    kubeconfig: Path | None = None
    context: str | None = None
    max_connections: int = 4
    option_path: str = "connections.kubernetes.kubeconfig"
    """Where `kubeconfig` is configured (named in configuration errors)."""
    in_cluster_dir: Path = IN_CLUSTER_DIR


@dataclass(frozen=True, slots=True)
class KubeResponse:
    """An answer read in full."""

    status: int
    body: bytes


@dataclass(slots=True)
class _Loaded:
    """One reading of the configuration: the client settings and the credential."""

    configuration: Any
    credential: Expiring[str | None]


@dataclass(slots=True)
class KubeClient:
    """A typed handle: the ApiClients, their refreshing credential and their target.

    `api` sends requests through a pool of `max_connections`; `stream_api` holds the long
    requests (WATCH, logs), one connection each, so that open watches never take the
    connections requests need.
    """

    api: Any
    stream_api: Any
    credential: RefreshingCredential[str | None]
    target: str
    options: KubeOptions
    fingerprint: float | None
    requests: int = 0
    streams: set[Any] = field(default_factory=set)

    def _headers(self, token: str | None, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if token:
            headers["Authorization"] = token
            # requests made with the generated API classes (Leases) use the same token
            self.api.configuration.api_key["BearerToken"] = token
        return headers

    async def _authorized(self, send: Callable[[str | None], Awaitable[_Answer]],
                          budget: float,
                          discard: Callable[[_Answer], None] = lambda _: None) -> _Answer:
        """`send(token)` within `budget`; a 401 (its answer `discard`ed) refreshes the
        credential and sends once more, a second 401 is `error/auth`."""
        for attempt in (1, 2):
            token = await self.credential.get()
            self.requests += 1
            try:
                async with asyncio.timeout(budget):
                    answer = await send(token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise KUBE_ERRORS.classify(exc, self.target, budget) from None
            if answer.status != 401:
                return answer
            discard(answer)
            self.credential.invalidate()
            if attempt == 2:
                break
        raise KUBE_ERRORS.classify(CredentialsRejected("HTTP 401"), self.target)

    async def request(self, path: str, *, query: Sequence[tuple[str, str]] = (),
                      accept: str = "application/json", budget: float, method: str = "GET",
                      body: Any = None) -> KubeResponse:
        """Send one request and read its answer; a 401 refreshes the credential once."""
        async def send(token: str | None) -> KubeResponse:
            response = await self.api.call_api(
                path, method, query_params=list(query),
                header_params=self._headers(token, accept), body=body,
                _preload_content=False, _request_timeout=budget)
            try:
                return KubeResponse(response.status, await response.read())
            finally:
                response.release()
        return await self._authorized(send, budget)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, *, query: Sequence[tuple[str, str]] = (),
                     accept: str = "application/json", connect_timeout: float,
                     read_timeout: float) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long request (WATCH): yields the response, whose body the caller reads line
        by line. A 401 refreshes the credential once; other statuses are the caller's."""
        timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)

        async def send(token: str | None) -> aiohttp.ClientResponse:
            response: aiohttp.ClientResponse = await self.stream_api.call_api(
                path, "GET", query_params=list(query),
                header_params=self._headers(token, accept),
                _preload_content=False, _request_timeout=timeout)
            return response
        response = await self._authorized(send, connect_timeout,
                                          lambda answer: answer.release())
        self.streams.add(response)
        try:
            yield response
        finally:
            self.streams.discard(response)
            response.close()


class KubernetesTransport(Transport[KubeOptions, KubeClient]):
    """kubernetes-asyncio's ApiClient per kubeconfig/context (or in-cluster) and runtime."""

    name: ClassVar[str] = "kubernetes"
    errors: ClassVar[ErrorTable] = KUBE_ERRORS

    def key(self, options: KubeOptions) -> tuple[object, ...]:
        return (options.kubeconfig, options.context, options.in_cluster_dir)

    async def open(self, options: KubeOptions, runtime: TransportRuntime) -> KubeClient:
        from kubernetes_asyncio import client as k8s_client

        first = await _load(options, runtime)
        pending: list[_Loaded] = [first]

        async def fetch() -> Expiring[str | None]:
            if pending:  # the reading made while opening: no second exec plugin run
                return pending.pop().credential
            return (await _load(options, runtime)).credential

        credential: RefreshingCredential[str | None] = RefreshingCredential(fetch, skew=0.0)
        configuration = first.configuration
        configuration.connection_pool_maxsize = 0  # read when each ApiClient is made
        stream_api = k8s_client.ApiClient(configuration)  # 0: no limit (one per watch)
        configuration.connection_pool_maxsize = options.max_connections
        api = k8s_client.ApiClient(configuration)
        return KubeClient(api=api, stream_api=stream_api, credential=credential,
                          target=_target(configuration.host), options=options,
                          fingerprint=_mtime(options.kubeconfig))

    async def close(self, handle: KubeClient) -> None:
        for response in list(handle.streams):
            response.close()
        await handle.api.close()
        await handle.stream_api.close()

    def is_stale(self, handle: KubeClient) -> bool:
        # A rewritten kubeconfig (new server, CA or user) is used from the next run on.
        return handle.fingerprint != _mtime(handle.options.kubeconfig)


KUBERNETES = KubernetesTransport()
"""The Kubernetes transport (`await ctx.client(KUBERNETES, KubeOptions(...))`)."""


# --------------------------------------------------------------------------- loading


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _target(host: str) -> str:
    """`host:port` of the API server URL (what error messages name)."""
    from exporter.transport.http import target_of

    return target_of(host) if host else "the API server"


def yaml_line(exc: yaml.YAMLError) -> str:
    """` (line N)` of a YAML error, or nothing: never its text, which quotes the document
    (a kubeconfig's token, an EncryptionConfiguration's keys)."""
    mark = getattr(exc, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def _read_document(path: Path, option: str) -> dict[str, Any]:
    """The kubeconfig as a mapping; `KubeconfigInvalid` naming `option` otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KubeconfigInvalid(f"{option}: {path} does not exist") from None
    except IsADirectoryError:
        raise KubeconfigInvalid(f"{option}: {path} is a directory, not a kubeconfig") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeconfigInvalid(f"{option}: {path} cannot be read "
                                f"({getattr(exc, 'strerror', None) or type(exc).__name__})"
                                ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigInvalid(f"{option}: {path} is not valid YAML{yaml_line(exc)}"
                                ) from None
    if document is None:
        raise KubeconfigInvalid(f"{option}: {path} is empty")
    if not isinstance(document, dict):
        raise KubeconfigInvalid(f"{option}: {path} is not a kubeconfig (a mapping with "
                                "clusters, users and contexts)")
    return document


def _user_entry(document: Mapping[str, Any], context: str | None) -> Mapping[str, Any]:
    """The `user:` mapping of the chosen context (empty when there is none)."""
    name = context or document.get("current-context")
    contexts = document.get("contexts") or []
    chosen = next((c for c in contexts if isinstance(c, dict) and c.get("name") == name), None)
    user_name = ((chosen or {}).get("context") or {}).get("user")
    users = document.get("users") or []
    entry = next((u for u in users if isinstance(u, dict) and u.get("name") == user_name), None)
    user = (entry or {}).get("user")
    return user if isinstance(user, dict) else {}


def _config_detail(exc: BaseException) -> str:
    """A secret-free summary of a kubernetes-asyncio configuration error."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("exec: process returned"):
        return text.split(".", 1)[0]  # what follows is the plugin's stderr
    return text[:160]


async def _load(options: KubeOptions, runtime: TransportRuntime) -> _Loaded:
    """Read the configuration once: client settings and the current credential."""
    if options.kubeconfig is None:
        return await _load_in_cluster(options, runtime)
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.kube_config import KubeConfigLoader

    path, option = options.kubeconfig, options.option_path
    try:
        document = await runtime.run_blocking(_read_document, path, option)
        user = _user_entry(document, options.context)
        configuration = k8s_client.Configuration()
        loader = KubeConfigLoader(config_dict=document, active_context=options.context,
                                  config_base_path=str(path.parent))
        await loader.load_and_set(configuration)
    except KubeconfigInvalid as exc:
        raise KUBE_ERRORS.classify(exc, option) from None
    except FileNotFoundError:  # the exec plugin's command
        raise ProbeError(Reason.CONFIG, f"{option}: the exec credential plugin of {path} "
                         "cannot be run (command not found)") from None
    except ConfigException as exc:
        raise ProbeError(Reason.CONFIG, f"{option}: {path} is not usable: "
                         f"{_config_detail(exc)}") from None
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
        what = f"context {options.context!r}" if options.context else "its current-context"
        raise ProbeError(Reason.CONFIG, f"{option}: {path} is malformed or lacks {what} "
                         f"with its cluster and user ({type(exc).__name__})") from None
    token = configuration.api_key.get("BearerToken")
    return _Loaded(configuration, Expiring(token, _expiry(user, loader)))


def _expiry(user: Mapping[str, Any], loader: Any) -> float | None:
    """When the credential must be fetched again (None: only after a 401)."""
    now = time.time()
    if "exec" in user:
        stamp = getattr(loader, "exec_plugin_expiry", None)
        if not isinstance(stamp, dt.datetime):
            return None
        expires = stamp.timestamp() if stamp.tzinfo else \
            stamp.replace(tzinfo=dt.UTC).timestamp()
        margin = min(10.0, max(0.0, (expires - now) / 5))  # renew a little before
        return expires - margin
    if "tokenFile" in user or "auth-provider" in user:
        return now + TOKEN_FILE_REREAD
    return None


async def _load_in_cluster(options: KubeOptions, runtime: TransportRuntime) -> _Loaded:
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio.config.config_exception import ConfigException
    from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise ProbeError(Reason.CONFIG, "in-cluster config unavailable: the exporter is not "
                         "running in a pod (KUBERNETES_SERVICE_HOST unset); set kubeconfig "
                         f"({options.option_path})")
    configuration = k8s_client.Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(options.in_cluster_dir / "token"),
        cert_filename=str(options.in_cluster_dir / "ca.crt"), try_refresh_token=False)
    try:
        await runtime.run_blocking(loader.load_and_set, configuration)
    except ConfigException as exc:
        raise ProbeError(Reason.CONFIG, "in-cluster config unavailable: "
                         f"{_config_detail(exc)}") from None
    token = configuration.api_key.get("BearerToken")
    return _Loaded(configuration, Expiring(token, time.time() + TOKEN_FILE_REREAD))
