"""Preset inputs: the targets a preset reads, declared once (`inputs:` in the file).

Each input has a default built from the checklist's own environment variables (section
6.1: `DATABASE_*`, `REDIS_*`, `TLS_*`) or a documented placeholder. Presets refer to
inputs as `${inputs.NAME}`; the file's `inputs:` block (or discovery) overrides the
default, and a check that sets the option itself still wins. `docs/inputs.md` lists them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Origin = Literal["default", "environment", "file", "discovery"]


@dataclass(frozen=True, slots=True)
class InputDef:
    """One documented input: its default and the variable that overrides the default."""

    name: str
    default: Any
    help: str
    env: str | None = None
    placeholder: bool = False
    """True when the default is a stand-in that no real deployment has."""
    backup: bool = False
    """A backup source: a mapping, or a directory path as a shorthand."""
    producer: str | None = None
    """Who writes the evidence found there (for messages about missing files)."""


INPUTS: tuple[InputDef, ...] = (
    InputDef("app_url", "https://qbitel.example.internal",
             "the application's base URL (health, API, CORS, rate limit checks)",
             env="QBITEL_URL", placeholder=True),
    InputDef("app_metrics_url", "http://qbitel.example.internal:9090",
             "the application's own metrics endpoint base URL (7.4)",
             env="QBITEL_METRICS_URL", placeholder=True),
    InputDef("tls_host", "qbitel.example.internal",
             "the public TLS host name of the application (1.2.4, 2.2.1, 2.3.4)",
             env="QBITEL_TLS_HOST", placeholder=True),
    InputDef("tls_port", "443", "the public TLS port", env="QBITEL_TLS_PORT"),
    InputDef("tls_cert_file", "/etc/qbitel/certs/server.crt",
             "the application's TLS certificate file", env="TLS_CERT_FILE"),
    InputDef("tls_cert_dir", "/etc/qbitel/certs", "directory of the application's certificates"),
    InputDef("idp_issuer", "https://idp.example.internal",
             "the OpenID Connect issuer of the identity provider (2.1.4)",
             env="QBITEL_OIDC_ISSUER", placeholder=True),
    InputDef("database_host", "postgres", "PostgreSQL host of the application database",
             env="DATABASE_HOST", placeholder=True),
    InputDef("database_port", "5432", "PostgreSQL port", env="DATABASE_PORT"),
    InputDef("database_name", "qbitel_prod", "PostgreSQL database name", env="DATABASE_NAME"),
    InputDef("database_user", "qbitel", "PostgreSQL user", env="DATABASE_USER"),
    InputDef("redis_host", "redis", "Redis host", env="REDIS_HOST", placeholder=True),
    InputDef("redis_port", "6379", "Redis port", env="REDIS_PORT"),
    InputDef("broker_url", "http://rabbitmq:15672", "RabbitMQ management API base URL",
             env="RABBITMQ_MANAGEMENT_URL", placeholder=True),
    InputDef("backup_db", {"type": "directory", "path": "/var/backups/qbitel/db"},
             "backup source of the database (2.3.3, 3.1.4, 10.1.1, 10.2)", backup=True,
             producer="written by the database backup job"),
    InputDef("backup_offsite", {"type": "directory", "path": "/var/backups/qbitel/db"},
             "off-cluster copy of the database backups (10.2 complete cluster failure): an s3 "
             "source on another site; the default, a local path, is refused there",
             backup=True, placeholder=True,
             producer="copied off the cluster by the backup job"),
    InputDef("wal_archive_dir", None,
             "WAL archive directory (archive_command's target, or a pgBackRest posix "
             "repository's archive/<stanza>) read by 10.2 database failure; unset: "
             "pg_stat_archiver of app-db", env="WAL_ARCHIVE_DIR"),
    InputDef("backup_config", {"type": "directory", "path": "/var/backups/qbitel/config"},
             "backup source of the configuration (10.1.2)", backup=True,
             producer="written by the configuration backup job"),
    InputDef("backup_models", {"type": "directory", "path": "/var/backups/qbitel/models"},
             "backup source of the model artifacts (10.1.3)", backup=True,
             producer="written by the model training pipeline's backup step"),
    InputDef("models_dir", "/var/lib/qbitel/models",
             "directory of the trained model artifacts (10.1.3)"),
    InputDef("drill_records", "/var/lib/qbitel/drills/drills.jsonl",
             "drill records, JSON lines written by whoever runs a DR drill (3.1.5, 10.2, 10.3)",
             producer="appended by whoever runs a DR drill (or `mode: run` drills)"),
    InputDef("reports_dir", "/var/lib/readiness-exporter/reports",
             "evidence directory: CI writes test reports under unit/ and integration/ and "
             "scanners write vulnerability reports under vulnerabilities/ (1.1.x); the staging "
             "end-to-end job writes under staging-e2e/ (11.1.x-staging)",
             producer="written by CI (JUnit) and the vulnerability scanners"),
    InputDef("app_log", "/var/log/qbitel/app.log",
             "the application's log file (5.2.1, 7.4 outside Kubernetes)",
             producer="written by the application"),
    InputDef("attestations_dir", "/etc/readiness-exporter/attestations",
             "signed attestation records (`readiness-exporter attest sign` writes them)",
             producer="written by `readiness-exporter attest sign`"),
    InputDef("keyring", "/etc/readiness-exporter/keyring.yaml",
             "public keys and roles of the signers (`readiness-exporter attest keygen`)",
             producer="created with `readiness-exporter attest keygen`"),
    InputDef("app_workload", None,
             "the application in the cluster, {namespace, selector} (optionally connection, "
             "containers, source): 1.2.2, 1.2.3, 2.1.1 and 6.1 read its pods, ConfigMaps and "
             "(opt-in) Secret through the Kubernetes API; unset: the exporter's environment"),
    InputDef("env_example", ".env.example",
             "the documented list of the application's variables, a dotenv-style file "
             "(1.2.3 compares the variables the application defines with it)",
             producer="kept with the application's source (.env.example)"),
    InputDef("app_config_file", "config/qbitel.production.yaml",
             "the application's production configuration file (2.1.5, 2.4.4, 3.1.2, 9.3)"),
    InputDef("runbook_file", "docs/runbooks/disaster-recovery.md",
             "the recovery runbook, a section per 10.2 scenario (10.3.3)",
             producer="written by the team that owns disaster recovery"),
    InputDef("migrations_dir", "ai_engine/alembic",
             "the application's Alembic migrations directory"),
    InputDef("previous_release_revision", None,
             "Alembic revision of the previous release (8.2: every migration above it must "
             "roll back); unset, 8.2 is a config error", env="PREVIOUS_RELEASE_REVISION"),
    InputDef("scratch_connection", None,
             "name of a postgres connection to a scratch (drill) server where 8.2 rehearses "
             "upgrade head / downgrade / upgrade head; unset: no rehearsal"),
    InputDef("prometheus_url", "http://prometheus:9090", "Prometheus base URL (5.1)",
             env="PROMETHEUS_URL", placeholder=True),
    InputDef("alertmanager_url", "http://alertmanager:9093", "Alertmanager base URL (5.4)",
             env="ALERTMANAGER_URL", placeholder=True),
    InputDef("grafana_url", "http://grafana:3000", "Grafana base URL (5.1.3)",
             env="GRAFANA_URL", placeholder=True),
    InputDef("loki_url", "http://loki:3100", "Loki base URL (5.2.2, 5.2.3)",
             env="LOKI_URL", placeholder=True),
    InputDef("elasticsearch_url", "http://elasticsearch:9200",
             "Elasticsearch base URL (5.2.2, 5.2.3 when ELK is used)",
             env="ELASTICSEARCH_URL", placeholder=True),
    InputDef("jaeger_url", "http://jaeger-query:16686", "Jaeger query base URL (5.3)",
             env="JAEGER_URL", placeholder=True),
    InputDef("siem_url", "https://splunk:8088", "SIEM endpoint base URL (2.4.2)",
             env="SIEM_URL", placeholder=True),
)

BY_NAME: Mapping[str, InputDef] = {d.name: d for d in INPUTS}


@dataclass(frozen=True, slots=True)
class ResolvedInput:
    """An input's value and where it came from."""

    name: str
    value: Any
    origin: Origin
    placeholder: bool = False

    def describe(self) -> str:
        """Where the value came from, for messages: `inputs.app_url; placeholder ...`."""
        if self.origin == "default" and self.placeholder:
            definition = BY_NAME.get(self.name)
            how = f"set {definition.env} or inputs.{self.name}" if definition and definition.env \
                else f"set inputs.{self.name}"
            return f"inputs.{self.name}; placeholder from the preset: {how}"
        definition = BY_NAME.get(self.name)
        producer = f"; {definition.producer}" if definition and definition.producer else ""
        if self.origin == "environment":
            return f"inputs.{self.name}, from ${definition.env if definition else '?'}{producer}"
        return f"inputs.{self.name}, from the {self.origin}{producer}"


