"""`Report`: what the sub-checks of one http run found (problems and measurements)."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.model import Measurement, MetricFamily


@dataclass
class Report:
    """Collects problems (each makes the check fail) and measurements of one run."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Record a problem: the target answered and is not ready."""
        self.problems.append(message)

    def note(self, message: str) -> None:
        """Record a fact for the pass message."""
        self.notes.append(message)

    def measure(self, family: MetricFamily, value: float, **labels: str) -> None:
        """Record one sample of a declared family."""
        self.measurements.append(Measurement(family.name, float(value), labels))

    def summary(self, limit: int = 3) -> str:
        """The problems, or the notes, as one short message."""
        items = self.problems or self.notes
        text = "; ".join(items[:limit])
        if len(items) > limit:
            text += f" (+{len(items) - limit} more)"
        return text
