"""1.2.2 in the cluster: sensitive variables set as literals, and secrets kept in ConfigMaps.

A variable whose name matches a sensitive pattern (`*_PASSWORD`, `*_SECRET`, `*_KEY`,
`*_TOKEN` by default) must come from a Secret (`valueFrom.secretKeyRef`, or
`envFrom.secretRef`, e.g. a Secret an ExternalSecret writes); a literal `value:` or a
ConfigMap is a finding. Every ConfigMap of the application (the ones its pod templates
name, and the ones carrying its labels) is read: a sensitive key holding a value is a
finding, and the other values go through the same detectors as files. With
`managed_by`, the Secrets those variables come from must be owned by one of the given
kinds (an ExternalSecret: the value lives in a secrets manager). Findings name the
object, container and variable, never the value.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from exporter.model import ProbeContext
from exporter.probes.appenv.podspec import PodTemplate
from exporter.probes.appenv.reader import AppReader
from exporter.probes.secret_detectors import build, candidate_lines, fingerprint

Rule = Literal["literal_env", "configmap_env", "configmap_key", "configmap_value",
               "unmanaged_secret"]
RULES: tuple[Rule, ...] = ("literal_env", "configmap_env", "configmap_key", "configmap_value",
                           "unmanaged_secret")
DEFAULT_SENSITIVE = ["*_PASSWORD", "*_SECRET", "*_KEY", "*_TOKEN"]
_DEPENDENT = re.compile(r"^(?:\$\([A-Za-z_][A-Za-z0-9_]*\))+$")
"""`$(OTHER_VAR)`: the kubelet substitutes another variable of the container (no literal)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding: the rule broken and where (object, container, name; no value)."""

    rule: Rule
    where: str


@dataclass(slots=True)
class ClusterScan:
    """What the cluster part of a scan found (names and counts only)."""

    findings: list[Finding] = field(default_factory=list)
    templates: int = 0
    config_maps: int = 0
    allowed: int = 0

    def count(self, rule: Rule) -> int:
        """Findings of `rule`."""
        return sum(1 for f in self.findings if f.rule == rule)


@dataclass(frozen=True, slots=True)
class Detectors:
    """The file detectors' settings, applied to ConfigMap values too."""

    names: tuple[str, ...]
    base64_limit: float
    hex_limit: float
    allow: frozenset[str]


def is_sensitive(name: str, patterns: Sequence[str], exempt: Sequence[str] = ()) -> bool:
    """Whether `name` matches a sensitive pattern (case-insensitive) and no exemption."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p.upper()) for p in patterns) and \
        not any(fnmatch.fnmatchcase(upper, p.upper()) for p in exempt)


def env_findings(pod: PodTemplate, patterns: Sequence[str],
                 exempt: Sequence[str] = ()) -> list[Finding]:
    """Sensitive variables of `pod`'s containers set as a literal or from a ConfigMap."""
    found = []
    for container in pod.containers:
        for entry in container.env:
            if not is_sensitive(entry.name, patterns, exempt):
                continue
            where = f"{pod.owner} container {container.name}: {entry.name}"
            literal = (entry.value or "").strip()
            if entry.source == "value" and literal and not _DEPENDENT.match(literal):
                found.append(Finding("literal_env", f"{where} is a literal value"))
            elif entry.source == "configmap":
                found.append(Finding("configmap_env", f"{where} comes from {entry.origin()}"))
    return found


def secret_refs(pod: PodTemplate, patterns: Sequence[str],
                exempt: Sequence[str] = ()) -> dict[str, str]:
    """Secret name -> the first place it feeds (a sensitive secretKeyRef, or envFrom)."""
    refs: dict[str, str] = {}
    for container in pod.containers:
        where = f"{pod.owner} container {container.name}"
        for ref in container.env_from:
            if ref.source == "secret":
                refs.setdefault(ref.name, f"{where}: envFrom Secret {ref.name}")
        for entry in container.env:
            if entry.source == "secret" and entry.ref_name and \
                    is_sensitive(entry.name, patterns, exempt):
                refs.setdefault(entry.ref_name, f"{where}: {entry.name} comes from Secret "
                                f"{entry.ref_name}")
    return refs


