"""Post-quantum policy of `tls_endpoint` (2.3.4): which key-exchange groups and leaf
signature algorithms count, and which groups the client offers to find out.

The checklist names Kyber-1024 and Dilithium-5, standardised as ML-KEM-1024 (FIPS 203)
and ML-DSA-87 (FIPS 204). TLS names the groups `MLKEM1024` (pure) and
`SecP384r1MLKEM1024` (hybrid); `X25519MLKEM768` and other 768 groups are the weaker
level and are allowed only when configured.
"""

from __future__ import annotations

import functools

from OpenSSL import SSL

__all__ = [
    "DEFAULT_ML_DSA_ALGORITHMS",
    "DEFAULT_PQ_GROUPS",
    "group_allowed",
    "groups_to_offer",
    "signature_allowed",
]

DEFAULT_PQ_GROUPS: tuple[str, ...] = ("MLKEM1024", "SecP384r1MLKEM1024")
"""ML-KEM-1024 and its hybrids (TLS group names, IANA registry)."""

DEFAULT_ML_DSA_ALGORITHMS: tuple[str, ...] = ("ML-DSA-87",)
"""Dilithium-5 = ML-DSA-87."""

FALLBACK_GROUPS: tuple[str, ...] = ("X25519MLKEM768", "X25519", "secp256r1", "secp384r1")
"""Offered after the allowed groups so that a server without them still completes the
handshake and the negotiated (refused) group is reported instead of an error."""


def _norm(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def group_allowed(group: str | None, allowed: list[str] | tuple[str, ...]) -> bool:
    """Whether the negotiated `group` is in `allowed` (case, `-` and `_` ignored)."""
    return group is not None and _norm(group) in {_norm(name) for name in allowed}


def signature_allowed(algorithm: str, allowed: list[str] | tuple[str, ...]) -> bool:
    """Whether a certificate's signature algorithm name is in `allowed`."""
    return _norm(algorithm) in {_norm(name) for name in allowed}


@functools.cache
def _known(group: str) -> bool:
    from OpenSSL._util import lib  # pyOpenSSL has no public setter for groups

    setter = getattr(lib, "SSL_CTX_set1_curves_list", None)
    if setter is None:
        return False
    context = SSL.Context(SSL.TLS_METHOD)
    # The raw SSL_CTX for the groups call (same justified exception as tls/contexts.py).
    return bool(setter(context._context, group.encode()) == 1)  # noqa: SLF001


def groups_to_offer(allowed: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The allowed groups the local OpenSSL knows, then common fallbacks, no duplicates."""
    offered: list[str] = []
    for group in (*allowed, *FALLBACK_GROUPS):
        if _known(group) and _norm(group) not in {_norm(g) for g in offered}:
            offered.append(group)
    return tuple(offered)
