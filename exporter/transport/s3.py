"""The S3 transport: boto3 clients per endpoint and credentials, calls in the thread pool.

`await ctx.client(S3, S3Options(...))` gives an `S3Client`; `await s3.call(func)` runs
`func(boto3_client)` in the runtime's thread pool (boto3 blocks) and turns any botocore
failure into a bounded `ProbeError` through `S3_ERRORS`: the OS or TLS error under
botocore's wrapper decides where there is one (an unknown host is `dns`, a refused port
`connect`), rejected or missing credentials are `auth`. Keys are resolved under the
one secret policy when the client is built; after a rejection the caller refreshes the
client (`ctx.refresh_client`) so a rotated key is read again. Messages name the
endpoint's `host:port`, never a key, a signature or a presigned URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import BadStatusLine
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from botocore import exceptions as boto_errors

from exporter.model import ProbeError, Reason, SecretRef
from exporter.transport.base import Transport, TransportRuntime
from exporter.transport.errors import BASE_ERRORS, CredentialsRejected, ErrorRow, ErrorTable
from exporter.transport.secrets import resolve_optional
from exporter.transport.tls import TlsClientOptions

__all__ = ["AUTH_CODES", "S3", "S3_ERRORS", "S3Client", "S3Options", "S3Transport"]

T = TypeVar("T")

AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "403",
})
"""S3 error codes that mean the credentials were refused."""

MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "404"})

_CODE = re.compile(r"^[A-Za-z0-9.]{1,40}$")


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code if _CODE.match(code) else "unknown"


class HungUp(ConnectionError):
    """The server closed the connection in the middle of its status line."""


S3_ERRORS = BASE_ERRORS.extend([
    ErrorRow(boto_errors.NoCredentialsError, Reason.AUTH,
             "{target}: no credentials found (set access_key_id and secret_access_key, "
             "or give boto3's credential chain some)"),
    ErrorRow(boto_errors.PartialCredentialsError, Reason.CONFIG,
             "{target}: incomplete credentials (give both access_key_id and "
             "secret_access_key)"),
    ErrorRow(boto_errors.EndpointConnectionError, Reason.CONNECT, "cannot connect to {target}"),
    ErrorRow(HungUp, Reason.CONNECT, "connection to {target} closed before a complete answer"),
    ErrorRow(boto_errors.ConnectTimeoutError, Reason.TIMEOUT,
             "{target} did not accept the connection{within}"),
    ErrorRow(boto_errors.ReadTimeoutError, Reason.TIMEOUT, "{target} did not answer{within}"),
    ErrorRow(boto_errors.SSLError, Reason.TLS, "TLS handshake with {target} failed"),
    ErrorRow(boto_errors.ClientError, Reason.PROTOCOL, "{target}: S3 error {detail}",
             _error_code),
    ErrorRow(boto_errors.BotoCoreError, Reason.PROTOCOL, "request to {target} failed ({type})"),
])
"""botocore's exceptions on top of the shared rows."""


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: botocore's `error` keyword, causes and contexts."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        kwargs = getattr(current, "kwargs", None)
        wrapped = kwargs.get("error") if isinstance(kwargs, dict) else None
        current = wrapped if isinstance(wrapped, BaseException) else \
            (current.__cause__ or current.__context__)
    return found


def _underlying(exc: BaseException, target: str) -> BaseException:
    """What decides the reason: a rejected-credentials code, else the deepest OS, TLS or
    timeout error botocore wraps, else `exc` itself."""
    if isinstance(exc, boto_errors.ClientError):
        code = _error_code(exc)
        if code in AUTH_CODES:
            return CredentialsRejected(f"S3 {code}")
        if code in MISSING_BUCKET_CODES:
            return ProbeError(Reason.CONFIG, f"{target}: no such bucket (check the bucket "
                              "option)")
        return exc
    chain = _chain(exc)
    system = [e for e in chain if isinstance(e, ProbeError | OSError | TimeoutError)]
    if system:
        return system[-1]
    if any(isinstance(e, BadStatusLine) and not str(e.args[0] if e.args else "").endswith("\n")
           for e in chain):
        # the status line ended with the connection, not with a line break: the server
        # hung up mid-answer (a lost connection), not an answer that is not HTTP
        return HungUp()
    return exc


