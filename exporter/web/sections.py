"""Moved to `exporter.checklist` (checklist data is not the board's); kept for one release
so imports written before the move keep working."""

from exporter.checklist import SECTION_TITLES, in_section, section_key, section_title

__all__ = ["SECTION_TITLES", "in_section", "section_key", "section_title"]
