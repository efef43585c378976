"""The evidence report as one self-contained HTML page (inline CSS, printable to PDF)."""

from __future__ import annotations

from typing import Any

from exporter.checklist import section_title
from exporter.web.board import template_environment


def render_html(document: dict[str, Any]) -> str:
    """HTML of a report document (every value escaped)."""
    template = template_environment().get_template("report.html")
    return template.render(doc=document, section_title=section_title)