@dataclass(frozen=True, slots=True)
class S3Options:
    """What selects an S3 client: endpoint, region, credentials, TLS and time budget."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    tls: TlsClientOptions = field(default_factory=TlsClientOptions)
    timeout: float = 30.0
    option_path: str = "source"
    """Where the options are configured (error messages name `<option_path>.<option>`)."""

    @property
    def target(self) -> str:
        """host:port of the endpoint (what messages name)."""
        if self.endpoint_url is None:
            return f"s3.{self.region or 'us-east-1'}.amazonaws.com"
        parts = urlsplit(self.endpoint_url)
        host = parts.hostname or "the configured endpoint"
        host = f"[{host}]" if ":" in host else host
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{host}:{port}" if port is not None else host


@dataclass(frozen=True, slots=True)
class S3Client:
    """A typed handle: a boto3 S3 client and the thread pool its calls run in."""

    client: Any
    options: S3Options
    run_blocking: Callable[..., Any]

    @property
    def target(self) -> str:
        """host:port of the endpoint."""
        return self.options.target

    async def call(self, func: Callable[[Any], T]) -> T:
        """`func(boto3_client)` in the thread pool; `ProbeError` on any failure."""
        try:
            result: T = await self.run_blocking(func, self.client)
        except ProbeError:
            raise
        except Exception as exc:
            raise S3.classify(exc, self.target, self.options.timeout) from None
        return result


def _build_client(options: S3Options, key_id: str | None, secret: str | None) -> Any:
    """Create the boto3 client (blocking: reads botocore's data files)."""
    import boto3
    from botocore.config import Config

    tls = options.tls
    verify: str | bool | None = None
    if tls.insecure_skip_verify:
        verify = False
    elif tls.ca_file is not None:
        verify = str(tls.ca_file)
    client_cert = (str(tls.cert_file), str(tls.key_file)) \
        if tls.cert_file is not None and tls.key_file is not None else None
    return boto3.session.Session().client(
        "s3", endpoint_url=options.endpoint_url, region_name=options.region or "us-east-1",
        verify=verify, aws_access_key_id=key_id, aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, client_cert=client_cert,
                      connect_timeout=min(5.0, options.timeout),
                      read_timeout=options.timeout))


class S3Transport(Transport[S3Options, S3Client]):
    """S3-compatible object stores through boto3: one client per options per runtime."""

    name: ClassVar[str] = "s3"
    errors: ClassVar[ErrorTable] = S3_ERRORS

    async def open(self, options: S3Options, runtime: TransportRuntime) -> S3Client:
        prefix = options.option_path
        if options.tls.server_name is not None:
            raise ProbeError(Reason.CONFIG, f"{prefix}.tls.server_name: not supported for "
                             "S3 (botocore sends the endpoint's host name); remove it")
        if options.tls.files():
            # botocore loads the files itself; building the shared context first turns a
            # missing or bad file into error/config naming the option.
            await runtime.ssl_context(options.tls, f"{prefix}.tls")
        key_id = resolve_optional(options.access_key_id, f"{prefix}.access_key_id")
        secret = resolve_optional(options.secret_access_key, f"{prefix}.secret_access_key")
        client = await runtime.run_blocking(
            _build_client, options, key_id.get_secret_value() if key_id else None,
            secret.get_secret_value() if secret else None)
        return S3Client(client=client, options=options, run_blocking=runtime.run_blocking)

    async def close(self, handle: S3Client) -> None:
        handle.client.close()

    def classify(self, exc: BaseException, target: str,
                 timeout: float | None = None) -> ProbeError:
        return self.errors.classify(_underlying(exc, target), target, timeout)


S3 = S3Transport()
"""The S3 transport (`await ctx.client(S3, S3Options(...))`)."""
