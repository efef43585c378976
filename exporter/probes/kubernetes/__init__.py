"""Kubernetes and service-mesh probes: one `kubernetes` kind, one shared cluster snapshot.

`connection` declares the connection (its API client is the runtime's Kubernetes
transport, `exporter.transport.kubernetes`), `snapshot` lists each resource kind once
per cycle, `informer` keeps the collections a running `serve` reads again current by
WATCH,
`selectors`, `quantities` and `exemptions` are pure helpers, and the `assert_*` modules
hold the individual assertions that `probe` dispatches to.
"""
