"""Helpers that start real servers for the tests (throw-away, on free loopback ports)."""
