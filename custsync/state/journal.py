"""The journal: a safety net under kombu's Redis transport.

kombu pops a message (BRPOP) before it records it as unacknowledged, so a worker killed
in that instant loses the message. Every event custsync hands to a Redis broker is also
noted here and forgotten when its delivery ends (applied, skipped, waiting in the retry
set, or dead-lettered). An event that is older than everything still queued, not being
processed and not forgotten was lost: the recovery step puts it back on the queue.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from custsync.broker.messages import item_json
from custsync.broker.reading import envelopes_in
from custsync.dlq.entry import entry_id_for
from custsync.state.keys import UNACKED, Keys, all_queues
from custsync.targets import REGISTRY

log = logging.getLogger("custsync.state.journal")

GRACE_S = 10.0  # a popped message is recorded as unacked within milliseconds; clocks drift
BATCH = 200


def _event_ids_of(message_json: str | bytes) -> list[str]:
    """The event ids inside one kombu Redis message (a batch carries several)."""
    return [entry_id_for(envelope) for envelope in envelopes_in(message_json)]


class Journal:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def note(self, pipe: Any, items: Iterable[tuple[Any, Mapping[str, Any] | None]]) -> None:
        """Add to a pipeline: these events are about to be on the queue."""
        bodies = {entry_id_for(envelope): item_json(envelope, d) for envelope, d in items}
        if bodies:
            self.note_bodies(pipe, bodies)

    def note_bodies(self, pipe: Any, bodies: Mapping[str, str]) -> None:
        """``note`` of already-encoded bodies (``item_json``), by event id."""
        pipe.zadd(self.keys.journal, dict.fromkeys(bodies, time.time()))
        pipe.hset(self.keys.journal_body, mapping=bodies)

    def forget(self, pipe: Any, event_id: str) -> None:
        """Add to a pipeline: this delivery ended; nothing to recover."""
        pipe.zrem(self.keys.journal, event_id)
        pipe.hdel(self.keys.journal_body, event_id)

    def _horizon(self) -> float | None:
        """When the oldest event still waiting on any queue was noted; None when the oldest
        message of some queue is not ours (no safe horizon)."""
        pipe = self.redis.pipeline(transaction=False)
        for name in all_queues(REGISTRY):
            pipe.lindex(name, -1)
        horizon = time.time()
        for tail in pipe.execute():
            if tail is None:
                continue
            tail_ids = _event_ids_of(tail)
            scores = self.redis.zmscore(self.keys.journal, tail_ids) if tail_ids else []
            known = [float(s) for s in scores if s is not None]
            if not known:
                return None
            horizon = min(horizon, *known)
        return horizon

    def recover(
        self, send: Callable[[Sequence[tuple[Any, dict[str, Any]]]], object], interval_s: float
    ) -> int:
        """Re-enqueue events the broker lost; one worker at a time does it."""
        if not self.redis.set(self.keys.journal_lock, "1", nx=True, px=int(interval_s * 1000)):
            return 0
        horizon = self._horizon()
        if horizon is None:
            return 0
        ids = self.redis.zrangebyscore(self.keys.journal, "-inf", horizon - GRACE_S, 0, BATCH)
        if not ids:
            return 0
        busy = {i for v in self.redis.hvals(UNACKED) for i in _event_ids_of(v)}
        lost = [i for i in ids if i not in busy]
        if not lost:
            return 0
        items = []
        for event_id, raw in zip(lost, self.redis.hmget(self.keys.journal_body, lost), strict=True):
            if raw is None:
                self.redis.zrem(self.keys.journal, event_id)
                continue
            data = json.loads(raw)
            items.append((data["envelope"], data["delivery"]))
        if items:
            log.warning("the broker lost %d events; putting them back on the queue", len(items))
            send(items)
        return len(items)
