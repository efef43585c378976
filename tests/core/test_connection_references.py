"""Connection references are typed (`ConnectionOf`) and found by walking the check's model,
so `validate` checks every one the same way: top-level fields, nested models (a drill's
`lease.connection`), lists (`production_connections`) and optional fields."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import pytest
from pydantic import BaseModel

from exporter import config
from exporter.model import (
    CheckSpec,
    ConnectionOf,
    ConnectionReference,
    KubernetesConnectionName,
    PostgresConnectionName,
    connection_references,
)

CONNECTIONS = {
    "drill-db": {"kind": "postgres", "host": "127.0.0.1"},
    "prod-db": {"kind": "postgres", "host": "10.0.0.5"},
    "cluster": {"kind": "kubernetes"},
}


def drill(**fields: Any) -> dict[str, Any]:
    return {"id": "10.3.1", "section": "10.3", "title": "restore drill",
            "kind": "restore_drill", "mode": "run", "scenario": "db",
            "connection": "drill-db", "source": {"type": "directory", "path": "/backups"},
            "production_connections": ["prod-db"],
            "lease": {"connection": "cluster", "namespace": "qbitel"}, **fields}


def errors_of(*checks: dict[str, Any], connections: dict[str, Any] | None = None,
              environ: dict[str, str] | None = None) -> list[str]:
    data = {"connections": CONNECTIONS if connections is None else connections,
            "checks": list(checks)}
    try:
        config.build(data, "test", environ=environ or {})
    except config.ConfigError as exc:
        return exc.errors
    return []


def test_a_valid_drill_loads() -> None:
    assert errors_of(drill()) == []


def test_an_undeclared_production_connection_is_rejected() -> None:
    errors = errors_of(drill(production_connections=["prod-db", "prod-typo"]))
    assert errors == ["checks[0] (id 10.3.1).production_connections[1]: no connection named "
                      "'prod-typo' under connections:"]


def test_an_undeclared_lease_connection_is_rejected() -> None:
    errors = errors_of(drill(lease={"connection": "k8s-typo", "namespace": "qbitel"}))
    assert errors == ["checks[0] (id 10.3.1).lease.connection: no connection named "
                      "'k8s-typo' under connections:"]


def test_a_reference_to_a_connection_of_another_kind_is_rejected() -> None:
    errors = errors_of(drill(lease={"connection": "prod-db", "namespace": "qbitel"},
                             production_connections=["cluster"]))
    assert sorted(errors) == [
        "checks[0] (id 10.3.1).lease.connection: connection 'prod-db' is a postgres "
        "connection, this check needs kubernetes",
        "checks[0] (id 10.3.1).production_connections[0]: connection 'cluster' is a "
        "kubernetes connection, this check needs postgres",
    ]


def test_record_mode_and_rpo_references_are_checked_too() -> None:
    record = {"id": "r", "section": "10.3", "title": "t", "kind": "restore_drill",
              "scenario": "db", "records_table": "drills", "records_connection": "nope"}
    rpo = {"id": "p", "section": "10.2", "title": "t", "kind": "rpo", "scenario": "db",
           "rpo_target": "6h", "connection": "cluster", "sources": [{"type": "wal_archive"}]}
    errors = errors_of(record, rpo)
    assert "checks[0] (id r).records_connection: no connection named 'nope' under " \
           "connections:" in errors
    assert "checks[1] (id p).connection: connection 'cluster' is a kubernetes connection, " \
           "this check needs postgres" in errors


def test_secrets_of_every_referenced_connection_are_warned_about_at_load() -> None:
    from exporter import lint

    connections = {**CONNECTIONS,
                   "prod-db": {"kind": "postgres", "password": "${PROD_DB_PASSWORD}"}}
    assert errors_of(drill(), connections=connections) == []  # resolved at run time
    data = {"connections": connections, "checks": [drill()]}
    cfg = config.build(data, "test", environ={})
    assert lint.unresolved_secrets(cfg.checks, cfg.connections, {}) == [
        "connections.prod-db.password: secret reference ${PROD_DB_PASSWORD} cannot be "
        "resolved now: environment variable PROD_DB_PASSWORD is not set; the check ends as "
        "error/config until it can (resolved at each run)"]
    assert lint.unresolved_secrets(cfg.checks, cfg.connections,
                                   {"PROD_DB_PASSWORD": "x"}) == []


class _Inner(BaseModel):
    cluster: KubernetesConnectionName
    note: str = "not a reference"


class _Spec(CheckSpec):
    connection_fields: ClassVar[dict[str, str]] = {"legacy": "redis"}

    kind: str = "x"
    primary: PostgresConnectionName
    replicas: list[PostgresConnectionName] = []
    optional: PostgresConnectionName | None = None
    by_role: dict[str, Annotated[str, ConnectionOf("s3")]] = {}
    inner: list[_Inner] = []
    legacy: str | None = None
    plain: str = "not a reference"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"primary": "a"}, [("primary", "a", "postgres")]),
    ({"primary": "a", "replicas": ["b", "c"], "optional": "d"},
     [("primary", "a", "postgres"), ("replicas[0]", "b", "postgres"),
      ("replicas[1]", "c", "postgres"), ("optional", "d", "postgres")]),
    ({"primary": "a", "by_role": {"logs": "bucket"}, "inner": [{"cluster": "k"}],
      "legacy": "cache"},
     [("primary", "a", "postgres"), ("by_role.logs", "bucket", "s3"),
      ("inner[0].cluster", "k", "kubernetes"), ("legacy", "cache", "redis")]),
], ids=["field", "list-and-optional", "dict-nested-legacy"])
def test_the_walker_finds_every_typed_reference(fields: dict[str, Any],
                                                expected: list[tuple[str, str, str]]) -> None:
    spec = _Spec.model_validate({"id": "w", "section": "1.1", "title": "t", **fields})
    assert list(connection_references(spec)) == [ConnectionReference(*row) for row in expected]
