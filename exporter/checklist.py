"""The bundled production deployment checklist: section titles and section ordering."""

from __future__ import annotations

SECTION_TITLES: dict[str, str] = {
    "1": "Pre-Deployment Verification", "1.1": "Code Quality", "1.2": "Configuration",
    "2": "Security", "2.1": "Authentication & Authorization", "2.2": "Network Security",
    "2.3": "Data Security", "2.4": "Audit & Compliance",
    "3": "Infrastructure", "3.1": "Database", "3.2": "Caching",
    "3.3": "Message Queue",
    "4": "Kubernetes Deployment", "4.1": "Cluster Setup", "4.2": "Workloads",
    "4.3": "Service Mesh (Istio)", "4.4": "Secrets Management",
    "5": "Monitoring & Observability", "5.1": "Metrics", "5.2": "Logging", "5.3": "Tracing",
    "5.4": "Alerting",
    "6": "Application Configuration", "6.1": "Required Environment Variables",
    "6.2": "Health Check Endpoints",
    "7": "Deployment Steps", "7.1": "Database Migration", "7.2": "Docker Deployment",
    "7.3": "Kubernetes Deployment", "7.4": "Post-Deployment Verification",
    "8": "Rollback Procedure", "8.1": "Helm Rollback", "8.2": "Database Rollback",
    "9": "Performance Tuning", "9.1": "Recommended Resource Limits", "9.2": "Database Tuning",
    "9.3": "Connection Pool Settings",
    "10": "Disaster Recovery", "10.1": "Backup Schedule", "10.2": "Recovery Time Objectives",
    "10.3": "DR Testing",
    "11": "Go-Live Checklist", "11.1": "Day Before Go-Live", "11.2": "Go-Live Day",
    "11.3": "Post Go-Live",
    "12": "Sign-Off",
}


def section_title(section: str) -> str:
    """`2.2 Network Security`, or the bare number when the section is not a known one."""
    title = SECTION_TITLES.get(section)
    return f"{section} {title}" if title else section


def section_key(section: str) -> tuple[int, ...]:
    """Sort key: numeric order of dotted sections (`10.1` after `9.3`)."""
    return tuple(int(p) if p.isdigit() else 0 for p in section.split("."))


def in_section(section: str, wanted: str) -> bool:
    """`2.2.1`/`2.2` are in `2.2` and in `2`; `2.20` is not in `2.2`."""
    return section == wanted or section.startswith(wanted + ".")
