"""`attestation`: signed, expiring sign-offs for items no machine can observe.

`record` defines the signed record and its canonical encoding, `keyring` maps roles
to public keys and display names, `verify` checks one record, `probe` is the check
kind and `cli` the `readiness-exporter attest` command.
"""
