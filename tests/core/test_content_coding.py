"""`Accept-Encoding` negotiation: q-values, `*`, identity."""

from __future__ import annotations

import pytest

from exporter.content_coding import coding_weights, prefers_gzip


@pytest.mark.parametrize(("header", "gzip"), [
    (None, False),
    ("", False),
    ("gzip", True),
    ("GZip", True),
    ("x-gzip", True),
    ("deflate, gzip", True),
    ("gzip;q=0", False),                     # the reported bug: q=0 means "not acceptable"
    ("gzip; q=0.000", False),
    ("gzip;Q=0", False),
    ("gzip;q=0.5", True),
    ("gzip;q=0.5, identity;q=0.8", False),   # identity preferred
    ("gzip;q=0.8, identity;q=0.8", True),    # a tie goes to gzip
    ("identity", False),
    ("br", False),
    ("*", True),
    ("*;q=0", False),
    ("*;q=0.5", True),                       # identity also 0.5: tie
    ("gzip;q=0, *", False),                  # named beats *
    ("identity;q=0", False),                 # gzip not offered: identity anyway
    ("identity;q=0, *;q=0.1", True),
    ("gzip;q=1.5", False),                   # malformed weight: entry ignored
    ("gzip;q=abc", False),
    ("gzip;q=", False),
    ("gzip;q=0.1234", False),
    ("gzip;level=1", True),                  # other parameters do not matter
    (",,;, gzip ,", True),
    ("gzip;q=0, gzip;q=1", True),            # listed twice: the higher weight
])
def test_prefers_gzip(header: str | None, gzip: bool) -> None:
    assert prefers_gzip(header) is gzip


def test_weights() -> None:
    assert coding_weights("gzip;q=0.3, identity, *;q=0") == {
        "gzip": 0.3, "identity": 1.0, "*": 0.0}
