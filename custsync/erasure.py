"""Forget a customer (an erasure request): their payloads leave every place custsync keeps
them — DLQ entries and their replay history, the retry sets, the journal, messages still on
the Redis queue — and their version guard and lock go too. What stays: the applied ledger
(event ids and times only) and one audit line with the customer's pseudonym.

Events a worker holds at this moment finish or come back; running forget again after them
catches what they leave.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from custsync.broker.reading import envelopes_in, items_in
from custsync.celery_app import producer_app
from custsync.dlq.purge import purge
from custsync.dlq.query import Filter, Query
from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.state.keys import all_queues
from custsync.targets import REGISTRY

SCAN = 500


@dataclass
class Forgotten:
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _customer(envelope: Any) -> Any:
    return envelope.get("customer_id") if isinstance(envelope, dict) else None


def _member_customer(raw: str) -> Any:
    try:
        return _customer(json.loads(raw).get("envelope"))
    except (ValueError, AttributeError):
        return None


def _message_customers(raw: bytes | str) -> list[Any]:
    """The customer of each event one kombu Redis message carries (a batch: several)."""
    return [_customer(envelope) for envelope in envelopes_in(raw)]


def _zmembers(redis: Any, key: str) -> Iterator[str]:
    for member, _ in redis.zscan_iter(key, count=SCAN):
        yield member


def forget_customer(rt: Runtime, customer_id: str) -> Forgotten:
    done = Forgotten()
    redis, keys = rt.redis, rt.keys
    entries = list(Query(rt.dlq, Filter(customer_id=customer_id)).oldest_first())
    done.counts["dlq"] = len(purge(rt.dlq, [e.entry_id for e in entries], Filter()))
    pasts = [keys.dlq_past(e.event_id) for e in entries if e.event_id]
    if pasts:
        redis.delete(*pasts)

    retried = 0
    for target in rt.settings.targets:
        for key in (keys.retry(target), keys.retry_claimed(target)):
            mine = [m for m in _zmembers(redis, key) if _member_customer(m) == customer_id]
            if mine:
                retried += int(redis.zrem(key, *mine))
        redis.delete(keys.version(target, customer_id), keys.inflight(target, customer_id))
    done.counts["retry"] = retried

    journaled = [
        event_id
        for event_id, raw in redis.hscan_iter(keys.journal_body, count=SCAN)
        if _member_customer(raw) == customer_id
    ]
    if journaled:
        pipe = redis.pipeline(transaction=False)
        pipe.hdel(keys.journal_body, *journaled)
        pipe.zrem(keys.journal, *journaled)
        pipe.execute()
    done.counts["journal"] = len(journaled)

    queued = 0
    if rt.broker_shares_state_redis:  # another broker's queue is the broker's to purge
        for queue in all_queues(REGISTRY):
            mine = []  # read first, then remove: removing while paging would shift the pages
            for start in range(0, int(redis.llen(queue)), SCAN):
                page = redis.lrange(queue, start, start + SCAN - 1)
                mine += [raw for raw in page if customer_id in _message_customers(raw)]
            for raw in mine:
                if not redis.lrem(queue, 1, raw):
                    continue  # taken by a worker meanwhile
                items = items_in(raw)
                others = [(e, d) for e, d in items if _customer(e) != customer_id]
                queued += len(items) - len(others)
                if others:  # a batch: the other customers' events go back on the queue
                    enqueue(others, producer_app(rt))
    done.counts["queue"] = queued
    return done
