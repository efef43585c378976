"""Kubernetes and service-mesh probes: one `kubernetes` kind, one shared cluster snapshot.

`connection` opens the client, `snapshot` lists each resource kind once per cycle,
`selectors`, `quantities` and `exemptions` are pure helpers, and the `assert_*` modules
hold the individual assertions that `probe` dispatches to.
"""
