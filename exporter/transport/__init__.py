"""Transports: how the exporter talks to servers, so that probes only judge.

See docs/decisions.md ("The transport layer") for the design and the dependency
direction. Import from the submodules: `exporter.transport.http`, `.tls`, `.errors`,
`.secrets`, `.credentials`, `.base`, `.clients`, `.spellings`.
"""
