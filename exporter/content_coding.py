"""`Accept-Encoding` negotiation between gzip and identity (RFC 9110, section 12.5.3).

- Codings are case-insensitive; `x-gzip` counts as gzip.
- `q` weights are honoured: `q=0` means "not acceptable". A malformed weight makes the
  entry count as absent.
- `*` gives its weight to every coding not listed by name, identity included.
- Gzip is chosen when its weight is positive and not below a weight given to identity
  (by name or by `*`): `gzip;q=0.5` alone still means "gzip, please".
- Otherwise the response is not compressed, also when identity is excluded too
  (`identity;q=0`): a scrape gets an answer rather than a 406. Without an
  `Accept-Encoding` header the response is not compressed (what scrapers expect).
"""

from __future__ import annotations

import re

_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")


def _weight(params: list[str]) -> float | None:
    """The q parameter's value (1 when absent), or None when it is malformed."""
    for param in params:
        name, sep, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        value = value.strip()
        if not sep or _QVALUE.fullmatch(value) is None:
            return None
        return float(value)
    return 1.0


def coding_weights(header: str) -> dict[str, float]:
    """The weight of each coding named in an `Accept-Encoding` value (highest wins when a
    coding is listed twice); malformed entries are left out."""
    weights: dict[str, float] = {}
    for element in header.split(","):
        coding, *params = element.split(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        if coding == "x-gzip":
            coding = "gzip"
        weight = _weight(params)
        if weight is not None:
            weights[coding] = max(weight, weights.get(coding, 0.0))
    return weights


def prefers_gzip(header: str | None) -> bool:
    """True when the response should be gzip-compressed."""
    if not header:
        return False
    weights = coding_weights(header)
    star = weights.get("*")
    gzip = weights.get("gzip", star if star is not None else 0.0)
    identity = weights.get("identity", star if star is not None else 0.0)
    return gzip > 0 and gzip >= identity
