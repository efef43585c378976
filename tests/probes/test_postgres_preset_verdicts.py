"""The preset's 2.1.2 (API key hash format) and 2.1.3 (admin MFA) queries, run as
shipped against real rows: the near misses the old rules let through now fail, an empty
scope is an error, and real salted/keyed hashes pass."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter import config, registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, pg_cluster


def preset_checks() -> dict[str, CheckSpec]:
    documents = [doc for doc in config._preset_documents("qbitel-production")
                 if doc[0].endswith("/30-postgres.yaml")]
    origin, text = documents[0]
    built = config.build(config._parse_yaml(text, origin), origin, environ={})
    return {c.id: c for c in built.checks}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def salted_hashes() -> dict[str, str]:
    """Real hashes of one key in the formats the rule accepts."""
    key = b"qk_live_0123456789abcdef"
    salt = os.urandom(16)
    pbkdf2 = hashlib.pbkdf2_hmac("sha256", key, salt, 1000)
    scrypt = hashlib.scrypt(key, salt=salt, n=1024, r=8, p=1)
    return {
        "bcrypt": bcrypt.hashpw(key, bcrypt.gensalt(rounds=4)).decode(),
        "argon2id": f"$argon2id$v=19$m=65536,t=3,p=4${b64(salt)}${b64(os.urandom(32))}",
        "django-pbkdf2": f"pbkdf2_sha256$1000${salt.hex()}${base64.b64encode(pbkdf2).decode()}",
        "werkzeug-scrypt": f"scrypt:1024:8:1${salt.hex()[:16]}${scrypt.hex()}",
        "sha256-salted": f"sha256${salt.hex()[:16]}${hashlib.sha256(salt + key).hexdigest()}",
    }


# each was accepted by the old rule or is a near miss of an accepted format
UNSALTED = {
    "bare-sha256": hashlib.sha256(b"qk_live_0123456789abcdef").hexdigest(),
    "plaintext-64-hex": os.urandom(32).hex(),
    "sha256-prefix-no-salt": "sha256$" + hashlib.sha256(b"k").hexdigest(),
    "plaintext": "sk_live_plaintext_key_12345",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as server:
        server.psql("CREATE TABLE api_keys (key_hash text);"
                    "CREATE TABLE users (name text, role text, mfa_enabled boolean);"
                    "CREATE ROLE reader LOGIN;"
                    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;")
        yield server


@pytest.fixture
async def ctx(cluster: PgCluster, tmp_path: Path) -> AsyncIterator[RuntimeContext]:
    conn = PostgresConnection.model_validate({"kind": "postgres", "host": "127.0.0.1",
                                              "port": cluster.port, "user": "reader",
                                              "database": "postgres"})
    context = RuntimeContext({"app-db": conn}, state_dir=tmp_path / "state")
    yield context
    await context.aclose()


async def run(check_id: str, ctx: RuntimeContext) -> Outcome:
    check = preset_checks()[check_id]
    return await registry.probe_kind(check.kind).run(check, ctx)


def keys(cluster: PgCluster, *values: str) -> None:
    rows = ", ".join("('" + v.replace("'", "''") + "')" for v in values)
    cluster.psql("TRUNCATE api_keys" + (f"; INSERT INTO api_keys VALUES {rows}" if rows else ""))


def users(cluster: PgCluster, *rows: tuple[str, str, bool | None]) -> None:
    values = ", ".join(f"('{n}', '{r}', {'NULL' if m is None else str(m).lower()})"
                       for n, r, m in rows)
    cluster.psql("TRUNCATE users" + (f"; INSERT INTO users VALUES {values}" if values else ""))


async def test_salted_and_keyed_hashes_pass(ctx: RuntimeContext, cluster: PgCluster) -> None:
    keys(cluster, *salted_hashes().values())
    outcome = await run("2.1.2", ctx)
    assert outcome.status is Status.PASS, outcome.message


@pytest.mark.parametrize("name", sorted(UNSALTED))
async def test_unsalted_key_among_good_ones_fails(ctx: RuntimeContext, cluster: PgCluster,
                                                  name: str) -> None:
    keys(cluster, *salted_hashes().values(), UNSALTED[name])
    outcome = await run("2.1.2", ctx)
    assert outcome.status is Status.FAIL, outcome.message
    assert "value 1" in outcome.message
    assert UNSALTED[name] not in outcome.message


async def test_empty_key_table_is_an_error(ctx: RuntimeContext, cluster: PgCluster) -> None:
    keys(cluster)
    outcome = await run("2.1.2", ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "api_keys has no rows" in outcome.message
    assert "2.1.2" in outcome.message


@pytest.mark.parametrize("role", ["ADMIN", "superadmin", "Super_Admin", " Administrator "])
async def test_admin_role_any_case_without_mfa_fails(ctx: RuntimeContext, cluster: PgCluster,
                                                     role: str) -> None:
    users(cluster, ("a", "admin", True), ("b", role, None), ("c", "user", False))
    outcome = await run("2.1.3", ctx)
    assert outcome.status is Status.FAIL, outcome.message


async def test_admins_with_mfa_pass(ctx: RuntimeContext, cluster: PgCluster) -> None:
    users(cluster, ("a", "admin", True), ("b", "SUPERADMIN", True), ("c", "user", False),
          ("d", "admin_assistant", False))
    outcome = await run("2.1.3", ctx)
    assert outcome.status is Status.PASS, outcome.message


async def test_no_admin_account_is_an_error(ctx: RuntimeContext, cluster: PgCluster) -> None:
    users(cluster, ("c", "user", False), ("d", "Admins-Group", False))
    outcome = await run("2.1.3", ctx)
    assert (outcome.status, outcome.reason) == (Status.ERROR, Reason.CONFIG)
    assert "no admin account found" in outcome.message
