"""The circuit breaker's read model: one reading of its hash, used by the poller, the
metrics and ``custsync status``. Its writes are ``after_failure.lua`` and ``after_success.lua``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"  # cooling down: nothing goes to the partner
    HALF_OPEN = "half_open"  # one probe may go through


# The hash's fields: the count, the open window, and one c:<customer> per failing customer.
FAILURES, OPENED_AT, OPENED_UNTIL, OPENS = "failures", "opened_at", "opened_until", "opens"


@dataclass(frozen=True)
class Breaker:
    state: BreakerState
    failures: int  # customers that failed target-wide since the last success
    opened_until: float | None  # while open

    @classmethod
    def read(cls, fields: Mapping[str, str] | None, threshold: int, now: float) -> Breaker:
        fields = fields or {}
        failures = int(fields.get(FAILURES) or 0)
        until = float(fields.get(OPENED_UNTIL) or 0) or None
        if failures < threshold:
            return cls(BreakerState.CLOSED, failures, None)
        if until is not None and until > now:
            return cls(BreakerState.OPEN, failures, until)
        return cls(BreakerState.HALF_OPEN, failures, None)
