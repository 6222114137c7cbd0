"""The retry set: events waiting for another attempt live in Redis, not in worker memory.

A poller in every worker claims due events atomically (several may poll; each event moves
once), puts them back on the queue, then acknowledges the claim. A claim that is never
acknowledged (the poller died) is handed out again when its lease ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from custsync.delivery import Delivery
from custsync.state.keys import Keys
from custsync.state.scripts import Scripts

# A claim is sent within milliseconds; a poller killed in between costs its events this wait.
LEASE_S = 10.0


def retry_member(envelope: Any, delivery: Delivery) -> str:
    """A unique member: the same envelope may wait twice (e.g. a replay)."""
    return json.dumps(
        {"id": uuid.uuid4().hex, "envelope": envelope, "delivery": delivery.as_dict()},
        separators=(",", ":"),
    )


def schedule(
    pipe: Any, keys: Keys, target: str, envelope: Any, delivery: Delivery, due_at: float
) -> None:
    """Add to a pipeline: the event waits until ``due_at`` (epoch seconds)."""
    pipe.zadd(keys.retry(target), {retry_member(envelope, delivery): due_at})


Send = Callable[[Sequence[tuple[Any, dict[str, Any]]]], object]


class RetrySet:
    def __init__(
        self, redis: Any, keys: Keys, *, lease_s: float = LEASE_S, batch: int = 500
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lease_s = lease_s
        self.batch = batch
        self.scripts = Scripts(redis)

    def move_due(self, target: str, now: float, send: Send, limit: int | None = None) -> int:
        """Put due events of one target back on the queue; returns how many moved."""
        members: list[str] = self.scripts(
            "retry_claim",
            keys={"retry": self.keys.retry(target), "claimed": self.keys.retry_claimed(target)},
            args={"now": now, "lease_end": now + self.lease_s, "limit": limit or self.batch},
        )
        if not members:
            return 0
        items = []
        for m in members:
            data = json.loads(m)
            items.append((data["envelope"], data["delivery"]))
        send(items)  # if this raises, the lease ends and another poller sends them
        self.redis.zrem(self.keys.retry_claimed(target), *members)
        return len(members)

    def size(self, target: str) -> int:
        return int(self.redis.zcard(self.keys.retry(target))) + int(
            self.redis.zcard(self.keys.retry_claimed(target))
        )

    def next_due(self, target: str) -> float | None:
        first = self.redis.zrange(self.keys.retry(target), 0, 0, withscores=True)
        return float(first[0][1]) if first else None
