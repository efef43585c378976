"""Secret detectors for `secret_scan`: detect-secrets plugins plus a few of our own.

Every detector maps a line to the secret-like values in it. Values stay inside the
scanning thread: callers turn them into fingerprints at once and never keep them.
The plugins' `analyze_string` is used directly (not `analyze_line`), so neither
detect-secrets' global settings nor its network verification are involved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
)
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import (
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.util.filetype import determine_file_type

Analyzer = Callable[[str, str], Iterable[str]]
"""(file name, line) -> secret-like values in the line."""

# Most specific first: a value found by an earlier detector is not reported again.
DETECTOR_NAMES = (
    "private_key", "aws", "azure_storage", "gcp_api_key", "stripe", "slack", "pagerduty",
    "github", "gitlab", "jwt", "keyword", "high_entropy_base64", "high_entropy_hex",
)

_REFERENCE = re.compile(
    r"^(?:\$\{[^}]*\}?|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|<[^>]*>|%\([^)]*\)s|"
    r"(?:env|secret|vault|file|ref)\s*:.*)$", re.IGNORECASE)
_GCP_API_KEY = re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")
_PAGERDUTY = re.compile(
    r"pager_?duty[\w.-]{0,30}?(?:key|token|routing)[\w.-]*[\"']?\s*[:=]\s*[\"']?"
    r"([A-Za-z0-9_+-]{20,64})", re.IGNORECASE)
# Literal values under secret-sounding names, also unquoted (`.env`, YAML, INI),
# including the `token` / `*_key` names detect-secrets' keyword list lacks.
_ASSIGNMENT = re.compile(
    r"(?:^|[\s{,\"'])(?:export\s+)?([A-Za-z0-9_.-]*(?:passw(?:or)?d|pwd|secret|token|"
    r"api_?key|private_?key|access_?key|auth_?key|secret_?key|signing_?key|credential)"
    r"[A-Za-z0-9_.-]*)[\"']?\s*[:=]\s*([\"']?)([^\s\"'#,;]{6,})\2", re.IGNORECASE)
_PLAIN = re.compile(r"^(?:true|false|null|none|yes|no|\d+(?:\.\d+)?)$", re.IGNORECASE)
_URL_WITHOUT_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^@/]*(?:[/?#].*)?$")


def _looks_secret(value: str) -> bool:
    """A literal worth reporting: not a plain word, number, name or URL without password."""
    if _PLAIN.match(value) or _URL_WITHOUT_PASSWORD.match(value):
        return False
    has_digit = any(c.isdigit() for c in value)
    mixed_case = any(c.islower() for c in value) and any(c.isupper() for c in value)
    symbol = any(not c.isalnum() and c not in "-_." for c in value)
    return has_digit or mixed_case or symbol


def is_reference(value: str) -> bool:
    """True for `${VAR}`, `$VAR`, `{{ template }}`, `<placeholder>`, `env:NAME` values."""
    return bool(_REFERENCE.match(value.strip()))


def fingerprint(detector: str, value: str) -> str:
    """The allow-list key of a finding: hex sha256 of `detector:value`."""
    return hashlib.sha256(f"{detector}:{value}".encode()).hexdigest()


def _regex_plugin(plugin: AWSKeyDetector | AzureStorageKeyDetector | StripeDetector
                  | SlackDetector | GitHubTokenDetector | GitLabTokenDetector
                  | JwtTokenDetector | PrivateKeyDetector) -> Analyzer:
    def analyze(_: str, line: str) -> Iterable[str]:
        return plugin.analyze_string(line)
    return analyze


# detect-secrets' keyword list (its DENYLIST), as a cheap trigger for its regexes.
_DS_KEYWORDS = re.compile(
    r"(?:api|auth|service|account|db|database|priv|private|client)_?key|"
    r"(?:db|database|key)_?pass|password|passwd|pwd|secret|contrase", re.IGNORECASE)


def _keyword() -> Analyzer:
    plugin = KeywordDetector()
    file_type = lru_cache(maxsize=64)(determine_file_type)

    def analyze(filename: str, line: str) -> Iterable[str]:
        values: list[str] = []
        if _DS_KEYWORDS.search(line):
            regexes = REGEX_BY_FILETYPE.get(file_type(filename),
                                            QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
            values += [v for v in plugin.analyze_string(line, denylist_regex_to_group=regexes)
                       if v]
        values += [match.group(3) for match in _ASSIGNMENT.finditer(line)]
        return [v for v in values if not is_reference(v) and _looks_secret(v)]
    return analyze


def _entropy(plugin: Base64HighEntropyString | HexHighEntropyString) -> Analyzer:
    def analyze(_: str, line: str) -> Iterable[str]:
        return [v for v in plugin.analyze_string(line)
                if plugin.calculate_shannon_entropy(v) > plugin.entropy_limit]
    return analyze


def _pattern(regex: re.Pattern[str], group: int = 0) -> Analyzer:
    def analyze(_: str, line: str) -> Iterable[str]:
        return [m.group(group) for m in regex.finditer(line)]
    return analyze


# Cheap per-detector triggers: a detector runs on a line only when one of its needles
# (lower-case literals) occurs in the lower-cased line, or its pattern matches. Each
# trigger is a superset of what the detector can find; literal search is what makes a
# scan fast (str.find is far quicker than a regex with many alternatives).
NEEDLES: dict[str, tuple[str, ...]] = {
    "private_key": ("private key", "putty-user-key-file"),
    "aws": ("a3t", "akia", "asia", "abia", "acca", "aws"),
    "azure_storage": ("accountkey=",),
    "gcp_api_key": ("aiza",),
    "stripe": ("k_live_",),
    "slack": ("xox", "hooks.slack"),
    "pagerduty": ("pagerduty", "pager_duty"),
    "github": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "gitlab": ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "gr1348941", "glcbt-",
               "glimt-", "glptt-", "glagent-", "gloas-"),
    "jwt": ("eyj",),
    "keyword": ("pass", "pwd", "secret", "token", "key", "credential", "contrase"),
    "high_entropy_base64": (),
    "high_entropy_hex": (),
}
PATTERNS: dict[str, re.Pattern[str]] = {
    "high_entropy_base64": re.compile(r"[\"'][A-Za-z0-9+/=]{20,}[\"']"),
    "high_entropy_hex": re.compile(r"[\"'][0-9a-fA-F]{8,}[\"']"),
}
_PATTERN_BYTES = {name: re.compile(p.pattern.encode()) for name, p in PATTERNS.items()}
_WINDOW = 2048


def candidate_lines(data: bytes, names: Iterable[str], max_line: int = 4096) -> list[str]:
    """Lines of `data` (or windows of over-long lines) where a trigger of `names` hits.

    Works on bytes, where lower-casing keeps offsets; lines without a hit cost nothing.
    """
    wanted = set(names)
    lowered = data.lower()
    spans: set[tuple[int, int]] = set()

    def span(pos: int, end_of_hit: int) -> int:
        start = lowered.rfind(b"\n", 0, pos) + 1
        end = lowered.find(b"\n", end_of_hit)
        end = len(lowered) if end == -1 else end
        if end - start > max_line:
            start, end = max(start, pos - _WINDOW), min(end, end_of_hit + _WINDOW)
        spans.add((start, end))
        return end

    needles = {n.encode() for name in wanted for n in NEEDLES[name]}
    for needle in needles:
        index = lowered.find(needle)
        while index != -1:
            index = lowered.find(needle, span(index, index + len(needle)))
    for name, pattern in _PATTERN_BYTES.items():
        if name in wanted:
            for match in pattern.finditer(data):
                span(match.start(), match.end())
    return [data[a:b].decode("utf-8", errors="replace") for a, b in sorted(spans)]


def build(names: Iterable[str], base64_limit: float, hex_limit: float) -> list[tuple[str,
                                                                                   Analyzer]]:
    """Analyzers for `names`, in DETECTOR_NAMES order, each guarded by its trigger."""
    factories: dict[str, Callable[[], Analyzer]] = {
        "private_key": lambda: _regex_plugin(PrivateKeyDetector()),
        "aws": lambda: _regex_plugin(AWSKeyDetector()),
        "azure_storage": lambda: _regex_plugin(AzureStorageKeyDetector()),
        "gcp_api_key": lambda: _pattern(_GCP_API_KEY),
        "stripe": lambda: _regex_plugin(StripeDetector()),
        "slack": lambda: _regex_plugin(SlackDetector()),
        "pagerduty": lambda: _pattern(_PAGERDUTY, 1),
        "github": lambda: _regex_plugin(GitHubTokenDetector()),
        "gitlab": lambda: _regex_plugin(GitLabTokenDetector()),
        "jwt": lambda: _regex_plugin(JwtTokenDetector()),
        "keyword": _keyword,
        "high_entropy_base64": lambda: _entropy(Base64HighEntropyString(limit=base64_limit)),
        "high_entropy_hex": lambda: _entropy(HexHighEntropyString(limit=hex_limit)),
    }
    wanted = set(names)
    return [(name, _guarded(name, factories[name]())) for name in DETECTOR_NAMES
            if name in wanted]


def _guarded(name: str, analyze: Analyzer) -> Analyzer:
    needles = NEEDLES[name]
    pattern = PATTERNS.get(name)

    def guarded(filename: str, line: str) -> Iterable[str]:
        if pattern is not None:
            hit = pattern.search(line) is not None
        else:
            lowered = line.lower()
            hit = any(n in lowered for n in needles)
        return analyze(filename, line) if hit else ()
    return guarded
