"""Bundled checklists (presets)."""
