"""TLS probe family: `tls_file` (certificate files) and `tls_endpoint` (live servers)."""
