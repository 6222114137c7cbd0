"""Versions and the version guard's read side: what a newer applied change already wrote.

The atomic write side lives in the pipeline's Redis scripts (custsync.state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from custsync.keys import Keys
from custsync.schemas.envelope import Event

EVENT_FIELD = "_v"  # the event-level version in the guard's hash
RENAMED_TO = "_renamed_to"
ALWAYS_SENT = frozenset({"code", "erpCode", "updateCode"})  # vendor identification fields


def version_string(event: Event) -> str:
    """``(occurred_at, sequence)`` as a fixed-width string: Lua compares it as text."""
    micros = int(event.occurred_at.timestamp() * 1_000_000)
    return f"{micros:020d}.{event.sequence:010d}"


@dataclass(frozen=True)
class Verdict:
    superseded: bool
    stale_fields: frozenset[str] = frozenset()  # fields a newer applied change already wrote


def judge(event: Event, stored: Mapping[str, str], field_level: bool) -> Verdict:
    """Compare one event with the guard's hash for its customer."""
    version = version_string(event)
    if not field_level:
        return Verdict(superseded=stored.get(EVENT_FIELD, "") > version)
    stale = frozenset(
        name
        for name in event.changes
        if name not in ALWAYS_SENT and stored.get(f"f:{name}", "") > version
    )
    left = [name for name in event.changes if name not in ALWAYS_SENT and name not in stale]
    return Verdict(superseded=not left and bool(stale), stale_fields=stale)


def would_supersede(redis: Any, keys: Keys, event: Event, field_level: bool) -> Verdict:
    """Read-only: what the guard would decide for ``event`` now (for dry runs and replay)."""
    stored = redis.hgetall(keys.version(event.target, event.customer_id))
    return judge(event, stored, field_level)
