"""Exemptions: an annotation on an object naming the check IDs it is exempt from.

    metadata:
      annotations:
        readiness-exporter.io/exempt: >-
          {"checks": ["4.2.2"], "reason": "database scaled by hand", "expires": "2027-01-31"}

The value is a JSON object or a list of them. `reason` is required; `expires` (a date or
an RFC 3339 time, UTC) is optional. An expired or malformed exemption is not honoured.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ANNOTATION = "readiness-exporter.io/exempt"


class ExemptionState(StrEnum):
    """What an object's exemption annotation means for one check."""

    NONE = "none"
    HONOURED = "honoured"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Exemption:
    """The state of one object's exemption for one check, with its reason."""

    state: ExemptionState
    reason: str = ""


def _parse_expiry(value: str) -> float:
    text = value.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        end = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        return end.timestamp()
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def exemption_for(obj: Mapping[str, Any], check_ids: Iterable[str], now: float) -> Exemption:
    """The exemption `obj` carries for any of `check_ids` (the check id and its item)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(ANNOTATION)
    if raw is None:
        return Exemption(ExemptionState.NONE)
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return Exemption(ExemptionState.INVALID)
    entries = data if isinstance(data, list) else [data]
    wanted = set(check_ids)
    found = Exemption(ExemptionState.NONE)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        checks = entry.get("checks")
        if not isinstance(checks, list) or not wanted.intersection(map(str, checks)):
            continue
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            found = Exemption(ExemptionState.INVALID)
            continue
        expires = entry.get("expires")
        if expires is not None:
            try:
                deadline = _parse_expiry(str(expires))
            except ValueError:
                found = Exemption(ExemptionState.INVALID)
                continue
            if deadline < now:
                found = Exemption(ExemptionState.EXPIRED, reason.strip())
                continue
        return Exemption(ExemptionState.HONOURED, reason.strip())
    return found
