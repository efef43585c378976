"""Probe families: one module (or sub-package) per family."""
