"""The go-live evidence report: every check's result, observed values, thresholds and
the attestations that covered human items, signed with an Ed25519 key."""
