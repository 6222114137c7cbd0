"""One dead-lettered event, as stored and shown."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from custsync.privacy import mask_id

REASONS = ("invalid", "rejected", "not_found", "auth", "exhausted", "poison", "malformed")
_SUMMARY_FIELDS = (
    "entry_id", "event_id", "target", "customer_id", "reason", "status", "attempts", "error",
)  # fmt: skip


def customer_label(customer_id: Any) -> str | None:
    """The pseudonym a customer id is shown as outside ``--show-payload`` (as in the logs)."""
    return mask_id(customer_id) if isinstance(customer_id, str) and customer_id else None


def event_id_of(envelope: Any) -> str:
    """The envelope's event id if it is one the envelope schema accepts, else ""."""
    if isinstance(envelope, Mapping):
        event_id = envelope.get("event_id")
        if (
            isinstance(event_id, str)
            and 0 < len(event_id) <= 128
            and event_id.isprintable()
            and event_id == event_id.strip()
        ):
            return event_id
    return ""


def entry_id_for(envelope: Any) -> str:
    """The event id, or for an envelope without a usable one a stable hash of its content."""
    event_id = event_id_of(envelope)
    if event_id:
        return event_id
    raw = json.dumps(envelope, sort_keys=True, default=str).encode()
    return "noid-" + hashlib.sha256(raw).hexdigest()[:24]


def new_entry_id() -> str:
    """A DLQ entry's own key: time-ordered, unique per failure, never taken from the event."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


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
    entry_id: str = ""  # the key: one entry per failure, whatever the event id says
    raw: str | None = None  # malformed messages: the body as received, size-capped
    headers: dict[str, Any] | None = None  # malformed messages: the broker headers

    def __post_init__(self) -> None:
        if not self.entry_id:
            self.entry_id = new_entry_id()

    @property
    def label(self) -> str:
        """What an operator copies: the event id, or the entry id when there is none."""
        return self.event_id or self.entry_id

    def to_json(self) -> str:
        # A shallow dict: asdict() deep-copies the envelope first, 5x slower on bulk loads.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(data, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeadLetter:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("entry_id", data.get("event_id"))  # entries stored before entry ids
        return cls(**known)

    def summary(self, reveal: bool = False) -> dict[str, Any]:
        """What ``dlq list --json`` prints: no envelope, no partner body, and the customer
        as its pseudonym (``customer``) unless ``reveal`` (``customer_id``)."""
        out = {k: getattr(self, k) for k in _SUMMARY_FIELDS}
        if not reveal:
            out["customer"] = customer_label(out.pop("customer_id"))
        out.update(
            first_seen_at=self.first_seen_at,
            dead_lettered_at=self.dead_lettered_at,
            replays=self.replays,
            error_class=self.error_class,
        )
        return out

    def past(self) -> dict[str, Any]:
        """This entry as one history item, when the event comes back after a replay."""
        skip = ("envelope", "history", "event_id", "raw")  # shallow, as in to_json: no deep copy
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}
