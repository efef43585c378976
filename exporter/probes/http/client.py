"""Sending one request on the shared aiohttp session, with bounded errors.

Every request of a run shares one deadline. Transport failures become a `ProbeError`
with a bounded reason (dns, connect, tls, timeout, protocol); the message is built here
from the exception type and OS error text, never from headers or credentials.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from exporter.model import ProbeContext, ProbeError, Reason

USER_AGENT = "readiness-exporter/http-probe"


@dataclass(frozen=True, slots=True)
class Response:
    """A response read in full (up to the body limit)."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    elapsed: float
    content_type: str
    charset: str | None

    def text(self) -> str:
        """The body decoded with its charset (UTF-8 by default), bad bytes replaced."""
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # unknown charset name
            return self.body.decode("utf-8", errors="replace")


class Deadline:
    """The time left for the remaining requests of one run."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.total = seconds

    def remaining(self) -> float:
        """Seconds left; raises `ProbeError(timeout)` when none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise ProbeError(Reason.TIMEOUT, f"no time left within {self.total:g}s")
        return left


# --------------------------------------------------------------------------- TLS

_SSL_CACHE: dict[tuple[object, ...], ssl.SSLContext] = {}


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class TlsFiles(Protocol):
    """What a TLS context is built from (HttpTls, and other kinds' TLS options)."""

    @property
    def ca_file(self) -> Path | None: ...
    @property
    def cert_file(self) -> Path | None: ...
    @property
    def key_file(self) -> Path | None: ...
    @property
    def insecure_skip_verify(self) -> bool: ...


def _build_ssl(tls: TlsFiles) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except FileNotFoundError as exc:
        raise ProbeError(Reason.CONFIG, f"TLS file not found: {exc.filename}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(Reason.CONFIG, f"TLS files cannot be loaded ({type(exc).__name__})") \
            from None
    return context


async def ssl_for(tls: TlsFiles, ctx: ProbeContext) -> ssl.SSLContext | bool:
    """The `ssl=` argument for aiohttp: a cached context, True (default) or False."""
    if tls.insecure_skip_verify:
        return False
    if tls.ca_file is None and tls.cert_file is None:
        return True
    key = (tls.ca_file, _mtime(tls.ca_file), tls.cert_file, _mtime(tls.cert_file),
           tls.key_file, _mtime(tls.key_file))
    context = _SSL_CACHE.get(key)
    if context is None:
        context = await ctx.run_blocking(_build_ssl, tls)
        if len(_SSL_CACHE) > 64:
            _SSL_CACHE.clear()
        _SSL_CACHE[key] = context
    return context


# --------------------------------------------------------------------------- errors


def _os_cause(error: OSError) -> str:
    """'connection refused', 'connection reset by peer'... from the errno, else the type."""
    if error.errno:
        return os.strerror(error.errno).lower()
    return type(error).__name__


def classify(exc: BaseException, host: str, timeout: float) -> ProbeError:
    """Map a transport exception to a bounded `ProbeError` (message safe to show)."""
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeError(Reason.DNS, f"cannot resolve {host}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        detail = getattr(exc.certificate_error, "verify_message", None) or "verification failed"
        return ProbeError(Reason.TLS, f"TLS certificate of {host} rejected: {detail}")
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return ProbeError(Reason.TLS, f"TLS handshake with {host} failed")
    if isinstance(exc, TimeoutError):
        return ProbeError(Reason.TIMEOUT, f"{host} did not answer within {timeout:.3g}s")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProbeError(Reason.CONNECT, f"cannot connect to {host}: {_os_cause(exc.os_error)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProbeError(Reason.PROTOCOL, f"{host} closed the connection without an answer")
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ProbeError(Reason.PROTOCOL, f"{host}: too many redirects")
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return ProbeError(Reason.PROTOCOL, f"{host} sent an invalid HTTP response")
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return ProbeError(Reason.CONNECT, f"connection to {host} failed: {_os_cause(exc)}")
    if isinstance(exc, aiohttp.ClientError):
        return ProbeError(Reason.PROTOCOL, f"request to {host} failed ({type(exc).__name__})")
    return ProbeError(Reason.INTERNAL, f"request to {host} failed ({type(exc).__name__})")


# --------------------------------------------------------------------------- request


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    headers: Mapping[str, str],
    ssl_arg: ssl.SSLContext | bool,
    server_hostname: str | None = None,
    data: bytes | None = None,
    params: Mapping[str, str] | None = None,
    follow_redirects: bool = False,
    max_body_bytes: int = 4 * 1024 * 1024,
    read_body: bool = True,
) -> Response:
    """Send one request and read the body; raise `ProbeError` on transport failure."""
    host = URL(url).host or url
    sent_headers = CIMultiDict(headers)
    sent_headers.setdefault("User-Agent", USER_AGENT)
    timeout = deadline.remaining()
    started = time.perf_counter()
    try:
        async with session.request(
            method, url, headers=sent_headers, data=data, params=params, ssl=ssl_arg,
            server_hostname=server_hostname, allow_redirects=follow_redirects,
            max_redirects=10, timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            chunks: list[bytes] = []
            size = 0
            if read_body:
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > max_body_bytes:
                        raise ProbeError(
                            Reason.PROTOCOL,
                            f"{host}: response body exceeds max_body_bytes ({max_body_bytes})")
                    chunks.append(chunk)
            elapsed = time.perf_counter() - started
            return Response(
                url=str(resp.url),
                status=resp.status,
                headers=CIMultiDictProxy(CIMultiDict(resp.headers)),
                body=b"".join(chunks),
                elapsed=elapsed,
                content_type=resp.content_type,
                charset=resp.charset,
            )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise classify(exc, host, timeout) from None


@dataclass(frozen=True, slots=True)
class Caller:
    """What every request of one run shares: session, deadline, TLS and headers."""

    session: aiohttp.ClientSession
    deadline: Deadline
    ssl_arg: ssl.SSLContext | bool
    server_hostname: str | None
    headers: Mapping[str, str]
    auth_headers: Mapping[str, str]
    max_body_bytes: int

    async def call(
        self,
        method: str,
        url: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
        read_body: bool = True,
    ) -> Response:
        """One request with the run's headers (and credentials unless told not to)."""
        headers: CIMultiDict[str] = CIMultiDict(self.headers)
        if authenticated:
            headers.update(self.auth_headers)
        if extra_headers:
            headers.update(extra_headers)
        return await fetch(
            self.session, method, url, deadline=self.deadline, headers=headers,
            ssl_arg=self.ssl_arg, server_hostname=self.server_hostname, data=data,
            params=params, follow_redirects=follow_redirects,
            max_body_bytes=self.max_body_bytes, read_body=read_body and method != "HEAD")
