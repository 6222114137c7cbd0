"""Failures grouped by (target, reason, HTTP status, normalised error): ids, numbers and
quoted values are blanked, so "customer 'C-1' not found" and "customer 'C-2' not found"
are one group.

Each group has a short stable id (a hash of that tuple), so the store can keep one index per
group at write time (``custsync.dlq.group_index`` reads them) and an operator can select
exactly one group's entries with ``--group ID``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from custsync.dlq.entry import DeadLetter

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
# Tokens of 4+ characters holding a digit (ids, codes, long numbers); a status stays.
_ID = re.compile(r"\b(?=[\w.-]*\d)[\w.-]{4,}\b|\S*…[0-9a-f]{8}|\*\*\*")
GROUP_ID = re.compile(r"\A[0-9a-f]{16}\Z")  # what ``group_id`` gives

GroupKey = tuple[str, str, int | None, str]  # target ("-" if none), reason, status, error


def normalise(error: str) -> str:
    """The error with what varies per event blanked: quoted values, ids, numbers, masks.

    Group ids hash its output: a change here moves entries to new groups, and entries
    indexed before keep their old group's row until they leave.
    """
    return _ID.sub("#", _QUOTED.sub("'…'", error)).strip()[:200]


def group_key(entry: DeadLetter) -> GroupKey:
    """What an entry is grouped by; ``entry.error`` is already masked."""
    return (entry.target or "-", entry.reason, entry.status, normalise(entry.error or ""))


def group_id(key: GroupKey) -> str:
    """A short id for a group key, the same in every process (a hash, not a counter)."""
    canonical = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def group_label(key: GroupKey) -> str:
    """A group key as the JSON the group-label hash holds."""
    target, reason, status, error = key
    label = {"target": target, "reason": reason, "status": status, "error": error}
    return json.dumps(label, separators=(",", ":"), ensure_ascii=False)


def key_of_label(raw: str | bytes) -> GroupKey:
    data = json.loads(raw)
    return (str(data["target"]), str(data["reason"]), data["status"], str(data["error"]))


@dataclass
class Group:
    target: str
    reason: str
    status: int | None
    error: str
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def largest_first(groups: Iterable[Group]) -> list[Group]:
    """Largest first; ties in a fixed order, whichever way the groups were counted."""
    return sorted(
        groups,
        key=lambda g: (-g.count, g.target, g.reason, g.error, g.status or 0, g.id),
    )


def group(entries: Iterable[DeadLetter]) -> list[Group]:
    """Group by reading every entry (filters the group index cannot answer); largest first."""
    found: dict[GroupKey, Group] = {}
    for e in entries:
        key = group_key(e)
        g = found.get(key)
        if g is None:
            g = found[key] = Group(*key, first_seen=e.dead_lettered_at, id=group_id(key))
        g.count += 1
        g.first_seen = min(g.first_seen, e.dead_lettered_at)
        g.last_seen = max(g.last_seen, e.dead_lettered_at)
    return largest_first(found.values())
