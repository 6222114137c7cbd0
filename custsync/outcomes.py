"""Every outcome of one delivery: an enum, a result record, one log line."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from custsync.privacy import mask_id

log = logging.getLogger("custsync.outcome")


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    DEFERRED = "deferred"  # waiting without using an attempt (429, pause)
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"


# Level by kind of failure (STYLE §10): expected waits are quiet, losses are loud.
_LEVEL = {
    Outcome.APPLIED: logging.INFO,
    Outcome.DUPLICATE: logging.INFO,
    Outcome.SUPERSEDED: logging.INFO,
    Outcome.DEFERRED: logging.INFO,
    Outcome.RETRY_SCHEDULED: logging.WARNING,
    Outcome.DEAD_LETTERED: logging.ERROR,
}


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    event_id: str
    target: str
    customer_id: str
    attempt: int = 0
    status: int | None = None
    reason: str | None = None
    error: str | None = None  # already masked
    duration_ms: float = 0.0
    due_in_s: float | None = None
    correlation_id: str | None = None

    def log(self) -> None:
        fields = {
            "event_id": self.event_id,
            "target": self.target,
            "customer": mask_id(self.customer_id) if self.customer_id else None,
            "outcome": self.outcome.value,
            "attempt": self.attempt,
            "status": self.status,
            "reason": self.reason,
            "duration_ms": round(self.duration_ms, 1),
            "due_in_s": None if self.due_in_s is None else round(self.due_in_s, 3),
            "correlation_id": self.correlation_id,
            "error": self.error,
        }
        log.log(
            _LEVEL[self.outcome],
            "%s %s %s",
            self.outcome.value,
            self.target,
            self.event_id,
            extra={"custsync": {k: v for k, v in fields.items() if v is not None}},
        )
