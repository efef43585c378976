"""Grafana dashboards of readiness-exporter (JSON files built by generate.py)."""
