"""The readiness board: a server-rendered page of every check, grouped by section."""
