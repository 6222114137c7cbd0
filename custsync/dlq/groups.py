"""Failures grouped by (target, reason, HTTP status, normalised error): ids, numbers and
quoted values are blanked, so "customer 'C-1' not found" and "customer 'C-2' not found"
are one group."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from custsync.dlq.entry import DeadLetter

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
# Tokens of 4+ characters holding a digit (ids, codes, long numbers); a status stays.
_ID = re.compile(r"\b(?=[\w.-]*\d)[\w.-]{4,}\b|\S*…[0-9a-f]{8}|\*\*\*")


def normalise(error: str) -> str:
    """The error with what varies per event blanked: quoted values, ids, numbers, masks."""
    return _ID.sub("#", _QUOTED.sub("'…'", error)).strip()[:200]


@dataclass
class Group:
    target: str
    reason: str
    status: int | None
    error: str
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def group(entries: Iterable[DeadLetter]) -> list[Group]:
    """Largest group first."""
    found: dict[tuple[str, str, int | None, str], Group] = {}
    for e in entries:
        key = (e.target or "-", e.reason, e.status, normalise(e.error or ""))
        g = found.get(key)
        if g is None:
            g = found[key] = Group(*key, first_seen=e.dead_lettered_at)
        g.count += 1
        g.first_seen = min(g.first_seen, e.dead_lettered_at)
        g.last_seen = max(g.last_seen, e.dead_lettered_at)
    return sorted(found.values(), key=lambda g: (-g.count, g.target, g.reason, g.error))
