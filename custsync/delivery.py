"""What travels with an event between attempts: attempts used, first seen, replays."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Delivery:
    attempts: int = 0  # partner attempts already used (a 429 or a pause uses none)
    first_seen_at: float = 0.0  # epoch seconds when custsync first took the event
    replays: int = 0  # times an operator replayed it from the DLQ
    force: bool = False  # an operator's replay --force: skip the version guard

    @classmethod
    def from_message(cls, data: Any) -> Delivery:
        """Internal kwargs are ours, but a hand-made message may carry anything: be lenient."""
        if not isinstance(data, Mapping):
            return cls(first_seen_at=time.time())
        try:
            return cls(
                attempts=max(0, int(data.get("attempts", 0))),
                first_seen_at=float(data.get("first_seen_at") or time.time()),
                replays=max(0, int(data.get("replays", 0))),
                force=data.get("force") is True,
            )
        except (TypeError, ValueError, OverflowError):  # the consumer's guard refuses these
            return cls(first_seen_at=time.time())

    def with_attempts(self, attempts: int) -> Delivery:
        return replace(self, attempts=attempts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def age_s(self, now: float) -> float:
        return now - self.first_seen_at
