"""Renderings of a `check` run: terminal table, JSON envelope, JUnit XML, verdict line."""
