"""How many guesses a secret would take, in bits: structure-aware (zxcvbn) and capped
by the alphabet the characters are drawn from.

The value is cut at separators (`-`, `_`, `.`, space ...). A separator costs the
choice among a few separator characters, and nothing more when it repeats the previous
one. Each piece goes through zxcvbn, which finds the cheapest sequence of patterns it
knows (dictionary words, l33t, years and dates, keyboard runs, repeats, sequences):
those count for what they are (a word is a few thousand guesses, not 26^n). What zxcvbn
leaves as brute force counts as random characters of its own alphabet (zxcvbn itself
counts 10 guesses per character, which understates a random base64 key). The result is
the smaller of that sum and the alphabet estimate of the whole value, so `aaaa...` and
`abab...` stay low either way.
"""

from __future__ import annotations

import math
import re
import string

from zxcvbn import zxcvbn  # type: ignore[import-untyped]

# zxcvbn truncates long inputs; longer pieces are estimated in chunks.
_CHUNK = 64
# Characters matched against zxcvbn's patterns (bounds the CPU a long value costs).
STRUCTURED_PREFIX = 256
# Characters people put between words.
SEPARATORS = "-_. /:+,"
_SPLIT = re.compile("([" + re.escape(SEPARATORS) + "])")


def alphabet_size(value: str) -> int:
    """Size of the smallest usual alphabet (digits, hex, base64, character classes)."""
    chars = set(value)
    if chars <= set(string.digits):
        return 10
    if chars <= set(string.hexdigits):
        return 16
    if chars <= set(string.ascii_letters + string.digits + "+/=-_"):
        return 64
    size = 0
    if chars & set(string.ascii_lowercase):
        size += 26
    if chars & set(string.ascii_uppercase):
        size += 26
    if chars & set(string.digits):
        size += 10
    if chars - set(string.ascii_letters + string.digits):
        size += 33
    return size


def alphabet_bits(value: str) -> float:
    """Length times log2 of the alphabet, capped by the distinct characters present."""
    if not value:
        return 0.0
    distinct_cap = max(len(set(value)), 2) ** 1.5
    return len(value) * math.log2(max(2.0, min(alphabet_size(value), distinct_cap)))


def _piece_bits(piece: str) -> float:
    bits = 0.0
    for start in range(0, len(piece), _CHUNK):
        for match in zxcvbn(piece[start:start + _CHUNK], max_length=_CHUNK)["sequence"]:
            token = match["token"]
            if match["pattern"] == "bruteforce":
                bits += len(token) * math.log2(max(alphabet_size(token), 2))
            else:
                bits += math.log2(max(float(match["guesses"]), 1.0))
    return bits


def _structured_bits(value: str) -> float:
    bits = 0.0
    previous_separator: str | None = None
    for part in _SPLIT.split(value):
        if not part:
            continue
        if len(part) == 1 and part in SEPARATORS:
            if part != previous_separator:
                bits += math.log2(len(SEPARATORS))
            previous_separator = part
        else:
            bits += _piece_bits(part)
    return bits


def estimate_bits(value: str) -> float:
    """Estimated strength of `value` in bits (log2 of the guesses needed).

    zxcvbn costs tens of milliseconds per 64 characters, so only the first
    `STRUCTURED_PREFIX` characters are matched against patterns; the rest of a longer
    value counts by its alphabet (such a value is far above any minimum anyway)."""
    if not value:
        return 0.0
    head, tail = value[:STRUCTURED_PREFIX], value[STRUCTURED_PREFIX:]
    return min(_structured_bits(head) + alphabet_bits(tail), alphabet_bits(value))
