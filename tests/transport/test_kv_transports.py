"""The Redis and S3 transports' own rules: their error tables (reason and a message that
never repeats the library's text), and the S3 client's lifetime and TLS options."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions as rexc
import trustme
from botocore import exceptions as boto_errors
from moto.server import ThreadedMotoServer
from pydantic import ValidationError

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import ProbeError, Reason, Status
from exporter.probes.backup.sources import S3Source, list_backups, s3_options
from exporter.runner import run_check
from exporter.transport.redis import REDIS
from exporter.transport.s3 import S3
from tests.support.servers import free_port, wait_for_port
from tests.transport.kv_servers import https_not_found

LEAK = "hunter2-secret-in-library-text"


def _raised_while(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised while handling `inner`, as redis-py does."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # the implicit __context__ is what is tested
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(("exc", "reason", "expected"), [
    (rexc.AuthenticationError(f"WRONGPASS invalid password {LEAK}"), Reason.AUTH,
     "cache:6379 rejected the credentials (wrong or missing username/password)"),
    (rexc.NoPermissionError(f"NOPERM this user has no permissions {LEAK}"), Reason.AUTH,
     "cache:6379: the user lacks permission for this command"),
    (rexc.ResponseError(f"ERR unknown command {LEAK}"), Reason.PROTOCOL,
     "cache:6379 replied ERR"),
    (rexc.ResponseError(f"{LEAK} no code"), Reason.PROTOCOL, "cache:6379 replied error"),
    (rexc.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
     Reason.PROTOCOL, "cache:6379 is loading its dataset and cannot answer yet"),
    (rexc.TimeoutError(f"Timeout reading from {LEAK}"), Reason.TIMEOUT,
     "cache:6379 did not answer within 5s"),
    (_raised_while(rexc.ConnectionError(f"Error -2 connecting to {LEAK}"),
                   socket.gaierror(-2, "Name or service not known")),
     Reason.DNS, "cannot resolve cache:6379"),
    (_raised_while(rexc.ConnectionError(f"Error 111 connecting to {LEAK}"),
                   ConnectionRefusedError(111, "Connection refused")),
     Reason.CONNECT, "cannot connect to cache:6379: connection refused"),
    (_raised_while(rexc.ConnectionError(f"Error 1 connecting to {LEAK}"),
                   ssl.SSLCertVerificationError(1, "certificate verify failed")),
     Reason.TLS, "TLS certificate of cache:6379 rejected: verification failed "
         "(see tls.ca_file and tls.server_name)"),
    (rexc.ConnectionError(f"Connection closed by server {LEAK}"), Reason.CONNECT,
     "connection to cache:6379 failed"),
], ids=["wrongpass", "noperm", "err", "no-code", "loading", "timeout", "dns", "refused",
        "tls", "closed"])
def test_redis_errors(exc: BaseException, reason: Reason, expected: str) -> None:
    error = REDIS.classify(exc, "cache:6379", 5.0)
    assert (error.reason, error.message) == (reason, expected)


def _client_error(code: str) -> boto_errors.ClientError:
    return boto_errors.ClientError(
        {"Error": {"Code": code, "Message": f"{LEAK} signature was {LEAK}"}}, "ListObjectsV2")


@pytest.mark.parametrize(("exc", "reason", "expected"), [
    (_client_error("InvalidAccessKeyId"), Reason.AUTH,
     "minio:9000 rejected the credentials (S3 InvalidAccessKeyId)"),
    (_client_error("SignatureDoesNotMatch"), Reason.AUTH,
     "minio:9000 rejected the credentials (S3 SignatureDoesNotMatch)"),
    (_client_error("403"), Reason.AUTH, "minio:9000 rejected the credentials (S3 403)"),
    (_client_error("NoSuchBucket"), Reason.CONFIG,
     "minio:9000: no such bucket (check the bucket option)"),
    (_client_error("SlowDown"), Reason.PROTOCOL, "minio:9000: S3 error SlowDown"),
    (_client_error(f"<{LEAK}>"), Reason.PROTOCOL, "minio:9000: S3 error unknown"),
    (boto_errors.NoCredentialsError(), Reason.AUTH,
     "minio:9000: no credentials found (set access_key_id and secret_access_key, or give "
     "boto3's credential chain some)"),
    (boto_errors.EndpointConnectionError(endpoint_url=f"http://minio:9000/?{LEAK}"),
     Reason.CONNECT, "cannot connect to minio:9000"),
    (boto_errors.ReadTimeoutError(endpoint_url=f"http://minio:9000/?{LEAK}"),
     Reason.TIMEOUT, "minio:9000 did not answer within 30s"),
], ids=["bad-key", "bad-signature", "403", "no-bucket", "other", "odd-code", "no-creds",
        "endpoint", "read-timeout"])
def test_s3_errors(exc: BaseException, reason: Reason, expected: str) -> None:
    error = S3.classify(exc, "minio:9000", 30.0)
    assert (error.reason, error.message) == (reason, expected)


# --------------------------------------------------------------------------- S3 clients


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _source(endpoint: str, **extra: object) -> S3Source:
    return S3Source.model_validate({"type": "s3", "bucket": "kv-transport-clients",
                                    "endpoint_url": endpoint,
                                    "access_key_id": "${KV_S3_KEY}",
                                    "secret_access_key": "${KV_S3_SECRET}", **extra})


async def test_one_s3_client_per_options_per_runtime(moto_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KV_S3_KEY", "AKIAKVTRANSPORT0001")
    monkeypatch.setenv("KV_S3_SECRET", "kv-transport-secret")
    source = _source(moto_url)
    first = RuntimeContext(state_dir=tmp_path / "a")
    second = RuntimeContext(state_dir=tmp_path / "b")
    try:
        s3 = await first.client(S3, s3_options(source))
        await s3.call(lambda client: client.create_bucket(Bucket="kv-transport-clients"))
        assert (await list_backups(source, first)).count == 0
        assert (await list_backups(_source(moto_url, prefix="db/"), first)).count == 0
        assert await first.client(S3, s3_options(source)) is s3  # prefix is not a client key
        other = await second.client(S3, s3_options(source))
        assert other is not s3 and other.client is not s3.client  # no module state
        elsewhere = await first.client(S3, s3_options(_source(moto_url, region="eu-west-1")))
        assert elsewhere is not s3
    finally:
        await first.aclose()
        await second.aclose()


def test_s3_tls_block_rejects_server_name() -> None:
    with pytest.raises(ValidationError) as err:
        _source("https://minio:9000", tls={"server_name": "minio.internal"})
    assert "tls.server_name is not supported for S3" in str(err.value)


async def test_s3_insecure_skip_verify_skips_verification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KV_S3_KEY", "AKIAKVTRANSPORT0001")
    monkeypatch.setenv("KV_S3_SECRET", "kv-transport-secret")
    context = RuntimeContext(state_dir=tmp_path / "state")
    try:
        async with https_not_found(trustme.CA()) as target:
            url = f"https://{target.host}:{target.port}"
            with pytest.raises(ProbeError) as verified:
                await list_backups(_source(url), context)
            assert verified.value.reason is Reason.TLS
            with pytest.raises(ProbeError) as skipped:
                await list_backups(_source(url, tls={"insecure_skip_verify": True}), context)
            assert skipped.value.reason is not Reason.TLS
    finally:
        await context.aclose()


async def test_s3_errors_name_where_the_source_is_configured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`newer_than` is a second source: its unset key names `newer_than.…`, not `source.…`."""
    monkeypatch.setenv("KV_S3_KEY", "AKIAKVTRANSPORT0001")
    monkeypatch.setenv("KV_S3_SECRET", "kv-transport-secret")
    monkeypatch.delenv("KV_S3_UNSET", raising=False)
    reference = {"type": "s3", "bucket": "models", "endpoint_url": "http://127.0.0.1:9",
                 "access_key_id": "${KV_S3_KEY}", "secret_access_key": "${KV_S3_UNSET}"}
    spec = registry.probe_kind("backup").spec.model_validate({
        "id": "10.1.3", "section": "10.1", "title": "artifacts", "kind": "backup",
        "source": {"type": "directory", "path": str(tmp_path)}, "newer_than": reference})
    context = RuntimeContext(state_dir=tmp_path / "state")
    try:
        outcome, _ = await run_check(spec, context)
    finally:
        await context.aclose()
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG), outcome
    assert outcome.message.startswith("newer_than.secret_access_key: environment variable "
                                      "KV_S3_UNSET is not set")
