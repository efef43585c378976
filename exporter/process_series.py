"""`process_*` and `python_info` series of the exporter's own process.

prometheus_client's ProcessCollector and PlatformCollector, on a private registry so the
served exposition (`exporter.metrics.Exposition`) can append them to its scrape-time
tail; rendering reads `/proc/self` once (tens of microseconds).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

_EOF = b"# EOF\n"


class ProcessSeries:
    """Renders the process and platform collectors in either exposition format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def render(self, openmetrics: bool) -> str:
        """Sample lines with HELP/TYPE; for OpenMetrics without the final `# EOF`."""
        if not openmetrics:
            return generate_text(self.registry).decode("utf-8")
        body: bytes = generate_openmetrics(self.registry)  # type: ignore[no-untyped-call]
        return body.removesuffix(_EOF).decode("utf-8")