def _backup_value(value: Any) -> Any:
    """A backup input given as a path is a directory source."""
    if isinstance(value, str):
        return {"type": "directory", "path": value}
    return value


def resolve(
    declared: Mapping[str, Any], environ: Mapping[str, str],
    discovered: Mapping[str, Any] | None = None,
) -> tuple[dict[str, ResolvedInput], list[str]]:
    """Every input's value: the file's `inputs:`, then the environment, discovery, default.

    Returns the table and the errors (unknown input names, with a suggestion).
    """
    errors: list[str] = []
    for name in declared:
        if name not in BY_NAME:
            close = difflib.get_close_matches(str(name), list(BY_NAME), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            errors.append(f"inputs.{name}: unknown input{hint}; known inputs are listed in "
                          "docs/inputs.md and by `readiness-exporter inputs`")
    table: dict[str, ResolvedInput] = {}
    found = discovered or {}
    for definition in INPUTS:
        name = definition.name
        if name in declared and declared[name] is not None:
            value, origin = declared[name], "file"
        elif definition.env and environ.get(definition.env):
            value, origin = environ[definition.env], "environment"
        elif name in found:
            value, origin = found[name], "discovery"
        else:
            value, origin = definition.default, "default"
        if definition.backup:
            value = _backup_value(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        table[name] = ResolvedInput(name, value, origin,  # type: ignore[arg-type]
                                    definition.placeholder and origin == "default")
    return table, errors
