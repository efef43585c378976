"""The HTTP transport: one aiohttp session per runtime, TLS per options, bounded errors.

`await ctx.client(HTTP, HttpOptions(tls=spec.tls))` gives an `HttpClient`: it sends a
request with the options' TLS context and SNI, reads the body up to a limit, and turns
every aiohttp failure into a `ProbeError` through `HTTP_ERRORS`. Messages name the
target as `host:port`, never the path, query or headers (they may carry credentials).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import aiohttp
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from exporter.model import ProbeError, Reason
from exporter.transport.base import Transport, TransportRuntime
from exporter.transport.errors import (
    BASE_ERRORS,
    CredentialsRejected,
    ErrorRow,
    ErrorTable,
    verify_detail,
)
from exporter.transport.tls import TlsClientOptions

__all__ = [
    "HTTP",
    "HTTP_ERRORS",
    "USER_AGENT",
    "HttpClient",
    "HttpOptions",
    "HttpTransport",
    "Response",
    "reject_credentials",
    "target_of",
]

USER_AGENT = "readiness-exporter"

class AnswerCutShort(ConnectionError):
    """The connection ended before the body its headers announced had arrived."""


def _cut_short(exc: BaseException) -> BaseException:
    """aiohttp reports a connection lost in the middle of a body (a reset, a server that
    died) as a payload error; that is a lost connection, as it is for every other
    transport, not an answer the client could not understand."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        if isinstance(cause, ContentLengthError) or (
                isinstance(cause, TransferEncodingError) and "Not enough data" in cause.message):
            return AnswerCutShort()
    return exc


HTTP_ERRORS = BASE_ERRORS.extend([
    ErrorRow(aiohttp.ClientConnectorDNSError, Reason.DNS, "cannot resolve {target}"),
    ErrorRow(aiohttp.ClientConnectorCertificateError, Reason.TLS,
             "TLS certificate of {target} rejected: {detail} (see tls.ca_file and "
             "tls.server_name)", verify_detail),
    ErrorRow(aiohttp.ClientSSLError, Reason.TLS, "TLS handshake with {target} failed"),
    ErrorRow(aiohttp.ClientConnectorError, Reason.CONNECT, "cannot connect to {target}: {cause}"),
    ErrorRow(aiohttp.ClientOSError, Reason.CONNECT, "connection to {target} failed: {cause}"),
    ErrorRow(aiohttp.ServerTimeoutError, Reason.TIMEOUT, "{target} did not answer{within}"),
    ErrorRow(AnswerCutShort, Reason.CONNECT,
             "connection to {target} lost before the answer was complete"),
    ErrorRow(aiohttp.ServerDisconnectedError, Reason.CONNECT,
             "connection to {target} closed before a complete answer"),
    ErrorRow(aiohttp.TooManyRedirects, Reason.PROTOCOL, "{target}: too many redirects"),
    ErrorRow(aiohttp.ClientResponseError, Reason.PROTOCOL,
             "{target} sent an invalid HTTP response"),
    ErrorRow(aiohttp.ClientPayloadError, Reason.PROTOCOL,
             "{target} sent an invalid HTTP response"),
    ErrorRow(aiohttp.InvalidURL, Reason.CONFIG, "{target}: invalid URL"),
    ErrorRow(aiohttp.ClientError, Reason.PROTOCOL, "request to {target} failed ({type})"),
], translate=_cut_short)
"""aiohttp's exceptions on top of the shared rows."""


def target_of(url: str | URL) -> str:
    """`host:port` of a URL (what error messages name)."""
    parsed = URL(url) if isinstance(url, str) else url
    if not parsed.host:
        return "the configured URL"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{host}:{parsed.port}" if parsed.port is not None else host


def reject_credentials(url: str | URL, status: int) -> ProbeError:
    """The error for a 401/403 answer to a request that carried credentials."""
    return HTTP_ERRORS.classify(CredentialsRejected(f"HTTP {status}"), target_of(url))


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """What selects an HTTP client: its TLS options (and where they are configured)."""

    tls: TlsClientOptions = field(default_factory=TlsClientOptions)
    option_path: str = "tls"


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


@dataclass(frozen=True, slots=True)
class HttpClient:
    """A typed handle: the runtime's session with one TLS configuration."""

    session: aiohttp.ClientSession
    ssl: ssl.SSLContext | bool
    server_name: str | None
    tls: TlsClientOptions
    fingerprint: tuple[object, ...]

    async def request(
        self,
        method: str,
        url: str,
        *,
        budget: float,
        headers: Mapping[str, str] | None = None,
        data: bytes | Mapping[str, str] | None = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        follow_redirects: bool = False,
        max_body_bytes: int = 4 * 1024 * 1024,
        limit_option: str = "max_body_bytes",
        read_body: bool = True,
    ) -> Response:
        """Send one request and read the body; raise `ProbeError` on transport failure.

        `budget` is the seconds the whole request may take. A body longer than
        `max_body_bytes` is `error/protocol` naming `limit_option`.
        """
        sent = CIMultiDict(headers or {})
        sent.setdefault("User-Agent", USER_AGENT)
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, url, headers=sent, data=data, params=params, ssl=self.ssl,
                server_hostname=self.server_name, allow_redirects=follow_redirects,
                max_redirects=10, timeout=aiohttp.ClientTimeout(total=budget),
            ) as resp:
                body = await _read(resp, url, max_body_bytes, limit_option) if read_body else b""
                return Response(
                    url=str(resp.url), status=resp.status,
                    headers=CIMultiDictProxy(CIMultiDict(resp.headers)), body=body,
                    elapsed=time.perf_counter() - started, content_type=resp.content_type,
                    charset=resp.charset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise HTTP_ERRORS.classify(exc, target_of(url), budget) from None


async def _read(resp: aiohttp.ClientResponse, url: str, limit: int, option: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ProbeError(Reason.PROTOCOL, f"{target_of(url)}: response body exceeds "
                             f"{option} ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


class HttpTransport(Transport[HttpOptions, HttpClient]):
    """HTTP(S) with aiohttp: one session per runtime; a client per TLS configuration."""

    name: ClassVar[str] = "http"
    errors: ClassVar[ErrorTable] = HTTP_ERRORS

    def key(self, options: HttpOptions) -> TlsClientOptions:
        return options.tls

    async def open(self, options: HttpOptions, runtime: TransportRuntime) -> HttpClient:
        tls = options.tls
        context: ssl.SSLContext | bool = True  # aiohttp's default verifying context
        if tls.files() or tls.insecure_skip_verify:
            context = await runtime.ssl_context(tls, options.option_path)
        return HttpClient(session=runtime.http_session, ssl=context,
                          server_name=tls.server_name, tls=tls,
                          fingerprint=tls.fingerprint())

    def is_stale(self, handle: HttpClient) -> bool:
        # A rotated CA or client certificate file is picked up at the next run; a closed
        # session (the runtime reopened it) too.
        return handle.session.closed or handle.fingerprint != handle.tls.fingerprint()


HTTP = HttpTransport()
"""The HTTP transport (`await ctx.client(HTTP, HttpOptions(tls=spec.tls))`)."""


def own_session() -> aiohttp.ClientSession:
    """A session for an event loop of its own (a timed request sent from a worker thread
    whose loop the main loop's busy neighbours cannot delay); the caller closes it."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
