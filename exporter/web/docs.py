"""Links from the board to the documentation: a kind's probe page and the runbooks.

The base is the same placeholder the alert rules use (`readiness-exporter.example`);
set `READINESS_DOCS_URL` to where the docs are published.
"""

from __future__ import annotations

import os

DEFAULT_DOCS_URL = "https://readiness-exporter.example/docs"

# probe kind -> page under docs/ (kinds without their own page are in configuration.md)
KIND_PAGES = {
    "tls_file": "probes/tls.md", "tls_endpoint": "probes/tls.md",
    "http": "probes/http.md",
    "postgres": "probes/postgres.md", "sql": "probes/postgres.md",
    "alembic": "probes/postgres.md", "ciphertext": "probes/postgres.md",
    "redis": "probes/redis.md", "broker": "probes/broker.md",
    "backup": "probes/backup.md", "rpo": "probes/backup.md",
    "restore_drill": "probes/backup.md",
    "kubernetes": "probes/kubernetes.md", "report": "probes/report.md",
    "secret_scan": "probes/secret_scan.md", "logs": "probes/logs.md",
    "attestation": "probes/attestation.md",
    "prometheus_query": "probes/prometheus_query.md",
    "alertmanager": "probes/alertmanager.md", "aggregate": "probes/aggregate.md",
}


def docs_base() -> str:
    """Where the docs are published (no trailing slash)."""
    return os.environ.get("READINESS_DOCS_URL", DEFAULT_DOCS_URL).rstrip("/")


def docs_url(kind: str) -> str:
    """The documentation page of a probe kind."""
    return f"{docs_base()}/{KIND_PAGES.get(kind, 'configuration.md')}"


def runbook_url(status: str | None, severity: str) -> str:
    """The runbook section for a check in this status (the alert it would raise)."""
    if status == "error":
        anchor = "readinesscheckerroring"
    elif status == "fail" and severity == "critical":
        anchor = "readinesscriticalcheckfailing"
    else:
        anchor = "readinessgoliveblocked"
    return f"{docs_base()}/runbooks.md#{anchor}"
