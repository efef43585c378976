"""readiness-exporter: a production deployment checklist as live Prometheus metrics."""

__version__ = "0.1.0"