async def unmanaged(reader: AppReader, pods: Sequence[PodTemplate], patterns: Sequence[str],
                    exempt: Sequence[str], managed_by: Sequence[str]) -> list[Finding]:
    """Secrets feeding sensitive variables that no `managed_by` kind owns (or absent)."""
    refs: dict[str, str] = {}
    for pod in pods:
        for name, where in secret_refs(pod, patterns, exempt).items():
            refs.setdefault(name, where)
    found = []
    for name, where in refs.items():
        owners = await reader.secret_owners(name)
        if owners is None:
            found.append(Finding("unmanaged_secret", f"{where}, which does not exist"))
        elif not set(owners) & set(managed_by):
            found.append(Finding("unmanaged_secret", f"{where}, not managed by "
                                 f"{' or '.join(managed_by)}"))
    return found


def detect_values(data: Mapping[str, str], detectors: Detectors) -> tuple[Counter[str], int]:
    """Detector counts over a ConfigMap's values (worker thread; only counts return)."""
    analyzers = build(detectors.names, detectors.base64_limit, detectors.hex_limit)
    counts: Counter[str] = Counter()
    allowed = 0
    seen: set[str] = set()
    for key, value in data.items():
        multi = "\n" in value
        blob = (value if multi else f"{key}={value}").encode("utf-8", errors="replace")
        filename = key if multi else "configmap.env"
        for segment in candidate_lines(blob, detectors.names):
            for name, analyze in analyzers:
                for hit in analyze(filename, segment):
                    if hit in seen:
                        continue
                    seen.add(hit)
                    if fingerprint(name, hit) in detectors.allow:
                        allowed += 1
                    else:
                        counts[name] += 1
    return counts, allowed


def config_map_findings(name: str, data: Mapping[str, str], patterns: Sequence[str],
                        exempt: Sequence[str] = ()) -> tuple[list[Finding], dict[str, str]]:
    """Sensitive keys holding a value, and the rest of the data (for the detectors)."""
    found, rest = [], {}
    for key, value in data.items():
        if is_sensitive(key, patterns, exempt) and value.strip():
            found.append(Finding("configmap_key", f"ConfigMap {name}: key {key} holds a "
                                 "value"))
        else:
            rest[key] = value
    return found, rest


def referenced_maps(pods: Iterable[PodTemplate]) -> list[str]:
    """ConfigMaps the pod templates name, in order, once each."""
    return list(dict.fromkeys(m for pod in pods for m in pod.config_maps))


async def scan_cluster(ctx: ProbeContext, reader: AppReader, patterns: Sequence[str],
                       exempt: Sequence[str], detectors: Detectors,
                       managed_by: Sequence[str] = ()) -> ClusterScan:
    """Scan the application's pod templates and ConfigMaps (and, with `managed_by`, who
    owns the Secrets its sensitive variables come from)."""
    result = ClusterScan()
    pods = await reader.templates(reader.workload.source or "workloads")
    result.templates = len(pods)
    for pod in pods:
        result.findings += env_findings(pod, patterns, exempt)
    if managed_by:
        result.findings += await unmanaged(reader, pods, patterns, exempt, managed_by)
    names = referenced_maps(pods)
    names += [n for n in await reader.labelled_config_maps() if n not in names]
    for name in names:
        data = await reader.config_map(name)
        if data is None:
            continue
        result.config_maps += 1
        keys, rest = config_map_findings(name, data, patterns, exempt)
        result.findings += keys
        counts, allowed = await ctx.run_blocking(detect_values, rest, detectors)
        result.allowed += allowed
        for detector, count in sorted(counts.items()):
            result.findings += [Finding("configmap_value", f"ConfigMap {name}: a value "
                                        f"found by {detector}")] * count
    return result

