"""Real servers for the Redis, S3 and RabbitMQ conformance suite, all on loopback.

- `redis_tls`: redis-server with `--tls-port` and a trustme certificate, requirepass set;
- `moto_with_auth`: moto's S3 server in a subprocess with request signing enforced
  (IAM user, access key and bucket made while authentication is still off);
- `https_not_found`: an aiohttp TLS server answering 404 to everything;
- `silent_server`: accepts connections and never says a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import trustme
from aiohttp import web

from tests.support.servers import RedisServer, free_port, start_redis, terminate, wait_for_port

UNRESOLVABLE_HOST = "readiness-conformance.invalid"
BUCKET = "conformance-backups"


@dataclass(frozen=True)
class Target:
    """Where a check points: host, port, and whether the server speaks TLS."""

    host: str
    port: int
    tls: bool = False


def refused() -> Target:
    """A loopback port nothing listens on."""
    return Target("127.0.0.1", free_port())


def unresolvable() -> Target:
    """A name under the reserved `.invalid` TLD (never resolves)."""
    return Target(UNRESOLVABLE_HOST, 6379)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[Target]:
    """Accepts connections and never answers (until the test ends)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Target("127.0.0.1", port)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def https_not_found(ca: trustme.CA) -> AsyncIterator[Target]:
    """A TLS server with a certificate of `ca` for 127.0.0.1 that answers 404."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    try:
        yield Target("127.0.0.1", port, tls=True)
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def redis_tls(ca: trustme.CA, directory: Path, password: str) -> Iterator[RedisServer]:
    """redis-server on a TLS port only, certificate of `ca` for 127.0.0.1/localhost."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    port = free_port()
    server = start_redis(["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no",
                          "--tls-cert-file", str(directory / "cert.pem"),
                          "--tls-key-file", str(directory / "key.pem"),
                          "--tls-ca-cert-file", str(directory / "ca.pem")],
                         password=password, port=port)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@dataclass(frozen=True)
class MotoS3:
    """moto's S3 server enforcing signatures, with one user allowed `s3:*`."""

    url: str
    key_id: str
    secret: str


@contextlib.contextmanager
def moto_with_auth() -> Iterator[MotoS3]:
    """Start moto's server with authentication on after the set-up requests."""
    port = free_port()
    # create_user, put_user_policy, create_access_key, create_bucket run unsigned-checked;
    # every request after them must be signed by a known key.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        setup = {"endpoint_url": url, "region_name": "us-east-1",
                 "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="backup-reader")
        iam.put_user_policy(UserName="backup-reader", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="backup-reader")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=key["AccessKeyId"],
                          aws_secret_access_key=key["SecretAccessKey"])
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="db/db-1.dump", Body=b"PGDMP-not-really")
        yield MotoS3(url, str(key["AccessKeyId"]), str(key["SecretAccessKey"]))
    finally:
        terminate(process)
