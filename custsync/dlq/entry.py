"""One dead-lettered event, as stored and shown."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REASONS = ("invalid", "rejected", "not_found", "auth", "exhausted", "poison")
_SUMMARY_FIELDS = ("event_id", "target", "customer_id", "reason", "status", "attempts", "error")


def entry_id_for(envelope: Any) -> str:
    """The event id, or for an envelope without a usable one a stable hash of its content."""
    if isinstance(envelope, Mapping):
        event_id = envelope.get("event_id")
        if isinstance(event_id, str) and 0 < len(event_id) <= 128 and event_id.isprintable():
            return event_id
    raw = json.dumps(envelope, sort_keys=True, default=str).encode()
    return "noid-" + hashlib.sha256(raw).hexdigest()[:24]


@dataclass
class DeadLetter:
    event_id: str
    target: str
    customer_id: str
    reason: str
    error_class: str
    error: str  # personal data masked
    envelope: Any
    status: int | None = None
    response: str | None = None  # trimmed partner body, as received
    attempts: int = 0
    first_seen_at: float = 0.0
    dead_lettered_at: float = 0.0
    replays: int = 0
    correlation_id: str | None = None
    field_errors: dict[str, list[str]] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        # A shallow dict: asdict() deep-copies the envelope first, 5x slower on bulk loads.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(data, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeadLetter:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def summary(self) -> dict[str, Any]:
        """What ``dlq list --json`` prints: no envelope, no partner body."""
        out = {k: getattr(self, k) for k in _SUMMARY_FIELDS}
        out.update(
            first_seen_at=self.first_seen_at,
            dead_lettered_at=self.dead_lettered_at,
            replays=self.replays,
            error_class=self.error_class,
        )
        return out

    def past(self) -> dict[str, Any]:
        """This entry as one history item, when the event comes back after a replay."""
        skip = ("envelope", "history", "event_id")  # shallow, as in to_json: no deep copy
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}
