"""The PostgreSQL transport's options and error table: the `tls` setting, the deprecated
libpq spellings, TLS files as config errors, and asyncpg exceptions as reasons."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from exporter import config, lint, registry
from exporter.context import RuntimeContext
from exporter.model import ProbeError, Reason, Status
from exporter.probes.postgres import probe
from exporter.transport.postgres import PostgresConnection, classify, database
from exporter.transport.tls import TlsClientOptions

EXE = Path(sys.executable).parent / "readiness-exporter"


def conn(**fields: Any) -> PostgresConnection:
    return PostgresConnection.model_validate({"kind": "postgres", **fields})


@pytest.mark.parametrize(("old", "new"), [
    ({"sslmode": "disable"}, "disable"),
    ({"sslmode": "allow"}, "prefer"),
    ({"sslmode": "prefer"}, "prefer"),
    ({"sslmode": "require"}, TlsClientOptions(insecure_skip_verify=True)),
    ({"sslmode": "verify-full", "sslrootcert": "/ca.pem"},
     TlsClientOptions(ca_file=Path("/ca.pem"))),
    ({"sslmode": "verify-ca", "sslrootcert": "/ca.pem"},
     TlsClientOptions(ca_file=Path("/ca.pem"))),
    ({"sslmode": "require", "sslrootcert": "/ca.pem"},
     TlsClientOptions(ca_file=Path("/ca.pem"))),
    ({"sslcert": "/c.pem", "sslkey": "/k.pem"},
     TlsClientOptions(cert_file=Path("/c.pem"), key_file=Path("/k.pem"),
                      insecure_skip_verify=True)),
], ids=["disable", "allow", "prefer", "require", "verify-full", "verify-ca",
        "require-with-ca", "client-cert"])
def test_libpq_spellings_translate_into_tls(old: dict[str, Any], new: Any) -> None:
    loaded = conn(**old)
    assert loaded.tls == new
    assert [name for name, _ in loaded.old_spellings()] == list(old)
    assert conn(tls=new if isinstance(new, str) else new.model_dump()).old_spellings() == []


def test_libpq_spellings_are_deprecated_by_validate(tmp_path: Path) -> None:
    data = {"connections": {"db": {"kind": "postgres", "sslmode": "require"}},
            "checks": [{"id": "v", "section": "3.1", "title": "t", "kind": "postgres",
                        "connection": "db", "min_version_num": 150000}]}
    warnings = lint.config_warnings(config.build(data, "test", environ={}))
    assert warnings == ["connections.db.sslmode is deprecated: write connections.db.tls "
                        "(the old name is accepted until the next release)"]
    path = tmp_path / "c.yaml"
    path.write_text("connections:\n  db: {kind: postgres, sslmode: verify-full, "
                    "sslrootcert: /etc/ca.pem}\n", encoding="utf-8")
    result = subprocess.run([str(EXE), "validate", "--config.file", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "connections.db.sslrootcert is deprecated: write connections.db.tls.ca_file" \
        in result.stderr


@pytest.mark.parametrize(("fields", "message"), [
    ({"tls": "disable", "sslmode": "disable"}, "write only tls"),
    ({"sslmode": "verify-full"}, "needs sslrootcert"),
    ({"tls": {"server_name": "db.internal"}}, "server_name is not supported"),
    ({"tls": "always"}, "tls"),
    ({"tls": {"cert_file": "/c.pem"}}, "cert_file and key_file go together"),
], ids=["both-spellings", "verify-without-ca", "server-name", "unknown-mode", "half-pair"])
def test_bad_tls_settings_are_rejected_at_load(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        conn(**fields)


async def test_a_missing_ca_file_is_a_config_error_naming_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    ctx = RuntimeContext({"db": conn(tls={"ca_file": str(missing)})}, state_dir=tmp_path)
    try:
        spec = probe.PostgresCheck.model_validate(
            {"id": "p", "section": "3.1", "title": "t", "kind": "postgres",
             "connection": "db", "min_version_num": 1})
        outcome = await probe.run(spec, ctx)
    finally:
        await ctx.aclose()
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert f"connections.db.tls.ca_file: {missing} does not exist" in outcome.message


async def test_an_undeclared_or_foreign_connection_is_a_config_error(tmp_path: Path) -> None:
    redis = registry.connection_kind("redis").spec.model_validate({"kind": "redis"})
    ctx = RuntimeContext({"cache": redis}, state_dir=tmp_path)
    try:
        for name, fragment in (("nope", "no connection named 'nope'"),
                               ("cache", "'cache' is not a postgres connection")):
            with pytest.raises(ProbeError) as caught:
                await database(ctx, name)
            assert caught.value.reason is Reason.CONFIG
            assert fragment in caught.value.message
    finally:
        await ctx.aclose()


SECRET_VALUE = "card-4111-1111-1111-1111"


@pytest.mark.parametrize(("exc", "reason", "fragment"), [
    (asyncpg.InvalidPasswordError("password authentication failed"), Reason.AUTH,
     "password authentication failed"),
    (asyncpg.InvalidAuthorizationSpecificationError("no pg_hba.conf entry"), Reason.AUTH,
     "authentication rejected"),
    (asyncpg.CannotConnectNowError("the database system is starting up"), Reason.CONNECT,
     "starting up or shutting down"),
    (asyncpg.ConnectionDoesNotExistError("connection was closed"), Reason.CONNECT,
     "connection lost"),
    (asyncpg.TooManyConnectionsError("too many clients"), Reason.CONNECT,
     "too many connections"),
    (asyncpg.QueryCanceledError("canceling statement"), Reason.TIMEOUT, "statement timeout"),
    (asyncpg.InvalidCatalogNameError('database "x" does not exist'), Reason.CONFIG,
     "database does not exist"),
    (asyncpg.InvalidTextRepresentationError(
        f'invalid input syntax for type integer: "{SECRET_VALUE}"'), Reason.CONFIG,
     "the value is not shown"),
    (ConnectionError('PostgreSQL server at "db:5432" rejected SSL upgrade'), Reason.TLS,
     "does not accept TLS"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), Reason.TLS,
     "certificate"),
    (TimeoutError(), Reason.TIMEOUT, "did not answer within 5s"),
], ids=["password", "hba", "starting", "lost", "too-many", "statement-timeout",
        "no-database", "data-value", "no-tls", "verify", "timeout"])
def test_error_table_rows(exc: BaseException, reason: Reason, fragment: str) -> None:
    error = classify(exc, "db:5432/app (connection db)", 5)
    assert error.reason is reason
    assert fragment in error.message
    assert error.message.startswith(("db:5432/app (connection db)", "cannot", "TLS",
                                     "db:5432/app (connection db) did not"))
    assert SECRET_VALUE not in error.message
