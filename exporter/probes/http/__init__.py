"""The `http` probe family: status, latency, body, security headers and documents."""
